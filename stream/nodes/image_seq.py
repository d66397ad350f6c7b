"""Frames written as numbered images (PNG, JPEG, BMP, TIFF, WebP), each atomically (`stream.image_files`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream.image_files import EXTENSIONS, ImageFileError, write_image
from stream.message import Message
from stream.node import NodeError, Port, Sink
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
        folder = Path(self.params.path % 0).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NodeError(f"cannot create output folder {folder}: {exc}") from None
        self.index = 0

    def process(self, inputs: dict[str, Message]) -> None:
        """Written as NAME.part, then renamed: an image under its final name is always complete."""
        path = Path(self.params.path % self.index)
        try:
            write_image(path, np.asarray(inputs["in"].buffers["image"]), quality=self.params.quality)
        except ImageFileError as exc:
            raise NodeError(f"cannot write image {exc}") from None
        self.index += 1
