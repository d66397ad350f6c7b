"""Compositing: a foreground with its mask over a background, and side-by-side debug layouts.

    out = I * M + B * (1 - M)        (I foreground RGB, M mask in [0, 1], B background)

The background is another stream (joined by sequence number, as every input here), a still
image, a solid colour or the blurred input itself; whatever its size, it is reconciled with the
foreground's by stretching (resize), fitting inside with bars (letterbox) or filling and
cropping (cover). Masks may be uint8 (0..255) or float (0..1) and any size.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from stream.message import Message
from stream.node import Node, NodeError, Port
from stream.params import param

Fit = Literal["resize", "letterbox", "cover"]


def fit(image: np.ndarray, height: int, width: int, mode: Fit, color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """`image` (HxWx3 uint8) brought to height x width: stretched, letterboxed or cover-cropped."""
    import cv2

    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    if mode == "resize":
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if w > width else cv2.INTER_LINEAR)
    scale = (min if mode == "letterbox" else max)(height / h, width / w)
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    scaled = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    if mode == "cover":
        y, x = (sh - height) // 2, (sw - width) // 2
        return scaled[y:y + height, x:x + width]
    out = np.empty((height, width, 3), np.uint8)
    out[:] = color
    y, x = (height - sh) // 2, (width - sw) // 2
    out[y:y + sh, x:x + sw] = scaled
    return out


def as_alpha(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A float32 HxW mask in [0, 1] from a uint8 (0..255) or float mask of any size (HxW or HxWx1)."""
    import cv2

    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    alpha = mask.astype(np.float32) * (1 / 255) if mask.dtype == np.uint8 else mask.astype(np.float32)
    if alpha.shape != (height, width):
        alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(alpha, 0.0, 1.0)


def blend(foreground: np.ndarray, alpha: np.ndarray, background: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = round(I*M + B*(1-M)), computed as B + (I - B)*M in float32."""
    fg, bg = foreground.astype(np.float32), background.astype(np.float32)
    result = bg + (fg - bg) * alpha[..., None]
    np.rint(result, out=result)
    np.clip(result, 0, 255, out=result)
    out[:] = result
    return out


def as_rgb(msg: Message) -> np.ndarray:
    """A message's picture as HxWx3 uint8: its image, else its mask shown in grey."""
    if "image" in msg.buffers:
        image = np.asarray(msg.buffers["image"])
    elif "mask" in msg.buffers:
        mask = np.asarray(msg.buffers["mask"])
        image = mask if mask.dtype == np.uint8 else (np.clip(mask, 0, 1) * 255).astype(np.uint8)
    else:
        raise NodeError(f"message on stream {msg.stream!r} has no image or mask to show (has {sorted(msg.buffers)})")
    if image.ndim == 2 or image.shape[2] == 1:
        image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
    return image


class StatsOverlay:
    """Draws the output rate and the capture-to-here latency in a corner of a frame."""

    def __init__(self) -> None:
        self.last: float | None = None
        self.fps = 0.0

    def draw(self, image: np.ndarray, capture_ts: float) -> None:
        import cv2

        now = time.perf_counter()
        if self.last is not None:
            rate = 1 / max(now - self.last, 1e-6)
            self.fps = rate if self.fps == 0 else 0.9 * self.fps + 0.1 * rate
        self.last = now
        text = f"{self.fps:5.1f} fps  {(time.time() - capture_ts) * 1e3:6.1f} ms"
        scale = max(0.4, image.shape[0] / 720)
        for color, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
            cv2.putText(image, text, (8, int(24 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, color, thickness,
                        cv2.LINE_AA)


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
        image: str = param("", "background picture file (background: image)")
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
        import cv2

        self.still: np.ndarray | None = None
        if self.params.background == "image":
            bgr = cv2.imread(self.params.image, cv2.IMREAD_COLOR)
            if bgr is None:
                raise NodeError(f"cannot read background image {self.params.image!r}")
            self.still = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
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


class Mosaic(Node):
    """Debug layout: up to four streams (input, skeleton, avatar, stylized) side by side or in a 2x2 grid."""

    inputs = {name: Port("video", required=name == "a", doc="image (or mask, shown grey)") for name in "abcd"}
    outputs = {"out": Port("video")}
    join = "seq"

    @dataclass
    class Params:
        layout: Literal["row", "column", "grid"] = param("row", "tiles in one row, one column, or a 2x2 grid")
        tile_width: int = param(0, "width of each tile; 0 = the first input's width (height follows its aspect)")
        labels: list[str] = param([], "a caption per input in a, b, c, d order (empty: none)")
        overlay: bool = param(False, "draw output fps and end-to-end latency in the corner")

        def __post_init__(self) -> None:
            if self.tile_width < 0:
                raise ValueError(f"tile_width must be >= 0, got {self.tile_width}")
            if len(self.labels) > 4:
                raise ValueError(f"at most 4 labels, got {len(self.labels)}")

    def setup(self) -> None:
        self.overlay = StatsOverlay() if self.params.overlay else None

    def process(self, inputs: dict[str, Message]) -> None:
        import cv2

        names = [n for n in "abcd" if n in inputs]
        first = as_rgb(inputs["a"])
        tw = self.params.tile_width or first.shape[1]
        th = max(1, round(first.shape[0] * tw / first.shape[1]))
        cols = {"row": len(names), "column": 1, "grid": 2 if len(names) > 1 else 1}[self.params.layout]
        rows = -(-len(names) // cols)
        out = self.allocate("out", (rows * th, cols * tw, 3), np.uint8)
        out[:] = 0
        for i, name in enumerate(names):
            y, x = (i // cols) * th, (i % cols) * tw
            tile = fit(as_rgb(inputs[name]), th, tw, "letterbox")
            label = self.params.labels["abcd".index(name)] if "abcd".index(name) < len(self.params.labels) else ""
            if label:  # drawn on the tile alone, so a long caption never spills into its neighbour
                tile = tile.copy()  # may be the (read-only) input itself
                cv2.putText(tile, label, (8, th - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 1, cv2.LINE_AA)
            out[y:y + th, x:x + tw] = tile
        if self.overlay is not None:
            self.overlay.draw(out, min(m.capture_ts for m in inputs.values()))
        self.emit("out", inputs["a"].derive(image=out))
