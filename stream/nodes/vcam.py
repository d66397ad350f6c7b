"""Virtual camera (pyvirtualcam: v4l2loopback on Linux, OBS on Windows/macOS), so video-call
apps can pick the pipeline's output as a webcam."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.message import Message
from stream.node import NodeError, Port, Sink
from stream.params import param


class VirtualCameraSink(Sink):
    """Frames to a virtual webcam; a clear error where pyvirtualcam or the loopback device is absent."""

    inputs = {"in": Port("video")}

    @dataclass
    class Params:
        device: str | None = param(None, "loopback device (/dev/video10); None: the first one found")
        fps: float = param(30.0, "frame rate announced to the consumers")

    def setup(self) -> None:
        try:
            import pyvirtualcam  # optional dependency
        except ImportError:
            raise NodeError("virtual camera needs pyvirtualcam (pip install pyvirtualcam) and, on Linux, "
                            "the v4l2loopback module (modprobe v4l2loopback exclusive_caps=1)") from None
        self.pyvirtualcam = pyvirtualcam
        self.cam: Any = None

    def process(self, inputs: dict[str, Message]) -> None:
        image = np.ascontiguousarray(inputs["in"].buffers["image"])
        if self.cam is None:
            height, width = image.shape[:2]
            try:
                self.cam = self.pyvirtualcam.Camera(width, height, self.params.fps, device=self.params.device)
            except RuntimeError as exc:
                raise NodeError(f"no virtual camera device ({self.params.device or 'any'}): {exc}") from None
        self.cam.send(image)

    def close(self) -> None:
        if getattr(self, "cam", None) is not None:
            self.cam.close()
