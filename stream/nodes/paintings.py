"""Paintings from a folder, one every few seconds: the style switcher of a live universal stylizer.

Feeds the ``stylize`` node's ``style`` port (graphs/stylize_any.yaml). The folder is listed again
before each painting, so pictures dropped into it join the cycle (a watched folder) and removed ones
leave it. A file that cannot be read as a picture is skipped with a warning naming it (counted in
``skipped``); a folder with no readable picture left is an error. Whether a picture can serve as a
painting (its size) is the stylize node's to judge: it refuses one and keeps the previous.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from stream.image_files import EXTENSIONS, ImageFileError, read_image
from stream.message import Message
from stream.node import NodeError, Port, Source
from stream.pacing import Pacer
from stream.params import param

log = logging.getLogger(__name__)


class PaintingsSource(Source):
    """Each picture of ``folder`` in name order, one every ``every`` seconds, round and round (or once)."""

    outputs = {"out": Port("video", doc="a painting (RGB uint8), its file name in meta['painting']")}

    @dataclass
    class Params:
        folder: str = param(doc="folder of paintings (any picture; re-read before each one)", file="folder")
        every: float = param(10.0, "seconds between paintings")
        max_side: int = param(1024, "a painting's longer side is scaled down to this (its statistics need no more)")
        loop: bool = param(True, "cycle for ever; false: each painting once, then end of stream")

        def __post_init__(self) -> None:
            if not self.every > 0:
                raise ValueError(f"every must be > 0 seconds, got {self.every}")
            if self.max_side < 16:
                raise ValueError(f"max_side must be >= 16, got {self.max_side}")

    def setup(self) -> None:
        self.ctx.metrics.extra["skipped"] = 0

    def _files(self) -> list[Path]:
        folder = Path(self.params.folder)
        return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS) \
            if folder.is_dir() else []

    def frames(self) -> Iterator[Message]:
        p = self.params
        pacer, shown, index, unreadable = Pacer(True), 0, 0, 0
        while True:
            files = self._files()
            if not p.loop and index >= len(files) and shown:
                return
            if not files or unreadable >= len(files):
                raise NodeError(f"{p.folder}: no {'readable ' if files else ''}picture "
                                f"({', '.join(EXTENSIONS)}) to show")
            path = files[index % len(files)]
            index += 1
            try:
                image = read_image(path, max_side=p.max_side).rgb
            except ImageFileError as exc:
                unreadable += 1
                self.ctx.metrics.extra["skipped"] += 1
                log.warning("%s: skipped: %s", self.ctx.name, exc)
                continue
            unreadable = 0
            pacer.wait(shown * p.every)
            yield Message(pts=shown * p.every, capture_ts=time.time(), buffers={"image": image},
                          meta={"painting": path.name})
            shown += 1
