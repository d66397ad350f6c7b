"""Image sequences: a folder of images as a video source, and frames written as numbered images.

Files are ordered naturally (frame2 before frame10). Reading and writing use OpenCV, which
handles PNG, JPEG, BMP, TIFF and WebP.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from stream.message import Message
from stream.node import NodeError, Port, Sink, Source
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
        path: str = param(doc="folder of images")
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


class ImageSequenceSink(Sink):
    """Each frame to its own numbered image file (PNG lossless, JPEG with a quality)."""

    inputs = {"in": Port("video")}

    @dataclass
    class Params:
        path: str = param(doc="file pattern with a frame-number field, e.g. out/frames/%06d.png")
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
