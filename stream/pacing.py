"""Pacing for live sources: emit each frame at its time on the wall clock, like a camera."""
from __future__ import annotations

import time

#: How late (s) a frame may be and still be caught up on: scheduling jitter on a busy machine.
SLACK_S = 0.1


class Pacer:
    """`wait(t)` sleeps until `t` seconds (media time) after the first call; a no-op when not realtime.

    Sleeping to absolute deadlines, not by fixed intervals, keeps the long-run rate exact through
    jitter. A frame later than `slack` moves the clock instead: the frames after a stall (a consumer
    still starting holds the shared-memory slots, a slow decode) keep their own spacing, as a
    camera's would, rather than going out back to back until the source is on time again (a 30 fps
    clip measured at 37.9 fps, a 1080p clip's frames 4 ms apart after a 2 s stall at its start).
    `resyncs` counts the moves.
    """

    def __init__(self, realtime: bool, slack: float = SLACK_S):
        self.realtime, self.slack = realtime, slack
        self._origin: float | None = None
        self.resyncs = 0

    def wait(self, t: float) -> None:
        if not self.realtime:
            return
        now = time.monotonic()
        if self._origin is None:
            self._origin = now - t
        delay = self._origin + t - now
        if delay > 0:
            time.sleep(delay)
        elif delay < -self.slack:
            self._origin = now - t
            self.resyncs += 1
