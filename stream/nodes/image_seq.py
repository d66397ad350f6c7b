"""Frames written as numbered images (PNG, JPEG, BMP, TIFF, WebP through OpenCV)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream.message import Message
from stream.node import NodeError, Port, Sink
from stream.nodes.images import EXTENSIONS
from stream.params import param


class ImageSequenceSink(Sink):
    """Each frame to its own numbered image file (PNG lossless, JPEG with a quality)."""

    inputs = {"in": Port("video")}

    @dataclass
    class Params:
        path: str = param(doc="file pattern with a frame-number field, e.g. out/frames/%06d.png", file="pattern")
        quality: int = param(95, "JPEG/WebP quality 1..100")

        def __post_init__(self) -> None:
            try:
                self.path % 0
            except TypeError:
                raise ValueError(f"path must contain one integer field such as %06d, got {self.path!r}") from None
            if Path(self.path % 0).suffix.lower() not in EXTENSIONS:
                raise ValueError(f"path must end in one of {', '.join(EXTENSIONS)}, got {self.path!r}")
            if not 1 <= self.quality <= 100:
                raise ValueError(f"quality must be in 1..100, got {self.quality}")

    def setup(self) -> None:
        import cv2

        folder = Path(self.params.path % 0).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NodeError(f"cannot create output folder {folder}: {exc}") from None
        self.flags = [cv2.IMWRITE_JPEG_QUALITY, self.params.quality, cv2.IMWRITE_WEBP_QUALITY, self.params.quality]
        self.index = 0

    def process(self, inputs: dict[str, Message]) -> None:
        """Encode, write as NAME.part, rename: an image under its final name is always complete."""
        import cv2

        path = Path(self.params.path % self.index)
        image = np.asarray(inputs["in"].buffers["image"])
        ok, data = cv2.imencode(path.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), self.flags)
        partial = path.with_name(path.name + ".part")
        try:
            if not ok:
                raise OSError("encoder failed")
            partial.write_bytes(data.tobytes())
            os.replace(partial, path)
        except OSError as exc:
            raise NodeError(f"cannot write image {path}: {exc}") from None
        self.index += 1
