"""Side-by-side debug layouts of several streams (input | avatar | stylized ...)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from stream.frames import StatsOverlay, as_rgb, fit
from stream.message import Message
from stream.node import Node, Port
from stream.params import param


def _shown(msg: Message) -> np.ndarray:
    """What a tile shows: the picture, with its mask applied where it has both (an avatar's colour is
    only defined where its mask is; without it faint smudges show around the person)."""
    image = as_rgb(msg)
    if "image" not in msg.buffers or "mask" not in msg.buffers:
        return image
    mask = np.asarray(msg.buffers["mask"])
    alpha = mask.astype(np.float32) / 255 if mask.dtype == np.uint8 else np.clip(mask, 0, 1).astype(np.float32)
    return (image * alpha.reshape(*alpha.shape[:2], 1) + 0.5).astype(np.uint8)


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
        first = _shown(inputs["a"])
        tw = self.params.tile_width or first.shape[1]
        th = max(1, round(first.shape[0] * tw / first.shape[1]))
        cols = {"row": len(names), "column": 1, "grid": 2 if len(names) > 1 else 1}[self.params.layout]
        rows = -(-len(names) // cols)
        out = self.allocate("out", (rows * th, cols * tw, 3), np.uint8)
        out[:] = 0
        for i, name in enumerate(names):
            y, x = (i // cols) * th, (i % cols) * tw
            tile = fit(_shown(inputs[name]), th, tw, "letterbox")
            label = self.params.labels["abcd".index(name)] if "abcd".index(name) < len(self.params.labels) else ""
            if label:  # drawn on the tile alone, so a long caption never spills into its neighbour
                tile = tile.copy()  # may be the (read-only) input itself
                cv2.putText(tile, label, (8, th - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 1, cv2.LINE_AA)
            out[y:y + th, x:x + tw] = tile
        if self.overlay is not None:
            self.overlay.draw(out, min(m.capture_ts for m in inputs.values()))
        self.emit("out", inputs["a"].derive(image=out))
