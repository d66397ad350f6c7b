"""Resizing frames: crop, scale, and fit to a size by stretching, letterboxing or covering.

One geometry per input size moves every picture-shaped buffer of a message together (the image,
the mask, any other (H, W[, C]) buffer) and the pixel coordinates of ``keypoints``, so a mask stays
on its person and the pose on its body. Steps, in order: an optional crop of the source, then the
scale (``width``/``height``, or ``scale`` times the cropped size), then the fit when the aspect
ratios differ: ``stretch`` (distorts), ``letterbox`` (the whole picture inside bars of ``color``,
masks 0 there) or ``cover`` (fills the size, the overflow cropped evenly).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from stream.message import Message
from stream.node import Node, NodeError, Port
from stream.params import param

Fit = Literal["stretch", "letterbox", "cover"]


@dataclass(frozen=True)
class Geometry:
    """Source crop (y, x, h, w) -> scaled to (sh, sw) -> placed at (oy, ox) in an (H, W) output (may overhang)."""

    crop: tuple[int, int, int, int]
    scaled: tuple[int, int]
    offset: tuple[int, int]
    size: tuple[int, int]

    @staticmethod
    def of(src: tuple[int, int], crop: tuple[int, ...], size: tuple[int, int], scale: float, fit: Fit) -> "Geometry":
        h, w = src
        x, y, cw, ch = crop if crop else (0, 0, w, h)
        if not (0 <= x < w and 0 <= y < h):
            raise NodeError(f"crop {list(crop)} starts outside the {w}x{h} frame")
        cw, ch = min(cw, w - x), min(ch, h - y)
        out_h, out_w = size if size != (0, 0) else (max(1, round(ch * scale)), max(1, round(cw * scale)))
        out_h, out_w = out_h or max(1, round(ch * out_w / cw)), out_w or max(1, round(cw * out_h / ch))
        if fit == "stretch":
            return Geometry((y, x, ch, cw), (out_h, out_w), (0, 0), (out_h, out_w))
        s = (min if fit == "letterbox" else max)(out_h / ch, out_w / cw)
        sh, sw = max(1, round(ch * s)), max(1, round(cw * s))
        return Geometry((y, x, ch, cw), (sh, sw), (_centred(out_h, sh), _centred(out_w, sw)), (out_h, out_w))

    def apply(self, array: np.ndarray, fill: float | tuple[int, ...] = 0) -> np.ndarray:
        """A picture-shaped buffer ((H, W) or (H, W, C)) moved by this geometry."""
        import cv2

        y, x, ch, cw = self.crop
        src = np.ascontiguousarray(array[y:y + ch, x:x + cw])
        (sh, sw), (oy, ox), (h, w) = self.scaled, self.offset, self.size
        shrink = sh * sw < ch * cw
        interp = (cv2.INTER_AREA if shrink else cv2.INTER_LINEAR) if array.dtype in (np.uint8, np.float32) \
            else cv2.INTER_NEAREST  # labels and other integers keep their values
        scaled = cv2.resize(src, (sw, sh), interpolation=interp).reshape((sh, sw) + array.shape[2:])
        if (oy, ox) == (0, 0) and (sh, sw) == (h, w):
            return scaled
        out = np.empty((h, w) + array.shape[2:], array.dtype)
        out[:] = fill
        ty, tx = max(oy, 0), max(ox, 0)                 # where the scaled picture lands in the output
        fy, fx = ty - oy, tx - ox                       # and which part of it
        n_h, n_w = min(h - ty, sh - fy), min(w - tx, sw - fx)
        out[ty:ty + n_h, tx:tx + n_w] = scaled[fy:fy + n_h, fx:fx + n_w]
        return out

    def points(self, keypoints: np.ndarray) -> np.ndarray:
        """(N, >= 2) pixel coordinates x, y of the source -> of the output (other columns kept)."""
        y, x, ch, cw = self.crop
        (sh, sw), (oy, ox) = self.scaled, self.offset
        out = np.array(keypoints, dtype=np.float32)
        out[:, 0] = (out[:, 0] - x) * (sw / cw) + ox
        out[:, 1] = (out[:, 1] - y) * (sh / ch) + oy
        return out


def _centred(outer: int, inner: int) -> int:
    """Offset that centres ``inner`` in ``outer`` (negative: overhang, the extra pixel on the far side)."""
    return (outer - inner) // 2 if outer >= inner else -((inner - outer) // 2)


class ResizeNode(Node):
    """Crop, scale and fit frames to a size; masks and every other picture-shaped buffer move with the image."""

    inputs = {"in": Port("video")}
    outputs = {"out": Port("video", doc="the image at the new size; mask and other buffers moved alike")}

    @dataclass
    class Params:
        width: int = param(0, "output width (0: from height and the aspect ratio, or from scale)")
        height: int = param(0, "output height (0: from width and the aspect ratio, or from scale)")
        scale: float = param(1.0, "with width = height = 0: this times the (cropped) input size")
        fit: Fit = param("cover", "when the aspect ratios differ: stretch, letterbox (bars) or cover (crop)")
        crop: list[int] = param([], "[x, y, w, h] of the input to keep first (empty: all of it)")
        color: list[int] = param([0, 0, 0], "letterbox bars, RGB")

        def __post_init__(self) -> None:
            if not (0 <= self.width <= 8192 and 0 <= self.height <= 8192):
                raise ValueError(f"width and height must be in 0..8192, got {self.width}x{self.height}")
            if not 0 < self.scale <= 16:
                raise ValueError(f"scale must be in (0, 16], got {self.scale}")
            if self.crop and (len(self.crop) != 4 or min(self.crop) < 0 or min(self.crop[2:]) < 1):
                raise ValueError(f"crop is [x, y, w, h] with w, h >= 1, got {self.crop}")
            if len(self.color) != 3 or not all(0 <= c <= 255 for c in self.color):
                raise ValueError(f"color is [r, g, b] in 0..255, got {self.color}")

    def setup(self) -> None:
        p = self.params
        self.geometry = lru_cache(maxsize=8)(
            lambda src: Geometry.of(src, tuple(p.crop), (p.height, p.width), p.scale, p.fit))

    def process(self, inputs: dict[str, Message]) -> None:
        msg = inputs["in"]
        image = msg.buffers["image"]
        g = self.geometry(image.shape[:2])
        out = {}
        for name, buf in msg.buffers.items():
            if name == "image":
                out[name] = g.apply(buf, tuple(self.params.color))
            elif name == "keypoints":
                out[name] = g.points(buf)
            elif isinstance(buf, np.ndarray) and buf.ndim >= 2 and buf.shape[:2] == image.shape[:2]:
                out[name] = g.apply(buf)
            else:
                out[name] = buf
        self.emit("out", msg.derive(**out))
