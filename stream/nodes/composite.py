"""Compositing: a foreground with its mask over a background (``stream.frames`` does the arithmetic).

The background is another stream (joined by sequence number, as every input here), a still
image, a solid colour or the blurred input itself; whatever its size, it is reconciled with the
foreground's by ``fit``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from stream.frames import Fit, StatsOverlay, as_alpha, as_rgb, blend, fit
from stream.image_files import ImageFileError, read_image
from stream.message import Message
from stream.node import Node, NodeError, Port
from stream.params import param


class Compositor(Node):
    """Foreground RGB + mask over a background stream, still image, colour or the blurred input."""

    inputs = {
        "in": Port("video", doc="foreground: buffers image (+ mask, unless the mask input is connected)"),
        "mask": Port("video", required=False, doc="a separate mask stream (buffers['mask']) or matte video (image)"),
        "background": Port("video", required=False, doc="background stream (with background: stream)"),
    }
    outputs = {"out": Port("video")}
    join = "seq"

    @dataclass
    class Params:
        background: Literal["color", "image", "blur", "stream"] = param("color", "what goes behind the foreground")
        color: list[int] = param([0, 177, 64], "background colour (RGB), also the letterbox bars")
        image: str = param("", "background picture file (background: image)", file="input")
        blur: float = param(21.0, "Gaussian sigma in pixels at 720p, scaled with the frame (background: blur)")
        fit: Fit = param("cover", "how a background of another size is fitted: resize | letterbox | cover")
        overlay: bool = param(False, "draw output fps and end-to-end latency in the corner")

        def __post_init__(self) -> None:
            if len(self.color) != 3 or not all(0 <= c <= 255 for c in self.color):
                raise ValueError(f"color must be three values in 0..255, got {self.color}")
            if self.background == "image" and not self.image:
                raise ValueError("background: image needs the image parameter (a picture file)")
            if self.blur <= 0:
                raise ValueError(f"blur must be > 0, got {self.blur}")

    def setup(self) -> None:
        self.still: np.ndarray | None = None
        if self.params.background == "image":
            try:  # transparent parts of the picture show `color`
                self.still = read_image(self.params.image, min_side=1, backdrop=tuple(self.params.color)).rgb
            except ImageFileError as exc:
                raise NodeError(f"cannot read background image {exc}") from None
        self.overlay = StatsOverlay() if self.params.overlay else None
        self.color = tuple(self.params.color)

    def _background(self, inputs: dict[str, Message], image: np.ndarray) -> np.ndarray:
        import cv2

        h, w = image.shape[:2]
        mode = self.params.background
        if mode == "stream":
            if "background" not in inputs:
                raise NodeError("background: stream needs an edge into the background input")
            return fit(as_rgb(inputs["background"]), h, w, self.params.fit, self.color)
        if mode == "image":
            return fit(self.still, h, w, self.params.fit, self.color)
        if mode == "blur":
            return cv2.GaussianBlur(image, (0, 0), self.params.blur * h / 720)
        background = np.empty_like(image)
        background[:] = self.color
        return background

    def process(self, inputs: dict[str, Message]) -> None:
        msg = inputs["in"]
        image = np.asarray(msg.buffers["image"])
        if "mask" in inputs:  # a mask stream, or a matte video (its grey image)
            mask = inputs["mask"].buffers.get("mask", inputs["mask"].buffers.get("image"))
        elif "mask" in msg.buffers:
            mask = msg.buffers["mask"]
        else:
            raise NodeError("no mask: send buffers['mask'] with the foreground or connect the mask input")
        h, w = image.shape[:2]
        out = self.allocate("out", (h, w, 3), np.uint8)
        blend(image, as_alpha(mask, h, w), self._background(inputs, image), out)
        if self.overlay is not None:
            self.overlay.draw(out, msg.capture_ts)
        self.emit("out", msg.derive(image=out))
