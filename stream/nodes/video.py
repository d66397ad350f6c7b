"""Video capture from any file or URL FFmpeg can open (MP4, MKV, AVI, GIF, RTSP, HTTP, UDP...) through PyAV.

Frames carry their real presentation timestamps (seconds) and message seq equals the frame's
index in the clip, so a restart can resume exactly. Audio, when asked for, is decoded and sent
on the `audio` port in step with the video: each video message is emitted together with the
audio decoded since the previous one, so the encoder can mux it back in sync (see `stream.nodes.mp4`).
Every audio track is kept (meta `track`). Frames reach the graph as a player shows them: rotated
upright by the display matrix, with their sample aspect and colour description in meta
(`stream.media.picture_meta`), so the sink writes what the input showed.

Lost data is found, not only undecodable packets: a hole in the video timestamps of a constant-rate
file, or in an audio track's samples, is a stretch the demuxer or decoder skipped without a word.
A job on a file fails on it by default (naming the file and the seconds lost); with `skip` (the
default for a live URL) it goes on and reports the loss (`lost` in its metrics, printed by the
supervisor).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal

from stream.message import Message
from stream.node import NodeError, Port, Source
from stream.media import audio_message, open_input, picture_meta, upright_rgb, video_stream
from stream.pacing import Pacer
from stream.params import param

#: Samples per audio message at most (the wire bounds each dimension at 16384).
MAX_SAMPLES = 16384


class VideoSource(Source):
    """Frames (and audio) of a video file or network stream; start/end/loop; paced live or as fast as possible."""

    outputs = {
        "out": Port("video", doc="RGB uint8 frames, upright; pts = media time (s); meta fps, time_base, origin, "
                                 "sar, colour, audio (one entry per track)"),
        "audio": Port("audio", required=False, doc="planar audio since the previous frame (buffers['audio']), "
                                                   "meta track"),
    }

    @dataclass
    class Params:
        path: str = param(doc="video file, or URL (rtsp://, http(s)://, udp://, tcp://)", file="video")
        start: float = param(0.0, "first second of the clip to emit")
        end: float | None = param(None, "second where the clip ends (None: to the end)")
        loop: bool = param(False, "start again at `start` after the end (pts keep increasing)")
        preroll: float = param(0.0, "seconds before `start` also decoded and sent ahead of the clip, whose origin "
                                    "stays `start`: the graph's temporal state (smoothing, tracking) warms up on them "
                                    "and the mp4 sink drops them (batch's chunk overlap)")
        realtime: bool = param(False, "pace frames at their timestamps, like a camera")
        audio: bool = param(True, "decode every audio track for the `audio` port when the input has audio")
        on_error: Literal["auto", "fail", "skip"] = param(
            "auto", "lost data (undecodable packets, holes in the timestamps): fail naming the seconds lost, or skip "
                    "them and report the loss at the end; auto: fail for a file, skip for a URL (a live stream loses "
                    "packets and is joined between keyframes). A file that ends early fails either way")
        timeout: float = param(10.0, "seconds to wait for a network input")

        def __post_init__(self) -> None:
            if self.start < 0:
                raise ValueError(f"start must be >= 0, got {self.start}")
            if self.end is not None and self.end <= self.start:
                raise ValueError(f"end ({self.end}) must be after start ({self.start})")
            if not 0 <= self.preroll <= self.start:
                raise ValueError(f"preroll must be in [0, start] = [0, {self.start}], got {self.preroll}")
            if self.preroll and self.loop:
                raise ValueError("preroll warms up a clip's first frames once; it cannot be combined with loop")

    def setup(self) -> None:
        p = self.params
        self.container = open_input(p.path, p.timeout)
        self.video = video_stream(self.container, p.path)
        self.video.thread_type = "AUTO"
        decodable = [a for a in self.container.streams.audio if a.codec_context is not None]
        self.audio = decodable if p.audio else []
        self.rate = self.video.average_rate or self.video.guessed_rate or 30
        base = self.video.base_rate
        # holes in the timestamps can be seen only where every frame lasts the same
        self.constant_rate = bool(base and abs(float(self.rate / base) - 1) < 0.01)
        self.first = 0
        self.picture: dict[str, Any] | None = None  # from the first frame: rotation, aspect, colour
        self.counts = self.ctx.metrics.extra
        self.counts.update(decode_errors=0)
        self.losses = Losses(p.path, fail=p.on_error == "fail" or (p.on_error == "auto" and "://" not in p.path))
        self.counts["lost"] = self.losses.total  # what `skip` went on without, for the end-of-run report

    def length(self) -> int | None:
        if self.params.loop:
            return None
        duration = self._duration()
        if duration is None:
            return self.video.frames or None
        return max(1, round((duration - self.params.start + self.params.preroll) * float(self.rate)))

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

    def _decoded(self) -> Iterator[tuple[Any, Any]]:
        """(stream, frame) in file order from `start` (less the pre-roll) to `end`, once through the clip."""
        import av

        p = self.params
        begin = p.start - p.preroll
        if begin > 0:
            self.container.seek(int(begin / self.video.time_base), stream=self.video, backward=True)
        streams = [self.video, *self.audio]
        decoded, last_t = 0, None
        ended: set[Any] = set()  # streams past `end`; audio goes on to `end` after the video got there
        frame_s = 1 / float(self.rate)
        start = self.video.start_time
        self.losses.new_pass((self.video, float(start * self.video.time_base)) if start is not None and p.start == 0
                             else None)
        for packet in self.container.demux(streams):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                self.counts["decode_errors"] += 1
                if packet.pts is not None:
                    self.losses.error(packet.stream, float(packet.pts * packet.time_base))
                continue
            for frame in frames:
                t = frame.time if frame.pts is not None else None
                if t is not None and t < begin - 1e-6:
                    continue
                if t is not None and p.end is not None and t >= p.end - 1e-6:
                    ended.add(packet.stream)
                    if len(ended) == len(streams):
                        return
                    continue
                if t is not None:
                    self._check_hole(packet.stream, frame, t, frame_s)
                if packet.stream is self.video:
                    decoded += 1
                    last_t = t if t is not None else last_t
                yield packet.stream, frame
        self._check_complete(decoded, last_t)
        self.losses.end_pass(last_t + frame_s if last_t is not None else p.start)

    def _check_hole(self, stream: Any, frame: Any, t: float, frame_s: float) -> None:
        """Tell `losses` where `frame` of `stream` starts and how long it lasts; a frame the decoder
        could only conceal (flagged corrupt) fails the job, or is kept and counted with `skip`."""
        if stream is self.video:
            if frame.is_corrupt:
                if self.losses.fail:
                    raise NodeError(f"{self.params.path}: undecodable data: the video frame at {t:.2f} s is damaged "
                                    f"(on_error: skip keeps it as decoded and reports the loss)")
                self.counts["decode_errors"] += 1
            self.losses.arrived(stream, t, frame_s, rate=float(self.rate) if self.constant_rate else None)
        else:
            self.losses.arrived(stream, t, frame.samples / frame.sample_rate)

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
        audio = AudioQueue(len(self.audio))
        tracks = {a.index: track for track, a in enumerate(self.audio)}
        while True:
            last_t = None
            for stream, frame in self._decoded():
                if stream is not self.video:
                    if index >= self.first:
                        audio.put(tracks[stream.index], frame, offset)
                    continue
                if self.picture is None:
                    self.picture = picture_meta(frame, self.video)
                t = (frame.time if frame.pts is not None else index / float(self.rate)) + offset
                last_t = t - offset
                if index >= self.first:
                    if pending is not None:
                        yield from self._paced(pending, audio, pacer, until=t)
                    pending = Message(pts=t, meta=self._meta(), buffers={"image": upright_rgb(frame, self.picture)})
                index += 1
            if not p.loop or last_t is None or self.ctx.stopping():
                break
            offset += last_t + 1 / float(self.rate) - p.start
            self.container.seek(0)
        if pending is not None:
            yield from self._paced(pending, audio, pacer, until=None)

    def _paced(self, video: Message, audio: AudioQueue, pacer: Pacer,
               until: float | None) -> Iterator[dict[str, Message]]:
        """`video` and its audio, sent at the video's time when realtime. The frame after it is decoded by
        then (one ahead), so a slow decode delays neither; capture_ts is when it leaves, as a camera's."""
        pacer.wait(video.pts)
        video.capture_ts = time.time()
        if pacer.realtime:
            self.counts["resyncs"] = pacer.resyncs  # stalls the clock moved past (stream.pacing)
        yield from audio.with_video(video, until)

    def _meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "fps": [self.rate.numerator, self.rate.denominator],
            "time_base": [self.video.time_base.numerator, self.video.time_base.denominator],
            "origin": self.params.start,
            "sar": self.picture["sar"],
            "colour": self.picture["colour"],
        }
        if self.audio:
            meta["audio"] = [{"sample_rate": a.rate, "layout": a.layout.name, "language": a.language}
                             for a in self.audio]
        return meta

    def close(self) -> None:
        if hasattr(self, "container"):
            self.container.close()


@dataclass
class Losses:
    """The stretches of a file that never became frames: undecodable packets, and holes where a
    stream's next frame starts clearly after the previous one ended (garbage can make the demuxer
    or decoder skip data without an error). With `fail` the first stretch raises a NodeError naming
    the file and its seconds; otherwise `total` adds them up for the end-of-run report."""

    path: str
    fail: bool
    total: dict[str, Any] = field(default_factory=lambda: {"frames": 0, "video_s": 0.0, "audio_s": 0.0,
                                                           "ranges": [], "file": ""})
    next_t: dict[Any, float] = field(default_factory=dict)        # stream -> where its next frame should start
    errors: dict[Any, list[float]] = field(default_factory=dict)  # stream -> failed packets' times since its last frame

    def __post_init__(self) -> None:
        self.total["file"] = self.path

    def new_pass(self, video_start: tuple[Any, float] | None = None) -> None:
        """Forget the previous pass (a loop seeks back); `video_start`: (stream, where its first frame is due)."""
        self.next_t = dict([video_start]) if video_start else {}
        self.errors = {}

    def error(self, stream: Any, t: float) -> None:
        self.errors.setdefault(stream, []).append(t)

    def arrived(self, stream: Any, t: float, duration: float, rate: float | None = None) -> None:
        """A good frame of `stream` starts at `t`, lasting `duration`. Video: `rate` where the file's rate
        is constant (the frames lost are counted from the hole), else (variable rate: no hole can be told
        from a long frame) each failed packet counts as a frame lost. Failed packets that left no hole
        lost nothing (the decoder recovered): they stay in decode_errors only."""
        due, failed = self.next_t.get(stream), self.errors.pop(stream, [])
        self.next_t[stream] = t + duration
        video = stream.type == "video"
        timed = rate is not None or not video
        hole = t - due if timed and due is not None and t - due > duration / 2 else 0.0
        frames = 0 if not video else round(hole * rate) if rate else len(failed)
        if not hole and not frames:
            return
        begin = min([t - hole, *failed])
        if self.fail:
            track = 0 if video else stream.container.streams.audio.index(stream) + 1
            what = f"video ({frames} frames)" if video else f"audio (track {track})"
            raise NodeError(f"{self.path}: undecodable data: {what} lost from {begin:.2f} s to {t:.2f} s "
                            f"(on_error: skip goes on without it and reports the loss)")
        self._add(video, begin, t, frames)

    def end_pass(self, video_end: float) -> None:
        """Packets that failed after the last good frame of their stream: lost up to where the video ends."""
        for stream, failed in self.errors.items():
            if self.fail:
                raise NodeError(f"{self.path}: undecodable data: {stream.type} lost from {min(failed):.2f} s "
                                f"to the end (on_error: skip goes on without it and reports the loss)")
            self._add(stream.type == "video", min(failed), max(video_end, min(failed)), len(failed))
        self.errors = {}

    def _add(self, video: bool, begin: float, end: float, frames: int) -> None:
        key = "video_s" if video else "audio_s"
        self.total[key] = round(self.total[key] + end - begin, 3)
        self.total["frames"] += frames if video else 0
        self.total["ranges"].append([key[:5], round(begin, 3), round(end, 3)])


class AudioQueue:
    """Decoded audio, per track, waiting to be sent next to the video frame it plays with.

    Containers interleave audio in chunks (often half a second ahead of the video); sending each
    frame's share with it keeps every audio message small (the wire bounds a dimension at 16384)
    and the streams in step through the graph. A frame's bundle carries one audio message, of the
    track whose due audio is the oldest, so with several tracks they take turns and every message
    keeps its frame's seq (seq = frame index): only a track that has more due than one message holds
    is sent at once, in audio-only bundles, as is everything after the last frame.
    """

    def __init__(self, tracks: int) -> None:
        self.queues: list[list[tuple[Any, float]]] = [[] for _ in range(tracks)]

    def put(self, track: int, frame: Any, offset: float) -> None:
        self.queues[track].append((frame, offset))

    def _due(self, track: int, until: float | None) -> list[Any]:
        """The queued frames of `track` that start before `until` (all of them with None), in order."""
        due = []
        for frame, offset in self.queues[track]:
            if until is not None and frame.pts is not None and frame.time + offset >= until:
                break
            due.append(frame)
        return due

    def _take(self, track: int, until: float | None) -> Message | None:
        """One message of `track`'s due frames (at most MAX_SAMPLES samples), None when none is due."""
        queue, taken, samples = self.queues[track], [], 0
        for frame in self._due(track, until):
            if samples + frame.samples > MAX_SAMPLES:
                break
            taken.append(queue.pop(0))
            samples += frame.samples
        if not taken:
            return None
        msg = audio_message([frame for frame, _ in taken], track)
        msg.pts = None if msg.pts is None else msg.pts + taken[0][1]
        return msg

    def _oldest(self, until: float | None) -> int | None:
        """The track whose due audio starts first."""
        due = [k for k in range(len(self.queues)) if self._due(k, until)]
        return min(due, key=lambda k: self.queues[k][0][0].time + self.queues[k][0][1], default=None)

    def _backlog(self, until: float | None) -> int | None:
        """A track with more audio due than one message holds (at the end, with any audio left)."""
        return next((k for k in range(len(self.queues)) if (due := self._due(k, until)) and
                     (until is None or sum(f.samples for f in due) > MAX_SAMPLES)), None)

    def with_video(self, video: Message, until: float | None) -> Iterator[dict[str, Message]]:
        """{"out": video, "audio": the oldest track's audio due before `until`}, then audio-only bundles for
        what cannot wait (a backlog over one message, or everything after the last frame)."""
        bundle = {"out": video}
        track = self._oldest(until)
        if track is not None and (msg := self._take(track, until)) is not None:
            bundle["audio"] = msg
        yield bundle
        while (track := self._backlog(until)) is not None and (msg := self._take(track, until)) is not None:
            yield {"audio": msg}
