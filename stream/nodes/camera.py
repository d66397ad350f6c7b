"""Live camera capture through OpenCV (V4L2 on Linux): a device index or path, size and rate.

OpenCV rather than PyAV because it negotiates webcam formats (MJPEG/YUYV) and controls portably.
Timestamps are wall-clock seconds since the first frame (a camera has no media time of its own).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from stream.message import Message
from stream.node import NodeError, Port, Source
from stream.params import param


class CameraSource(Source):
    """Frames from a webcam or capture card (index or /dev/videoN); a clear error when there is none."""

    outputs = {"out": Port("video", doc="RGB uint8 frames, pts = seconds since the first frame")}

    @dataclass
    class Params:
        device: str = param("0", "camera index (0, 1, ...) or device path (/dev/video0)")
        width: int = param(640, "requested frame width (the camera may pick the nearest it has)")
        height: int = param(480, "requested frame height")
        fps: float = param(30.0, "requested frame rate")
        frames: int = param(0, "frames to capture; 0 = until stopped")

        def __post_init__(self) -> None:
            if not (16 <= self.width <= 8192 and 16 <= self.height <= 8192):
                raise ValueError(f"width/height must be in 16..8192, got {self.width}x{self.height}")
            if not 0 < self.fps <= 1000:
                raise ValueError(f"fps must be in (0, 1000], got {self.fps}")
            if self.frames < 0:
                raise ValueError(f"frames must be >= 0, got {self.frames}")

    def setup(self) -> None:
        import cv2

        p = self.params
        target: int | str = int(p.device) if p.device.isdigit() else p.device
        self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            raise NodeError(f"no camera at {p.device!r} (is one connected, and is this user allowed to open it?)")
        self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, p.width)
        self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, p.height)
        self.cap.set(cv2.CAP_PROP_FPS, p.fps)

    def length(self) -> int | None:
        return self.params.frames or None

    def frames(self) -> Iterator[Message]:
        import cv2

        start = None
        i = 0
        while self.params.frames == 0 or i < self.params.frames:
            ok, bgr = self.cap.read()
            if not ok:
                raise NodeError(f"camera {self.params.device!r} stopped delivering frames")
            now = time.time()
            start = now if start is None else start
            image = self.allocate("out", bgr.shape, np.uint8)
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=image)
            yield Message(pts=now - start, capture_ts=now, buffers={"image": image})
            i += 1

    def close(self) -> None:
        if hasattr(self, "cap"):
            self.cap.release()
