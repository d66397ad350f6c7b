"""Encode frames to an H.264 MP4 or MKV file through PyAV, muxing the source's audio back in sync.

Timestamps: when frames come from `video` (stream.nodes.video) the output keeps the input's
time base and every frame's pts exactly (minus the clip's `origin`), so a re-render has the same
timing as its input, variable frame rate included; other frames get pts = message pts at `fps`.
Audio arrives on its own port (join "any": whichever is ready first is muxed first; FFmpeg's
interleaving muxer orders the packets) and is re-encoded to AAC at the same media time.

The file is written as PATH.part and renamed to PATH only once the encoder has been flushed at
end of stream, so a failed, crashed or killed job never leaves a file that looks complete
(`finalize_on_stop` also completes it on Ctrl-C or --for, for live recordings).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from stream.message import Message
from stream.node import NodeError, Port, Sink
from stream.media import AtomicOutput, add_audio_stream, add_video_stream, audio_frame, rational, video_frame
from stream.params import param

log = logging.getLogger(__name__)

#: Audio that arrives before the first video frame (it skips the video chain) waits here; more
#: than this means the video never comes.
_MAX_EARLY_AUDIO = 1024


class Mp4Sink(Sink):
    """H.264 file (MP4/MKV/MOV) with crf/preset/bitrate, exact timestamps and the source's audio muxed back."""

    inputs = {
        "in": Port("video"),
        "audio": Port("audio", required=False, doc="audio messages from a `video` source's audio port"),
    }
    join = "any"

    @dataclass
    class Params:
        path: str = param(doc="output file (.mp4, .mkv or .mov)", file="output")
        fps: float | None = param(None, "frame rate; None: the source's (meta['fps']), else 30")
        codec: str = param("libx264", "FFmpeg video encoder (libx264, h264_nvenc, libx265...) or 'auto' (NVENC if present)")
        crf: int = param(20, "constant rate factor (quality; lower is better); ignored when bitrate is set")
        preset: str = param("veryfast", "encoder preset (x264: ultrafast..veryslow)")
        bitrate: int | None = param(None, "target video bits/s instead of constant quality")
        audio_bitrate: int = param(128_000, "AAC bits/s")
        finalize_on_stop: bool = param(False, "also complete the file when the job is stopped before its end "
                                              "(live recording); otherwise only end-of-stream completes it")

        def __post_init__(self) -> None:
            if not self.path.endswith((".mp4", ".mkv", ".mov")):
                raise ValueError(f"path must end in .mp4, .mkv or .mov, got {self.path!r}")
            if not 0 <= self.crf <= 51:
                raise ValueError(f"crf must be in 0..51, got {self.crf}")
            if self.fps is not None and not 0 < self.fps <= 1000:
                raise ValueError(f"fps must be in (0, 1000], got {self.fps}")
            if self.bitrate is not None and self.bitrate <= 0:
                raise ValueError(f"bitrate must be > 0, got {self.bitrate}")

    def setup(self) -> None:
        import av

        self.output = AtomicOutput(self.params.path)
        fmt = {".mkv": "matroska"}.get(self.output.final.suffix, self.output.final.suffix.lstrip("."))
        try:
            self.container = av.open(str(self.output.partial), mode="w", format=fmt)
        except (OSError, av.error.FFmpegError) as exc:
            raise NodeError(f"cannot write {self.output.final}: {exc}") from None
        self.video: Any = None
        self.audio: Any = None
        self.origin = 0.0
        self.next_pts = 0
        self.early_audio: list[Message] = []
        self.done = False
        self.counts = self.ctx.metrics.extra
        self.counts.update(video_frames=0, audio_messages=0, audio_ignored=0)
        # The audio stream must exist before the header is written: only expect it where a graph
        # connected our audio input.
        self.audio_connected = self.ctx.connected("audio")

    def _open(self, msg: Message) -> None:
        p = self.params
        height, width = msg.buffers["image"].shape[:2]
        rate = rational(p.fps) if p.fps else Fraction(*msg.meta["fps"]) if "fps" in msg.meta else Fraction(30)
        time_base = Fraction(*msg.meta["time_base"]) if "time_base" in msg.meta and not p.fps else 1 / rate
        self.origin = float(msg.meta.get("origin", 0.0))
        self.frame_ticks = max(1, round(1 / (rate * time_base)))
        self.video = add_video_stream(self.container, p.codec, rate, time_base, width, height,
                                      crf=p.crf, preset=p.preset, bitrate=p.bitrate)
        source_audio = msg.meta.get("audio")
        if source_audio and self.audio_connected:
            self.audio = add_audio_stream(self.container, int(source_audio["sample_rate"]), source_audio["layout"],
                                          bitrate=p.audio_bitrate)
        for early in self.early_audio:
            self._audio(early)
        self.early_audio = []

    def process(self, inputs: dict[str, Message]) -> None:
        if "audio" in inputs:
            msg = inputs["audio"]
            if self.video is None:
                if len(self.early_audio) >= _MAX_EARLY_AUDIO:
                    raise NodeError(f"{self.params.path}: {_MAX_EARLY_AUDIO} audio messages but no video frame")
                self.early_audio.append(msg.derive(audio=msg.buffers["audio"].copy()))
            else:
                self._audio(msg)
            return
        self._video(inputs["in"])

    def _video(self, msg: Message) -> None:
        if self.video is None:
            self._open(msg)
        pts = self.next_pts if msg.pts is None else round((msg.pts - self.origin) / self.video.codec_context.time_base)
        pts = max(pts, self.next_pts)  # strictly increasing, whatever upstream did
        self.next_pts = pts + 1
        # duration: so that the last frame lasts as long as the others
        frame = video_frame(msg.buffers["image"], self.video, pts, self.frame_ticks)
        for packet in self.video.encode(frame):
            self.container.mux(packet)
        self.counts["video_frames"] += 1

    def _audio(self, msg: Message) -> None:
        if self.audio is None:
            self.counts["audio_ignored"] += 1
            return
        frame = audio_frame(msg)
        if msg.pts is not None:
            start = round((msg.pts - self.origin) * frame.sample_rate)
            if start < 0:  # audio from before the clip's first frame
                return
            frame.pts = start
            frame.time_base = Fraction(1, frame.sample_rate)
        for packet in self.audio.encode(frame):
            self.container.mux(packet)
        self.counts["audio_messages"] += 1

    def finish(self) -> None:
        for stream in (self.video, self.audio):
            if stream is not None:
                for packet in stream.encode():
                    self.container.mux(packet)
        self.container.close()
        if self.video is not None and (self.params.finalize_on_stop or not self.ctx.stopping()):
            self.output.commit()
        elif self.video is not None:
            log.warning("stopped before the end: output left as %s", self.output.partial, extra={"node": self.ctx.name})
        else:
            self.output.discard()
        self.done = True

    def close(self) -> None:
        if not self.done and hasattr(self, "container"):  # crashed: keep the evidence as .part, never as the final name
            self.container.close()
