"""Compositing: a foreground with its mask over a background (``stream.frames`` does the arithmetic).

The background is another stream (joined by sequence number, as every input here), a still
image, a solid colour or the blurred input itself; whatever its size, it is reconciled with the
foreground's by ``fit``. With `remove`, the person of the `person` input's mask (MediaPipe's
segmentation, from a pose node) is taken out of the background first: an avatar re-render puts
the avatar where the person was, over the source frame without them, and the avatar's shape is
not the person's, so the real person would otherwise show around it. The hole is grown by a
margin (the segmentation's edge is soft), then filled from its surroundings: `blur` (normalised
Gaussian filling, a few ms a frame) or `inpaint` (OpenCV's Telea inpainting at a reduced size,
finer textures, tens of ms).

Where a `background` stream is connected, the output takes its meta for what the foreground's
lacks (time base, fps, origin, colour, audio tracks): a foreground drawn from keypoints (an
avatar) carries none of the source frame's, and a lossless file sink needs them to keep the
input's timing and audio.
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


def remove_person(background: np.ndarray, mask: np.ndarray | None, how: str, margin: float) -> np.ndarray | None:
    """`background` with the person of `mask` filled in from around them (`how`: blur or inpaint), the hole
    grown by `margin` of the frame height; None where there is nothing to remove (no mask, or an empty one)."""
    import cv2

    if how == "none" or mask is None:
        return None
    h, w = background.shape[:2]
    hole = (as_alpha(mask, h, w) > 0.25).astype(np.uint8)
    if not hole.any():
        return None
    grow = max(1, round(margin * h))
    hole = cv2.dilate(hole, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    if how == "inpaint":  # at most 256 px high: Telea's cost grows with the hole's area
        scale = min(1.0, 256 / h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.inpaint(cv2.resize(background, size, interpolation=cv2.INTER_AREA),
                            cv2.resize(hole, size, interpolation=cv2.INTER_NEAREST), 3, cv2.INPAINT_TELEA)
        filled = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    else:  # normalised convolution: the mean of the visible pixels around each hidden one
        keep = (1 - hole).astype(np.float32)
        sigma = max(1.0, h / 12)
        total = cv2.GaussianBlur(background.astype(np.float32) * keep[..., None], (0, 0), sigma)
        weight = cv2.GaussianBlur(keep, (0, 0), sigma)[..., None]
        filled = np.clip(total / np.maximum(weight, 1e-3), 0, 255).astype(np.uint8)
    return np.where(hole[..., None].astype(bool), filled, background)


class Compositor(Node):
    """Foreground RGB + mask over a background stream, still image, colour or the blurred input."""

    busy = True  # removing the person (inpainting, blur) and blending full frames
    inputs = {
        "in": Port("video", doc="foreground: buffers image (+ mask, unless the mask input is connected)"),
        "mask": Port("video", required=False, doc="a separate mask stream (buffers['mask']) or matte video (image)"),
        "background": Port("video", required=False, doc="background stream (with background: stream); its meta "
                                                        "(timing, colour, audio) fills the output's where the "
                                                        "foreground has none, whatever `background` says"),
        "person": Port("any", required=False, doc="the person to take out of the background (with remove): buffers "
                                                  "mask, e.g. a pose node's output with segmentation: true"),
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
        remove: Literal["none", "blur", "inpaint"] = param(
            "none", "take the person input's mask out of the background, filled from around it (blur) or inpainted")
        margin: float = param(0.03, "with remove: the hole grown by this share of the frame height")

        def __post_init__(self) -> None:
            if not 0 <= self.margin <= 0.5:
                raise ValueError(f"margin must be in [0, 0.5], got {self.margin}")
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
        if self.params.remove != "none":  # (a composite without removal needs no runtime context in setup)
            if not self.ctx.connected("person"):
                raise NodeError(f"{self.ctx.name}: remove: {self.params.remove} needs an edge into the person input")
            self.ctx.metrics.extra.update(removed=0)
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
        background = self._background(inputs, image)
        person = inputs["person"].buffers.get("mask") if "person" in inputs else None
        if (cleared := remove_person(background, person, self.params.remove, self.params.margin)) is not None:
            background = cleared
            self.ctx.metrics.extra["removed"] += 1
        blend(image, as_alpha(mask, h, w), background, out)
        if self.overlay is not None:
            self.overlay.draw(out, msg.capture_ts)
        result = msg.derive(image=out)
        if "background" in inputs:  # the frame the picture is made on: its timing, colour and audio
            result.meta = {**inputs["background"].meta, **msg.meta}  # description (keypoints carry none)
        self.emit("out", result)
