"""A folder of images as a video source (``image_seq`` writes frames as numbered images).

Files are ordered naturally (frame2 before frame10). Reading and writing use OpenCV, which
handles PNG, JPEG, BMP, TIFF and WebP.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal


from stream.message import Message
from stream.node import NodeError, Port, Source
from stream.pacing import Pacer
from stream.params import param

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


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
        import cv2

        p = self.params
        pacer = Pacer(p.realtime)
        i = self.first
        while p.loop or i < len(self.files):
            path = self.files[i % len(self.files)]
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                if p.on_error == "fail":
                    raise NodeError(f"cannot read image {path}")
                self.ctx.metrics.extra["unreadable"] += 1
            else:
                pacer.wait(i / p.fps)
                yield Message(pts=i / p.fps, capture_ts=time.time(), meta={"file": path.name},
                              buffers={"image": cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)})
            i += 1
