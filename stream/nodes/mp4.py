"""Encode frames to an H.264 MP4 (or MKV) file through PyAV.

The file is written as PATH.part and renamed to PATH only once the encoder has been
flushed, so a crashed or killed job never leaves a file that looks complete.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from stream.message import Message
from stream.node import NodeError, Port, Sink
from stream.params import param


class Mp4Sink(Sink):
    inputs = {"in": Port("video")}

    @dataclass
    class Params:
        path: str = param(doc="output file (.mp4 or .mkv)")
        fps: float = param(30.0, "frame rate of the output time base")
        codec: str = param("libx264", "FFmpeg encoder name")
        crf: int = param(20, "constant rate factor (quality; lower is better)")
        preset: str = param("veryfast", "x264 preset")

        def __post_init__(self) -> None:
            if not self.path.endswith((".mp4", ".mkv", ".mov")):
                raise ValueError(f"path must end in .mp4, .mkv or .mov, got {self.path!r}")
            if not 0 <= self.crf <= 51:
                raise ValueError(f"crf must be in 0..51, got {self.crf}")

    def setup(self) -> None:
        import av

        self.final = Path(self.params.path)
        self.partial = self.final.with_name(self.final.name + ".part")
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self.container = av.open(str(self.partial), mode="w", format=self.final.suffix.lstrip(".").replace("mkv", "matroska"))
        except (OSError, av.error.FFmpegError) as exc:
            raise NodeError(f"cannot write {self.final}: {exc}") from None
        self.stream: Any = None
        self.next_pts = 0
        self.done = False

    def _open_stream(self, height: int, width: int) -> None:
        import av

        rate = Fraction(self.params.fps).limit_denominator(1001)
        try:
            self.stream = self.container.add_stream(self.params.codec, rate=rate)
        except (ValueError, av.error.FFmpegError) as exc:
            raise NodeError(f"encoder {self.params.codec!r} is not available: {exc}") from None
        self.stream.width, self.stream.height = width - width % 2, height - height % 2  # yuv420p needs even sizes
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.time_base = 1 / rate
        self.stream.options = {"crf": str(self.params.crf), "preset": self.params.preset}

    def process(self, inputs: dict[str, Message]) -> None:
        import av

        msg = inputs["in"]
        image = msg.buffers["image"]
        if self.stream is None:
            self._open_stream(*image.shape[:2])
        image = image[: self.stream.height, : self.stream.width]
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        pts = self.next_pts if msg.pts is None else round(msg.pts / self.stream.codec_context.time_base)
        frame.pts = max(pts, self.next_pts)  # strictly increasing, whatever upstream did
        self.next_pts = frame.pts + 1
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def finish(self) -> None:
        if self.stream is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()
        if self.stream is not None:
            os.replace(self.partial, self.final)
        else:
            self.partial.unlink(missing_ok=True)
        self.done = True

    def close(self) -> None:
        if not self.done:  # crashed: keep the evidence as .part, never as the final name
            self.container.close()
