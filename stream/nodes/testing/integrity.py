"""A sink that checks what arrives from a synthetic source: gaps, reordering, corrupted pixels."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream.message import Message
from stream.node import Port, Sink
from stream.nodes.testing.synthetic import pattern_base, read_stamp, test_pattern
from stream.params import param


class IntegritySink(Sink):
    """Counts frames, missing frame numbers (gaps), frames older than one already seen
    (reordered), and frames whose pixels differ from the regenerated pattern (corrupted)."""

    inputs = {"in": Port("video")}

    @dataclass
    class Params:
        check_pixels: bool = param(True, "compare every pixel with the regenerated pattern")

    def setup(self) -> None:
        self.last = -1
        self.base: np.ndarray | None = None
        self.counts = self.ctx.metrics.extra
        self.counts.update(frames=0, gaps=0, reordered=0, corrupted=0, stamp_mismatch=0)

    def process(self, inputs: dict[str, Message]) -> None:
        msg = inputs["in"]
        image = msg.buffers["image"]
        frame, inverted = read_stamp(image)
        self.counts["frames"] += 1
        if "frame" in msg.meta and msg.meta["frame"] != frame:
            self.counts["stamp_mismatch"] += 1
        if frame <= self.last:
            self.counts["reordered"] += 1
        else:
            self.counts["gaps"] += frame - self.last - 1
            self.last = frame
        if self.params.check_pixels:
            h, w = image.shape[:2]
            if self.base is None or self.base.shape[:2] != (h, w + 256):
                self.base = pattern_base(h, w)
            expected = test_pattern(frame, h, w, self.base)
            if inverted:
                expected = 255 - expected
            if not np.array_equal(image, expected):
                self.counts["corrupted"] += 1
