"""Video capture from any file or URL FFmpeg can open (MP4, MKV, AVI, GIF, RTSP, HTTP, UDP...) through PyAV.

Frames carry their real presentation timestamps (seconds) and message seq equals the frame's
index in the clip, so a restart can resume exactly. Audio, when asked for, is decoded and sent
on the `audio` port in step with the video: each video message is emitted together with the
audio decoded since the previous one, so the encoder can mux it back in sync (see `stream.nodes.mp4`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterator, Literal

from stream.message import Message
from stream.node import NodeError, Port, Source
from stream.media import audio_message, open_input
from stream.pacing import Pacer
from stream.params import param

#: Samples per audio message at most (the wire bounds each dimension at 16384).
MAX_SAMPLES = 16384


class VideoSource(Source):
    """Frames (and audio) of a video file or network stream; start/end/loop; paced live or as fast as possible."""

    outputs = {
        "out": Port("video", doc="RGB uint8 frames; pts = media time (s); meta fps, time_base, origin, audio"),
        "audio": Port("audio", required=False, doc="planar audio since the previous frame (buffers['audio'])"),
    }

    @dataclass
    class Params:
        path: str = param(doc="video file, or URL (rtsp://, http(s)://, udp://, tcp://)", file="input")
        start: float = param(0.0, "first second of the clip to emit")
        end: float | None = param(None, "second where the clip ends (None: to the end)")
        loop: bool = param(False, "start again at `start` after the end (pts keep increasing)")
        realtime: bool = param(False, "pace frames at their timestamps, like a camera")
        audio: bool = param(True, "decode audio for the `audio` port when the input has it")
        on_error: Literal["skip", "fail"] = param("skip", "undecodable packets: skip and count, or fail "
                                                          "(a file that ends early fails either way)")
        timeout: float = param(10.0, "seconds to wait for a network input")

        def __post_init__(self) -> None:
            if self.start < 0:
                raise ValueError(f"start must be >= 0, got {self.start}")
            if self.end is not None and self.end <= self.start:
                raise ValueError(f"end ({self.end}) must be after start ({self.start})")

    def setup(self) -> None:
        p = self.params
        self.container = open_input(p.path, p.timeout)
        if not self.container.streams.video:
            raise NodeError(f"{p.path}: no video stream")
        self.video = self.container.streams.video[0]
        if self.video.codec_context is None:  # PyAV leaves it unset where FFmpeg has no decoder
            raise NodeError(f"{p.path}: unsupported video codec (this FFmpeg has no decoder for it)")
        self.video.thread_type = "AUTO"
        decodable = [a for a in self.container.streams.audio if a.codec_context is not None]
        self.audio = decodable[0] if p.audio and decodable else None
        self.rate = self.video.average_rate or self.video.guessed_rate or 30
        self.first = 0
        self.counts = self.ctx.metrics.extra
        self.counts.update(decode_errors=0)

    def length(self) -> int | None:
        if self.params.loop:
            return None
        duration = self._duration()
        if duration is None:
            return self.video.frames or None
        return max(1, round((duration - self.params.start) * float(self.rate)))

    def _duration(self) -> float | None:
        """Seconds to the end of the clip (end param, else the stream's or container's duration)."""
        if self.params.end is not None:
            return self.params.end
        if self.video.duration is not None:
            return float(self.video.duration * self.video.time_base)
        if self.container.duration is not None:
            return self.container.duration / 1e6
        return None

    def skip_to(self, seq: int) -> None:
        self.first = seq

    def _decoded(self) -> Iterator[tuple[str, Any]]:
        """("video"|"audio", frame) in file order from `start` to `end`, once through the clip."""
        import av

        p = self.params
        if p.start > 0:
            self.container.seek(int(p.start / self.video.time_base), stream=self.video, backward=True)
        streams = [s for s in (self.video, self.audio) if s is not None]
        decoded, last_t = 0, None
        ended: set[Any] = set()  # streams past `end`; audio goes on to `end` after the video got there
        for packet in self.container.demux(streams):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                if p.on_error == "fail":
                    raise NodeError(f"{p.path}: undecodable data at pts {packet.pts}: {exc}") from None
                self.counts["decode_errors"] += 1
                continue
            for frame in frames:
                t = frame.time if frame.pts is not None else None
                if t is not None and t < p.start - 1e-6:
                    continue
                if t is not None and p.end is not None and t >= p.end - 1e-6:
                    ended.add(packet.stream)
                    if len(ended) == len(streams):
                        return
                    continue
                if packet.stream is self.video:
                    decoded += 1
                    last_t = t if t is not None else last_t
                yield packet.stream.type, frame
        self._check_complete(decoded, last_t)

    def _check_complete(self, decoded: int, last_t: float | None) -> None:
        """A file whose frames stop before the duration it declares (or, without one, its frame count) is
        truncated: an offline job must not pass it off as complete. Frames `skip` dropped inside the
        stream are not a truncation (they are counted in decode_errors). A live stream (URL) only counts
        what it missed."""
        p = self.params
        declared = self.video.frames if p.start == 0 and p.end is None else 0
        end = self._file_end()
        short = end is None and bool(declared) and decoded < declared - 1
        if end is not None and p.end is not None:
            end = min(end, p.end)
        seen = last_t + 1 / float(self.rate) if last_t is not None else p.start  # where the last frame ends
        # WebM/MKV declare no frame count, only the container's duration (the longest stream's: audio may run on)
        slack = 3 / float(self.rate) + (0.0 if self.video.duration is not None else 1.0)
        early = end is not None and seen < end - slack
        if not (short or early):
            return
        what = f"{decoded} of {declared} frames" if declared else f"{decoded} frames"
        if end is not None:
            what += f", {seen:.2f} s of {end:.2f} s"
        if "://" not in p.path:
            raise NodeError(f"{p.path}: truncated: the input ended early ({what} decoded)")
        self.counts["missing_frames"] = declared - decoded if short else round((end - seen) * float(self.rate))

    def _file_end(self) -> float | None:
        """Media time (s) where the file says its video ends: the stream's duration, else the container's."""
        v = self.video
        if v.duration is not None:
            return float(((v.start_time or 0) + v.duration) * v.time_base)
        if self.container.duration is not None:
            return ((self.container.start_time or 0) + self.container.duration) / 1e6
        return None

    def frames(self) -> Iterator[dict[str, Message]]:
        p = self.params
        offset = 0.0  # added to pts on each pass of a loop, so timestamps keep increasing
        index = 0
        pacer = Pacer(p.realtime)
        pending: Message | None = None
        audio = AudioQueue()
        while True:
            last_t = None
            for kind, frame in self._decoded():
                if kind == "audio":
                    if index >= self.first:
                        audio.put(frame, offset)
                    continue
                t = (frame.time if frame.pts is not None else index / float(self.rate)) + offset
                last_t = t - offset
                if index >= self.first:
                    if pending is not None:
                        yield from audio.with_video(pending, until=t)
                    pacer.wait(t)
                    pending = Message(pts=t, capture_ts=time.time(), meta=self._meta(),
                                      buffers={"image": frame.to_ndarray(format="rgb24")})
                index += 1
            if not p.loop or last_t is None or self.ctx.stopping():
                break
            offset += last_t + 1 / float(self.rate) - p.start
            self.container.seek(0)
        if pending is not None:
            yield from audio.with_video(pending, until=None)

    def _meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "fps": [self.rate.numerator, self.rate.denominator],
            "time_base": [self.video.time_base.numerator, self.video.time_base.denominator],
            "origin": self.params.start,
        }
        if self.audio is not None:
            meta["audio"] = {"sample_rate": self.audio.rate, "layout": self.audio.layout.name}
        return meta

    def close(self) -> None:
        if hasattr(self, "container"):
            self.container.close()


class AudioQueue:
    """Decoded audio waiting to be sent next to the video frame it plays with.

    Containers interleave audio in chunks (often half a second ahead of the video); sending each
    frame's share with it keeps every audio message small (the wire bounds a dimension at 16384)
    and the two streams in step through the graph.
    """

    def __init__(self) -> None:
        self.frames: list[tuple[Any, float]] = []

    def put(self, frame: Any, offset: float) -> None:
        self.frames.append((frame, offset))

    def _take(self, until: float | None) -> list[tuple[Any, float]]:
        """The queued frames that start before `until` (all with None), at most MAX_SAMPLES in all."""
        taken, samples = [], 0
        while self.frames and samples + self.frames[0][0].samples <= MAX_SAMPLES:
            frame, offset = self.frames[0]
            if until is not None and frame.pts is not None and frame.time + offset >= until:
                break
            taken.append(self.frames.pop(0))
            samples += frame.samples
        return taken

    @staticmethod
    def _message(taken: list[tuple[Any, float]]) -> Message:
        msg = audio_message([frame for frame, _ in taken])
        msg.pts = None if msg.pts is None else msg.pts + taken[0][1]
        return msg

    def with_video(self, video: Message, until: float | None) -> Iterator[dict[str, Message]]:
        """{"out": video, "audio": the audio due before `until`}, then audio-only bundles for what did not fit."""
        bundle = {"out": video}
        taken = self._take(until)
        if taken:
            bundle["audio"] = self._message(taken)
        yield bundle
        while (taken := self._take(until)):
            yield {"audio": self._message(taken)}
