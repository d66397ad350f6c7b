"""Long videos in chunks: cut at the input's keyframes, re-rendered apart, joined without re-encoding.

Cutting. `index_video` reads the packets of the first video stream (no decoding: seconds for an
hour of video) and `plan_chunks` cuts at the first keyframe at least `seconds` after the previous
cut. A chunk is a range of *timestamps*, [start, end): the `video` source seeks to the keyframe at
or before `start` and drops what lies before it, and stops at the first frame at or after `end`,
so every frame of the input lands in exactly one chunk, B-frames and open GOPs included (the
decoder hands frames over in presentation order). The first chunk starts at 0 (the file's start,
as a plain run does); each chunk's output timestamps count from its own start (the source's
`origin`), and `Chunk.offset` (ticks of the input's time base) puts them back when joining.

Overlap. A graph with temporal state (the stylizer's flow or EMA smoothing, the pose filter and
MediaPipe's tracking, the avatar's scale smoothing) would start each chunk cold, so a chunk's
first frames would differ from a whole-file run's. Every chunk but the first therefore starts
`overlap` frames early (`Chunk.preroll`, the source's `preroll`): those frames are decoded and
run through the graph, and the `mp4` sink drops them (their timestamps lie before the chunk's
origin), so they warm the state and never reach the output.

Joining. Each chunk is encoded alone, so it starts with an IDR frame and its GOPs never refer
outside it (x264's default: closed GOPs; `join_chunks` refuses chunks whose codec setup differs).
The packets are copied into one file (stream copy: no decoding, no quality lost), shifted by
their chunk's offset; dts stay increasing because every chunk has the same encoder delay. The
audio is never cut: the source's own audio packets are copied once onto the joined video, at
their own timestamps, so it is exactly in sync and untouched (no second AAC generation). The
result is written as OUT.part and renamed once complete (`AtomicOutput`), after its frame count
was checked against the input's.
"""
from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

from stream.media import AtomicOutput, open_input
from stream.node import NodeError


class ChunkError(Exception):
    """Chunks that cannot be cut or joined; the message names the file."""


@dataclass(frozen=True)
class VideoIndex:
    """What cutting needs of an input, from its packets alone."""

    time_base: Fraction
    pts: list[int]        # every frame's pts in presentation order (ticks of time_base)
    keyframes: list[int]  # pts of the packets flagged as keyframes, in order

    @property
    def frames(self) -> int:
        return len(self.pts)


@dataclass(frozen=True)
class Chunk:
    """One range of an input's frames: [start, end) in seconds of media time (end None: to the end)."""

    index: int
    start: float
    end: float | None
    frames: int
    offset: int  # ticks of the input's time base added to the chunk's timestamps when joining
    preroll: float = 0.0  # seconds of frames before `start` run through the graph and not written (overlap)

    def describe(self) -> str:
        end = "the end" if self.end is None else f"{self.end:.2f} s"
        return f"chunk {self.index} ({self.start:.2f} s to {end}, {self.frames} frames)"


def index_video(path: str) -> VideoIndex:
    """The frame timestamps and keyframes of `path`'s first video stream, by demuxing (not decoding)."""
    try:
        with open_input(path) as container:
            if not container.streams.video:
                raise ChunkError(f"{path}: no video stream")
            video = container.streams.video[0]
            pts, keys = [], []
            for packet in container.demux(video):
                if packet.pts is None:
                    continue  # the demuxer's flush packet (or a damaged one: the source itself reports those)
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
            return VideoIndex(video.time_base, sorted(pts), sorted(keys))
    except NodeError as exc:
        raise ChunkError(str(exc)) from None


def plan_chunks(index: VideoIndex, seconds: float, overlap: int = 0) -> list[Chunk]:
    """Chunks of at least `seconds` each (the last may be shorter), cut at keyframes; every chunk but the
    first pre-rolled over the `overlap` frames before it."""
    if seconds <= 0:
        raise ValueError(f"chunk length must be > 0 s, got {seconds}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0 frames, got {overlap}")
    if not index.pts:
        return []
    step = round(Fraction(seconds) / index.time_base)
    cuts = [index.pts[0]]
    for key in index.keyframes:
        if key - cuts[-1] >= step and key <= index.pts[-1]:
            cuts.append(key)
    chunks = []
    for i, begin in enumerate(cuts):
        stop = cuts[i + 1] if i + 1 < len(cuts) else None
        frames = sum(1 for p in index.pts if p >= begin and (stop is None or p < stop))
        start = 0.0 if i == 0 else float(begin * index.time_base)
        lead = index.pts[max(0, bisect.bisect_left(index.pts, begin) - overlap)]
        chunks.append(Chunk(i, start, None if stop is None else float(stop * index.time_base), frames,
                            0 if i == 0 else begin,
                            0.0 if i == 0 else min(start, float((begin - lead) * index.time_base))))  # never before 0
    return chunks


def _packets(container: Any, streams: list[Any], shift: int, out_base: Fraction | None,
             first_key: int) -> Iterator[tuple[Fraction, int, Any]]:
    """(dts in seconds, key, packet) of `streams` of one container in file order, keyed first_key,
    first_key + 1...; timestamps rescaled to `out_base` (None: kept) and moved by `shift` ticks."""
    keys = {s.index: first_key + k for k, s in enumerate(streams)}
    for packet in container.demux(streams):
        if packet.dts is None and packet.pts is None:
            continue  # the demuxer's flush packets
        base = packet.stream.time_base
        target = out_base or base
        for name in ("pts", "dts"):
            value = getattr(packet, name)
            if value is not None:
                setattr(packet, name, round(value * base / target) + shift)
        if packet.duration:
            packet.duration = round(packet.duration * base / target)
        packet.time_base = target
        yield (packet.dts if packet.dts is not None else packet.pts) * target, keys[packet.stream.index], packet


def _chunk_packets(parts: list[tuple[Chunk, Path]], out_base: Fraction, counted: list[int]) -> Iterator[tuple[Fraction, int, Any]]:
    """The video packets of every chunk in turn, counted into `counted[0]` (each chunk checked whole)."""
    for chunk, path in parts:
        with open_input(str(path)) as container:
            before = counted[0]
            for item in _packets(container, [container.streams.video[0]], chunk.offset, out_base, 0):
                counted[0] += 1
                yield item
            if counted[0] - before != chunk.frames:
                raise ChunkError(f"{path}: {counted[0] - before} frames, {chunk.describe()} needs {chunk.frames}")


def join_chunks(parts: list[tuple[Chunk, Path]], source: str, output: str, index: VideoIndex) -> int:
    """Join the chunk files (in order) into `output` by stream copy, with every audio track of `source`
    copied once; returns the frames written. `output` appears only when complete and frame-exact."""
    import av

    try:
        final = AtomicOutput(output)
        videos = []
        for _, path in parts:
            with open_input(str(path)) as c:
                s = c.streams.video[0].codec_context
                videos.append((s.name, s.width, s.height, s.pix_fmt, bytes(s.extradata or b"")))
    except NodeError as exc:  # a chunk gone missing, an output folder that cannot be written
        raise ChunkError(str(exc)) from None
    if len(set(videos)) > 1:
        raise ChunkError(f"{output}: the chunks were encoded differently ({parts[0][1].parent}); "
                         "they cannot be joined without re-encoding")
    fmt = {".mkv": "matroska"}.get(final.final.suffix, final.final.suffix.lstrip("."))
    counted = [0]
    try:
        with av.open(str(final.partial), "w", format=fmt) as out, open_input(str(parts[0][1])) as first, \
                open_input(source) as src:
            video = out.add_stream_from_template(first.streams.video[0])
            video.time_base = index.time_base
            audio = [out.add_stream_from_template(a) for a in src.streams.audio]
            for o, a in zip(audio, src.streams.audio):
                o.time_base = a.time_base
            streams = [video, *audio]
            sources = [_chunk_packets(parts, index.time_base, counted)]
            if audio:
                sources.append(_packets(src, list(src.streams.audio), 0, None, 1))
            merged = heapq.merge(*sources, key=lambda item: (item[0], item[1]))
            for _, key, packet in merged:
                packet.stream = streams[key]
                out.mux(packet)
    except (av.error.FFmpegError, ValueError, OSError, NodeError) as exc:
        final.discard()
        raise ChunkError(f"cannot join the chunks into {output}: {exc}") from None
    except ChunkError:
        final.discard()
        raise
    if counted[0] != index.frames:
        final.discard()
        raise ChunkError(f"{output}: joined {counted[0]} frames, the input {source} has {index.frames}")
    final.commit()
    return counted[0]
