"""A synthetic video source: a moving test pattern with the frame number stamped into its pixels.

The pattern is a pure function of (frame, height, width), so a sink can regenerate the
exact frame it should have received and detect any corrupted pixel, and read the
stamp to detect gaps and reordering (see `stream.nodes.testing.integrity`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from stream.message import Message
from stream.node import Port, Source
from stream.pacing import Pacer
from stream.params import param

STAMP_BITS = 32
_STAMP_BLOCKS = STAMP_BITS + 1  # one reference block, then the bits


def _block(width: int) -> int:
    return max(1, min(8, width // _STAMP_BLOCKS))


def pattern_base(height: int, width: int) -> np.ndarray:
    """A (height, width + 256, 3) pattern; frame f is its columns f % 256 .. f % 256 + width."""
    y, x = np.mgrid[0:height, 0:width + 256]
    return np.stack([(x * 3) % 256, (y * 2 + x) % 256, ((x // 16 + y // 16) % 2) * 160 + (y % 96)], axis=-1).astype(np.uint8)


def stamp(image: np.ndarray, frame: int) -> None:
    """Write `frame` into the top-left strip: a white reference block, then 32 bit blocks."""
    b = _block(image.shape[1])
    image[:b, :b] = 255
    for i in range(STAMP_BITS):
        image[:b, (i + 1) * b:(i + 2) * b] = 255 if (frame >> i) & 1 else 0


def read_stamp(image: np.ndarray) -> tuple[int, bool]:
    """(frame, inverted): bits are read relative to the reference block, so inversion keeps them."""
    b = _block(image.shape[1])
    blocks = image[:b, :_STAMP_BLOCKS * b].reshape(b, _STAMP_BLOCKS, b, -1).mean(axis=(0, 2, 3))
    reference = blocks[0] > 127
    bits = (blocks[1:] > 127) == reference
    return int(sum(1 << i for i, bit in enumerate(bits) if bit)), not reference


def test_pattern(frame: int, height: int, width: int, base: np.ndarray | None = None,
                 out: np.ndarray | None = None) -> np.ndarray:
    """The exact frame number `frame` of the pattern (into `out` when given)."""
    base = pattern_base(height, width) if base is None else base
    offset = frame % 256
    out = np.empty((height, width, 3), np.uint8) if out is None else out
    np.copyto(out, base[:, offset:offset + width])
    stamp(out, frame)
    return out


class SyntheticSource(Source):
    """Moving test pattern; paced at `fps` (live) or as fast as possible; finite or endless."""

    outputs = {"out": Port("video", doc="RGB uint8 frames, frame number in meta['frame'] and in the pixels")}

    @dataclass
    class Params:
        width: int = param(640, "frame width in pixels")
        height: int = param(360, "frame height in pixels")
        fps: float = param(30.0, "frame rate (pts spacing, and pacing when realtime)")
        frames: int = param(300, "frames to emit; 0 = endless")
        realtime: bool = param(False, "pace frames at fps like a camera instead of as fast as possible")

        def __post_init__(self) -> None:
            if not (1 <= self.width <= 8192 and 1 <= self.height <= 8192):
                raise ValueError(f"width/height must be in 1..8192, got {self.width}x{self.height}")
            if not 0 < self.fps <= 1000:
                raise ValueError(f"fps must be in (0, 1000], got {self.fps}")
            if self.frames < 0:
                raise ValueError(f"frames must be >= 0, got {self.frames}")

    def setup(self) -> None:
        self.base = pattern_base(self.params.height, self.params.width)
        self.first = 0

    def length(self) -> int | None:
        return self.params.frames or None

    def skip_to(self, seq: int) -> None:
        self.first = seq

    def frames(self) -> Iterator[Message]:
        p = self.params
        pacer = Pacer(p.realtime)
        i = self.first
        while p.frames == 0 or i < p.frames:
            pacer.wait(i / p.fps)
            image = self.allocate("out", (p.height, p.width, 3), np.uint8)
            test_pattern(i, p.height, p.width, self.base, out=image)
            yield Message(pts=i / p.fps, capture_ts=time.time(), buffers={"image": image}, meta={"frame": i})
            i += 1
