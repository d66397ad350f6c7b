"""255 - image: the simplest transform, for tests and examples (the example of ``stream.node``)."""
from __future__ import annotations

import numpy as np

from stream.message import Message
from stream.node import Node, Port


class Invert(Node):
    """255 - image, written straight into a runtime-provided output buffer (no extra copy)."""

    inputs = {"in": Port("video")}
    outputs = {"out": Port("video")}

    def process(self, inputs: dict[str, Message]) -> None:
        msg = inputs["in"]
        image = msg.buffers["image"]
        out = self.allocate("out", image.shape, image.dtype)
        np.subtract(255, image, out=out)
        self.emit("out", msg.derive(image=out))
