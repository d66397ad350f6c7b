"""Local preview window (OpenCV HighGUI) for machines with a display."""
from __future__ import annotations

import os
import sys

from stream.message import Message
from stream.node import NodeError, Port, Sink


class WindowSink(Sink):
    """Shows frames in a desktop window; a clear error where there is no display."""

    inputs = {"in": Port("video")}

    def setup(self) -> None:
        import cv2

        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise NodeError("no display (DISPLAY is not set): use the `preview` node (browser) instead")
        try:
            cv2.namedWindow(self.ctx.name, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise NodeError(f"cannot open a window: {exc}") from None

    def process(self, inputs: dict[str, Message]) -> None:
        import cv2

        cv2.imshow(self.ctx.name, cv2.cvtColor(inputs["in"].buffers["image"], cv2.COLOR_RGB2BGR))
        cv2.waitKey(1)

    def close(self) -> None:
        import cv2

        cv2.destroyAllWindows()
