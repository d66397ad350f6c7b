"""Encode frames to an H.264 MP4 or MKV file through PyAV, muxing the source's audio back in sync.

Timestamps: when frames come from `video` (stream.nodes.video) the output keeps the input's
time base and every frame's pts exactly (minus the clip's `origin`), so a re-render has the same
timing as its input, variable frame rate included; other frames get pts = message pts at `fps`.
Frames before the origin are the source's pre-roll (`video`'s `preroll`: frames the graph's
temporal state warmed up on): they are counted (`preroll_dropped`) and not written, as audio
before the origin is not.
Audio arrives on its own port (join "any": whichever is ready first is muxed first; FFmpeg's
interleaving muxer orders the packets) and is re-encoded to AAC at the same media time, one output
track per input track (meta `track`). The input's sample aspect and colour description (meta
`sar`, `colour`) are written to the stream and used for the RGB -> YUV conversion.

The file is written as PATH.part and renamed to PATH only once the encoder has been flushed at
end of stream, so a failed, crashed or killed job never leaves a file that looks complete
(`finalize_on_stop` also completes it on Ctrl-C or --for, for live recordings). A write that fails
(a full disk, a path FFmpeg cannot write) is a NodeError naming the path, and removes the .part:
what cannot be completed must not keep filling the disk.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable

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

    #: Set by setup() once the file is open; None (and nothing to clean up) if setup failed before.
    container: Any = None

    def setup(self) -> None:
        import av

        self.output = AtomicOutput(self.params.path)
        fmt = {".mkv": "matroska"}.get(self.output.final.suffix, self.output.final.suffix.lstrip("."))
        try:
            self.output.partial.open("wb").close()  # PyAV opens it only at the first packet: fail now, not then
            self.container = av.open(str(self.output.partial), mode="w", format=fmt)
        except (OSError, av.error.FFmpegError) as exc:
            self.output.discard()
            raise NodeError(f"cannot write {self.output.final}: {exc}") from None
        self.video: Any = None
        self.audio: list[Any] = []  # one stream per input audio track
        self.colour: dict[str, int] | None = None
        self.origin = 0.0
        self.next_pts = 0
        self.early_audio: list[Message] = []
        self.done = False
        self.counts = self.ctx.metrics.extra
        self.counts.update(video_frames=0, audio_messages=0, audio_ignored=0, preroll_dropped=0)
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
        self.colour = msg.meta.get("colour")
        self.video = add_video_stream(self.container, p.codec, rate, time_base, width, height,
                                      crf=p.crf, preset=p.preset, bitrate=p.bitrate, sar=msg.meta.get("sar"),
                                      colour=self.colour)
        if self.audio_connected:
            self.audio = [add_audio_stream(self.container, int(track["sample_rate"]), track["layout"],
                                           bitrate=p.audio_bitrate, language=track.get("language"))
                          for track in msg.meta.get("audio") or []]
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
        if msg.pts is not None and msg.pts < self.origin - 1e-6:  # the source's tolerance for `start`
            self.counts["preroll_dropped"] += 1
            return
        pts = self.next_pts if msg.pts is None else round((msg.pts - self.origin) / self.video.codec_context.time_base)
        pts = max(pts, self.next_pts)  # strictly increasing, whatever upstream did
        self.next_pts = pts + 1
        # duration: so that the last frame lasts as long as the others
        frame = video_frame(msg.buffers["image"], self.video, pts, self.frame_ticks, self.colour)
        self._write(lambda: self._mux(self.video, frame))
        self.counts["video_frames"] += 1

    def _audio(self, msg: Message) -> None:
        track = int(msg.meta.get("track", 0))
        if track >= len(self.audio):
            self.counts["audio_ignored"] += 1
            return
        frame = audio_frame(msg)
        if msg.pts is not None:
            start = round((msg.pts - self.origin) * frame.sample_rate)
            if start < 0:  # audio from before the clip's first frame
                return
            frame.pts = start
            frame.time_base = Fraction(1, frame.sample_rate)
        self._write(lambda: self._mux(self.audio[track], frame))
        self.counts["audio_messages"] += 1

    def _mux(self, stream: Any, frame: Any) -> None:
        """Encode `frame` (None: flush) on `stream` and mux what comes out."""
        for packet in stream.encode(frame):
            self.container.mux(packet)

    def _write(self, step: Callable[[], None]) -> None:
        """Run an encode/mux/close step; an I/O or FFmpeg error (ENOSPC, EIO, an unwritable path) becomes a
        NodeError naming the output, after the .part is removed (a full disk must not stay full)."""
        import av

        try:
            step()
        except (OSError, av.error.FFmpegError) as exc:
            self.done = True  # nothing left to close or keep
            try:
                self.container.close()
            except (OSError, av.error.FFmpegError):
                pass  # the same error again: the file is being removed anyway
            self.output.discard()
            raise NodeError(f"cannot write {self.output.final}: {exc} (the partial output was removed)") from None

    def finish(self) -> None:
        def flush_and_close() -> None:
            for stream in (self.video, *self.audio):
                if stream is not None:
                    self._mux(stream, None)
            self.container.close()

        self._write(flush_and_close)
        if self.video is not None and (self.params.finalize_on_stop or not self.ctx.stopping()):
            self._write(self.output.commit)
        elif self.video is not None:
            log.warning("stopped before the end: output left as %s", self.output.partial, extra={"node": self.ctx.name})
        else:
            self.output.discard()
        self.done = True

    def close(self) -> None:
        import av

        if self.container is not None and not self.done:  # crashed: never the final name (the supervisor removes the .part)
            try:
                self.container.close()
            except (OSError, av.error.FFmpegError) as exc:
                log.warning("%s: %s", self.output.partial, exc, extra={"node": self.ctx.name})
