"""`python -m launch bench rerender`: what the graph runtime costs on an offline re-render, and
what its pipelining buys when a stage is slow.

1. Plain loop: one process, PyAV decode -> RGB array -> x264 (+ AAC audio) with the settings
   of graphs/rerender.yaml, i.e. the same work the graph does, minus the graph.
2. graphs/rerender.yaml on the same file, through the CLI (processes, ZeroMQ, shared memory),
   measured end to end; its fixed start-up cost (a one-frame run) is reported apart.
3. Both again with an artificially slow middle stage (`delay`, busy-burning CPU for --delay-ms
   per frame): in the loop it adds to every frame; in the graph it runs in its own process,
   overlapping decode and encode, which is the speed-up pipelining gives on this machine.

Prints frames/s and ratios (graph / loop), and the CPU time per frame of each (all processes):
the wall-clock ratio shows what a user waits, the CPU ratio what the runtime itself costs. The
goal is a graph cost of at most 10%.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from launch.command import Exit
from launch.media import media_root
from launch.shipped import graph_file

log = logging.getLogger(__name__)


def plain_loop(src: str, dst: str, crf: int, preset: str,
               stage: Callable[[np.ndarray, float], np.ndarray] | None = None, seconds: float = float("inf"),
               gop: int | None = None) -> int:
    """Decode -> RGB -> `stage` (image, pts -> image) -> encode in one process, with the same helpers and
    settings as the nodes, the first `seconds` of `src`; frames written. The baseline of the graph benchmarks
    (and, with `gop`, a copy with a keyframe every `gop` frames to cut into chunks)."""
    import av

    from stream.media import add_audio_stream, add_video_stream, audio_frame, audio_message, video_frame

    with av.open(src) as inp, av.open(dst, "w") as out:
        video = inp.streams.video[0]
        video.thread_type = "AUTO"
        audio = inp.streams.audio[0] if inp.streams.audio else None
        rate = video.average_rate
        enc = add_video_stream(out, "libx264", rate, video.time_base, video.width, video.height, crf=crf, preset=preset,
                               gop=gop)
        aenc = add_audio_stream(out, audio.rate, audio.layout.name) if audio else None
        ticks = max(1, round(1 / (rate * video.time_base)))
        frames = 0
        for packet in inp.demux([s for s in (video, audio) if s is not None]):
            for frame in packet.decode():
                if frame.time is not None and frame.time >= seconds:
                    continue
                if packet.stream is audio:
                    encoded = aenc.encode(audio_frame(audio_message([frame])))
                else:
                    image = frame.to_ndarray(format="rgb24")
                    if stage is not None:
                        image = stage(image, float(frame.time))
                    encoded = enc.encode(video_frame(image, enc, frame.pts, ticks))
                    frames += 1
                for p in encoded:
                    out.mux(p)
        for stream in (enc, aenc):
            if stream is not None:
                for p in stream.encode():
                    out.mux(p)
    return frames


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished children (the graph's node processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def busy(ms: float) -> None:
    end = time.perf_counter() + ms / 1e3
    while time.perf_counter() < end:
        pass


def busy_stage(ms: float) -> Callable[[np.ndarray, float], np.ndarray]:
    """A stage that keeps a core busy `ms` a frame and passes the image on (the graph's `delay` node)."""
    def stage(image: np.ndarray, pts: float) -> np.ndarray:
        busy(ms)
        return image
    return stage


def run_graph(src: str, dst: str, crf: int, preset: str, delay_ms: float = 0.0, end: float | None = None) -> tuple[float, int]:
    """(seconds end to end, frames the sink received) for graphs/rerender.yaml (+ a delay stage)."""
    from launch.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        graph = shipped = graph_file("rerender")
        if delay_ms:
            graph = Path(tmp) / "slow.yaml"
            graph.write_text(shipped.read_text().replace(
                "edges:\n  - source.out -> sink.in",
                f"  - {{name: slow, kind: delay, params: {{ms: {delay_ms}, busy: true}}}}\n"
                "edges:\n  - source.out -> slow.in\n  - slow.out -> sink.in"))
        report = Path(tmp) / "report.json"
        sets = [f"source.path={src}", f"sink.path={dst}", f"sink.crf={crf}", f"sink.preset={preset}"]
        if end is not None:
            sets.append(f"source.end={end}")
        t0 = time.perf_counter()
        code = main(["run", str(graph), "--quiet", "--report", str(report), *[a for s in sets for a in ("--set", s)]])
        seconds = time.perf_counter() - t0
        if code != 0:
            raise SystemExit(f"graph run failed ({code}): {report.read_text() if report.exists() else ''}")
        return seconds, json.loads(report.read_text())["nodes"]["sink"]["extra"]["video_frames"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench rerender", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", default=str(media_root() / "video" / "hybrik_taiji.mp4"), help="input video")
    parser.add_argument("--crf", type=int, default=18)
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--delay-ms", type=float, default=30.0, help="per-frame cost of the slow middle stage")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers here")
    args = parser.parse_args(argv)
    if not Path(args.file).is_file():
        log.error("input not found: %s", args.file)
        return Exit.REFUSED
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "out.mp4")
        results: dict[str, float] = {}
        t0, c0 = time.perf_counter(), cpu_seconds()
        frames = plain_loop(args.file, out, args.crf, args.preset)
        results["loop_fps"] = frames / (time.perf_counter() - t0)
        results["loop_cpu_ms_per_frame"] = (cpu_seconds() - c0) / frames * 1e3
        c0 = cpu_seconds()
        seconds, got = run_graph(args.file, out, args.crf, args.preset)
        results["graph_cpu_ms_per_frame"] = (cpu_seconds() - c0) / frames * 1e3
        if got != frames:
            log.error("the graph wrote %d frames, the loop %d", got, frames)
            return Exit.FAILED
        startup, _ = run_graph(args.file, out, args.crf, args.preset, end=0.01)
        results["graph_fps"] = frames / seconds
        results["graph_startup_s"] = startup
        results["graph_fps_after_startup"] = frames / max(seconds - startup, 1e-9)
        t0 = time.perf_counter()
        plain_loop(args.file, out, args.crf, args.preset, stage=busy_stage(args.delay_ms))
        results["slow_loop_fps"] = frames / (time.perf_counter() - t0)
        seconds, _ = run_graph(args.file, out, args.crf, args.preset, delay_ms=args.delay_ms)
        results["slow_graph_fps"] = frames / seconds
    print(f"rerender bench: {args.file} ({frames} frames), libx264 crf {args.crf} preset {args.preset}, {os.cpu_count()} CPUs")
    print(f"  plain PyAV loop          {results['loop_fps']:7.1f} frames/s")
    print(f"  rerender.yaml            {results['graph_fps']:7.1f} frames/s end to end  (ratio {results['graph_fps'] / results['loop_fps']:.2f})")
    print(f"    start-up (1-frame run) {results['graph_startup_s']:7.2f} s;  after start-up {results['graph_fps_after_startup']:.1f} "
          f"frames/s (ratio {results['graph_fps_after_startup'] / results['loop_fps']:.2f})")
    print(f"  CPU per frame (all processes): loop {results['loop_cpu_ms_per_frame']:.1f} ms, graph "
          f"{results['graph_cpu_ms_per_frame']:.1f} ms (ratio {results['graph_cpu_ms_per_frame'] / results['loop_cpu_ms_per_frame']:.2f}, start-up included)")
    print(f"  with a {args.delay_ms:g} ms busy stage: loop {results['slow_loop_fps']:.1f} frames/s, graph {results['slow_graph_fps']:.1f} "
          f"frames/s: pipelining speed-up x{results['slow_graph_fps'] / results['slow_loop_fps']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"file": args.file, "frames": frames, **results}, indent=2))
    return 0
