"""A producer of well-formed messages whose image is the wrong kind of picture: tests of what a node refuses.

Each message's image leaves as the next of ``forms``, in turn: ``float32`` (the RGB scaled to [0, 1]),
``uint16`` (x 257), ``grey`` ((H, W) uint8), ``grey1`` ((H, W, 1)), ``rgba`` ((H, W, 4), opaque),
``none`` (no image buffer at all), ``rgb`` (unchanged). The wire carries all of them: what is wrong
is for the receiving node to notice (the stylize node's style port, for one).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from stream.message import Message
from stream.node import Node, Port
from stream.params import param

FORMS: dict[str, Callable[[np.ndarray], np.ndarray | None]] = {
    "float32": lambda rgb: rgb.astype(np.float32) / 255,
    "uint16": lambda rgb: rgb.astype(np.uint16) * 257,
    "grey": lambda rgb: rgb.mean(axis=2).round().astype(np.uint8),
    "grey1": lambda rgb: rgb.mean(axis=2, keepdims=True).round().astype(np.uint8),
    "rgba": lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]),
    "none": lambda rgb: None,
    "rgb": lambda rgb: np.array(rgb),
}


class Malform(Node):
    """The input's image as the next form of ``forms`` (module docstring)."""

    inputs = {"in": Port("video")}
    outputs = {"out": Port("video", doc="the same message, its image in another form (or none)")}

    @dataclass
    class Params:
        forms: list[str] = param(list(FORMS), "the forms, in turn: " + ", ".join(FORMS))

        def __post_init__(self) -> None:
            unknown = [f for f in self.forms if f not in FORMS]
            if unknown or not self.forms:
                raise ValueError(f"forms must be some of {', '.join(FORMS)}, got {self.forms}")

    def setup(self) -> None:
        self.sent = 0

    def process(self, inputs: dict[str, Message]) -> None:
        msg = inputs["in"]
        image = FORMS[self.params.forms[self.sent % len(self.params.forms)]](msg.buffers["image"])
        self.sent += 1
        others = {k: v for k, v in msg.buffers.items() if k != "image"}
        self.emit("out", msg.derive(**others, **({} if image is None else {"image": image})))
