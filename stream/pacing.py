"""Pacing for live sources: emit each frame at its time on the wall clock, like a camera."""
from __future__ import annotations

import time


class Pacer:
    """`wait(t)` sleeps until `t` seconds (media time) after the first call; a no-op when not realtime.

    Sleeping to absolute deadlines, not by fixed intervals, keeps the long-run rate exact
    even when a frame was late.
    """

    def __init__(self, realtime: bool):
        self.realtime = realtime
        self._origin: float | None = None

    def wait(self, t: float) -> None:
        if not self.realtime:
            return
        now = time.monotonic()
        if self._origin is None:
            self._origin = now - t
        delay = self._origin + t - now
        if delay > 0:
            time.sleep(delay)
