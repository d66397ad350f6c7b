"""A folder of images as a video source (``image_seq`` writes frames as numbered images).

Files are ordered naturally (frame2 before frame10) and read by `stream.image_files` (PNG, JPEG,
BMP, TIFF, WebP; 16-bit scaled, EXIF orientation applied, alpha composited over white, at most
`image_files.MAX_PIXELS` decoded pixels each).
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

from stream.image_files import EXTENSIONS, ImageFileError, read_image
from stream.message import Message
from stream.node import NodeError, Port, Source
from stream.pacing import Pacer
from stream.params import param

log = logging.getLogger(__name__)


def _natural(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


class ImageFolderSource(Source):
    """The images of a folder, in natural order, as frames at `fps`."""

    outputs = {"out": Port("video", doc="RGB uint8 frames; meta['file'] names the image")}

    @dataclass
    class Params:
        path: str = param(doc="folder of images", file="folder")
        fps: float = param(30.0, "frame rate the images are given (pts spacing, pacing when realtime)")
        loop: bool = param(False, "start again after the last image")
        realtime: bool = param(False, "pace frames at fps")
        on_error: Literal["skip", "fail"] = param("skip", "unreadable image: skip and count, or fail")

        def __post_init__(self) -> None:
            if not 0 < self.fps <= 1000:
                raise ValueError(f"fps must be in (0, 1000], got {self.fps}")

    def setup(self) -> None:
        folder = Path(self.params.path)
        if not folder.is_dir():
            raise NodeError(f"image folder not found: {folder}")
        self.files = sorted((f for f in folder.iterdir() if f.suffix.lower() in EXTENSIONS), key=_natural)
        if not self.files:
            raise NodeError(f"no images ({', '.join(EXTENSIONS)}) in {folder}")
        self.first = 0
        self.ctx.metrics.extra["unreadable"] = 0

    def length(self) -> int | None:
        return None if self.params.loop else len(self.files)

    def skip_to(self, seq: int) -> None:
        self.first = seq

    def frames(self) -> Iterator[Message]:
        p = self.params
        pacer = Pacer(p.realtime)
        i = self.first
        while p.loop or i < len(self.files):
            path = self.files[i % len(self.files)]
            try:
                picture = read_image(path, min_side=1)
            except ImageFileError as exc:
                if p.on_error == "fail":
                    raise NodeError(f"cannot read image {exc}") from None
                log.warning("skipped: %s", exc, extra={"node": self.ctx.name})
                self.ctx.metrics.extra["unreadable"] += 1
            else:
                pacer.wait(i / p.fps)
                yield Message(pts=i / p.fps, capture_ts=time.time(), meta={"file": path.name},
                              buffers={"image": picture.rgb})
            i += 1
