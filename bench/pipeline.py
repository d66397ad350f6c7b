"""`python -m launch bench pipeline`: the offline jobs as graphs against one process doing the same in sequence.

1. avatar re-render (graphs/avatar_rerender.yaml) and stylize re-render (graphs/stylize_video.yaml)
   on the same clip, each next to a single-process loop doing the same operations one after the
   other (PyAV decode -> MediaPipe pose -> avatar render -> person removed -> composite -> x264, or
   decode -> stylizer -> x264), with the same libraries and settings: the ratio graph / loop is what
   pipelining gains (each node in its own process, the stages overlapping).
2. `batch` on a local Ray over one input cut into 4 chunks against `run` of the whole file, one
   after the other in this process: the ratio, Ray's start apart, and the joining's own cost
   (stream copy of the chunks and the source's audio) as a share of the work.
3. `--jobs overlap`: stylize_video.yaml with flow smoothing in 1 s chunks (without Ray), with and
   without `batch`'s overlap frames, each compared frame by frame with `run` of the whole clip.

Frames/s are end to end (start-up included: that is what a user waits), and steady: from the first
frame out to the last (the loop's own clock; the graph's sink count, read twice a second as `batch`
reads it), which is the pipelining alone, without each side's start-up (imports, models loaded:
one process against several). The graph rows add the sink's latency p50/p99 (capture to encoder),
drops, each torch node's threads, each node's processing time p50 and each node process's CPU a
frame (from its heartbeats, start-up included). CPU per frame counts this
process and its children (the loop's process, the graph's node processes). The last lines are one row per job.

On a machine loaded by other jobs the wall-clock ratios also measure how much of the cores each side
wins from them (more runnable threads win more), so read them beside the CPU per frame.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import multiprocessing
import os
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from bench.rerender import cpu_seconds, plain_loop
from launch.command import Exit
from launch.media import media_root
from launch.shipped import graph_file

log = logging.getLogger(__name__)

Stage = Callable[[np.ndarray, float], np.ndarray]
StageMaker = Callable[[], contextlib.AbstractContextManager[Stage]]  # loads the models, releases them after


@dataclass
class Row:
    """One job's numbers: the graph (or batch) against its sequential baseline."""

    job: str
    frames: int
    graph_fps: float
    loop_fps: float
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.graph_fps / self.loop_fps


@contextlib.contextmanager
def avatar_stage() -> Iterator[Stage]:
    """What avatar_rerender.yaml's nodes do to a frame, in sequence (pose, avatar, person removed, blend).
    MediaPipe's graph is closed after the loop: its threads left open cost the next job's graph a third
    more CPU a frame (stylize_rerender: 112 ms against 85 ms after the avatar job)."""
    from avatars.avatar.model import AvatarRenderer, load_avatar
    from avatars.body.pose import GapFiller, OneEuroConfig, PoseConfig, PoseEstimator
    from avatars.core.weights import resolve_weights
    from stream.frames import as_alpha, blend
    from stream.nodes.composite import remove_person

    estimator = PoseEstimator(PoseConfig(model_complexity=1, segmentation=True), OneEuroConfig(min_cutoff=1.0, beta=10.0))
    gaps = GapFiller("blank", 0.5)
    model, cfg = load_avatar(resolve_weights("mannequin_avatar", "avatar"), "cpu")
    renderer = AvatarRenderer(model, cfg, "cpu", fast=True, scale_smoothing=0.8)

    def stage(image: np.ndarray, t: float) -> np.ndarray:
        h, w = image.shape[:2]
        pose = gaps(estimator.process(image, t))
        avatar = renderer(pose.keypoints if pose.detected else None, (h, w))
        background = remove_person(image, pose.mask, "inpaint", 0.03)
        out = np.empty_like(image)
        return blend(avatar.rgb, as_alpha(avatar.mask, h, w), image if background is None else background, out)

    with estimator:
        yield stage


@contextlib.contextmanager
def stylize_stage() -> Iterator[Stage]:
    """What stylize_video.yaml's stylizer does to a frame (the shipped starry_night, the node's defaults)."""
    from avatars.core.weights import resolve_weights
    from avatars.style.checkpoint import load_stylizer
    from avatars.style.stylize import FastPathConfig, FrameStylizer

    stylizer = FrameStylizer(load_stylizer(resolve_weights("starry_night", "style"), "cpu"), "cpu", FastPathConfig())
    yield lambda image, t: stylizer(image, None)


@dataclass
class Run:
    """One timed run: seconds end to end, the frames written, and the steady rate (first frame out to the last,
    start-up excluded), from the sink's count twice a second (graph) or the loop's own clock."""

    seconds: float
    frames: int
    steady_fps: float
    report: dict


def steady_rate(marks: list[tuple[float, int]]) -> float:
    """Frames/s between the first mark with a frame written and the last mark: (time, frames so far) pairs."""
    written = [(t, n) for t, n in marks if n > 0]
    if len(written) < 2 or written[-1][0] <= written[0][0]:
        return float("nan")
    return (written[-1][1] - written[0][1]) / (written[-1][0] - written[0][0])


def run_graph(graph: str, src: str, dst: str, *sets: str) -> Run:
    """A shipped graph run here as `run` runs it (the supervisor, quiet), its sink's frames timed."""
    from launch.batch import SinkProgress
    from stream.graph import load_graph, parse_overrides
    from stream.supervisor import Supervisor

    path = graph_file(graph)
    overrides = parse_overrides([f"source.path={src}", f"sink.path={dst}", *sets], path)
    spec = load_graph(path, overrides)
    t0 = time.perf_counter()
    marks: list[tuple[float, int]] = []
    sup = Supervisor(spec, overrides, quiet=True)
    sup.view = SinkProgress(spec, lambda frames: marks.append((time.perf_counter() - t0, frames)))
    code = sup.run()
    seconds = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"{graph} failed ({code}): {json.dumps(sup.last_report)[:2000]}")
    frames = sup.last_report["nodes"]["sink"]["extra"]["video_frames"]
    return Run(seconds, frames, steady_rate(marks), sup.last_report)


def _loop_child(src: str, dst: str, stage: StageMaker, seconds: float, t0: float, conn: Connection) -> None:
    """In a fresh process: `plain_loop` with `stage`, its frames' times (since `t0`) sent back."""
    marks: list[tuple[float, int]] = []
    with stage() as make:

        def counted(image: np.ndarray, t: float) -> np.ndarray:
            marks.append((time.perf_counter() - t0, len(marks)))  # before this frame: frames done so far
            return make(image, t)

        frames = plain_loop(src, dst, 18, "veryfast", counted, seconds)
    conn.send((frames, marks))


def run_loop(src: str, dst: str, stage: StageMaker, seconds: float) -> Run:
    """`plain_loop` with `stage` in a fresh process, timed from its start: its imports and models are its
    start-up, as the graph's node processes' are theirs (in this process, a job run before would have
    imported torch and MediaPipe for it, 2-3 s of the graph's start-up that the loop would skip)."""
    receive, send = multiprocessing.Pipe(duplex=False)
    t0 = time.perf_counter()  # CLOCK_MONOTONIC: the same clock in the child
    child = multiprocessing.get_context("spawn").Process(target=_loop_child, args=(src, dst, stage, seconds, t0, send))
    child.start()
    send.close()
    try:
        frames, marks = receive.recv()
    except EOFError:
        raise SystemExit(f"the sequential loop on {src} failed (exit code {child.join() or child.exitcode})") from None
    child.join()
    total = time.perf_counter() - t0
    marks.append((total, frames))
    return Run(total, frames, steady_rate(marks[1:]), {})


def graph_against_loop(job: str, graph: str, stage: StageMaker, src: str, seconds: float, tmp: Path) -> Row:
    c0 = cpu_seconds()
    loop = run_loop(src, str(tmp / f"{job}_loop.mp4"), stage, seconds)
    loop_cpu = cpu_seconds() - c0
    c0 = cpu_seconds()
    run = run_graph(graph, src, str(tmp / f"{job}_graph.mp4"), f"source.end={seconds}")
    graph_cpu = cpu_seconds() - c0
    frames, nodes = loop.frames, run.report["nodes"]
    if run.frames != frames:
        raise SystemExit(f"{job}: the graph wrote {run.frames} frames, the loop {frames}")
    latency = nodes["sink"].get("latency") or {}
    print(f"{job}: {frames} frames; loop {frames / loop.seconds:.2f} frames/s ({loop_cpu / frames * 1e3:.0f} ms CPU a "
          f"frame), graph {frames / run.seconds:.2f} frames/s ({graph_cpu / frames * 1e3:.0f} ms CPU a frame), "
          f"start-up included; pipelining gain x{loop.seconds / run.seconds:.2f}; steady (first frame out to the "
          f"last) loop {loop.steady_fps:.2f}, graph {run.steady_fps:.2f} frames/s: x{run.steady_fps / loop.steady_fps:.2f}")
    print(f"  graph: latency p50/p99 {latency.get('p50_ms')}/{latency.get('p99_ms')} ms, drops "
          f"{sum(n.get('drops', 0) for n in nodes.values())}; threads "
          + ", ".join(f"{n} {m['extra']['threads']}" for n, m in nodes.items() if "threads" in m.get("extra", {}))
          + "; per node p50 ms: "
          + ", ".join(f"{n} {(m.get('process') or {}).get('p50_ms')}" for n, m in nodes.items())
          + "; CPU a frame by process: "
          + ", ".join(f"{proc} {cpu / frames * 1e3:.0f} ms" for proc, cpu in
                      {m["in_process"]: m["process_cpu_s"] for m in nodes.values()}.items()))
    return Row(job, frames, frames / run.seconds, frames / loop.seconds,
               f"steady x{run.steady_fps / loop.steady_fps:.2f} ({run.steady_fps:.2f} / {loop.steady_fps:.2f} fps)")


def batch_against_run(src: str, chunk_seconds: float, tmp: Path) -> Row:
    """`batch --ray local` in 4 chunks against `run` of the whole input (rerender.yaml), and the join's cost."""
    from launch.batch import chunk_path, connect_ray, offline_nodes, plan_job
    from launch.cli import main
    from stream.chunks import join_chunks
    from stream.graph import load_graph

    run_s = run_graph("rerender", src, str(tmp / "whole.mp4")).seconds
    cluster = connect_ray("local")  # before Ray is imported here: it sets Ray's loopback switch
    import ray

    try:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(["batch", "rerender", src, "-o", str(tmp / "batch"), "--quiet", "--ray", "local",
                         "--chunk-seconds", str(chunk_seconds), "--overlap", "0"])  # rerender.yaml keeps no state
        batch_s = time.perf_counter() - t0
    finally:
        ray.shutdown()
    if code != 0:
        raise SystemExit(f"batch failed ({code})")
    path = graph_file("rerender")
    job = plan_job(path, {}, offline_nodes(load_graph(path)), src, tmp / "batch", chunk_seconds, overlap=0)
    t0 = time.perf_counter()
    join_chunks([(c, chunk_path(job, c.index)) for c in job.chunks], job.input, str(tmp / "joined.mp4"), job.index)
    join_s = time.perf_counter() - t0
    print(f"batch: {job.frames} frames in {len(job.chunks)} chunks; run {run_s:.2f} s, batch on local Ray "
          f"{batch_s:.2f} s (Ray start {cluster.started_s:.1f} s apart); join {join_s:.2f} s = "
          f"{join_s / batch_s:.1%} of the batch")
    return Row(f"batch {len(job.chunks)} chunks", job.frames, job.frames / batch_s, job.frames / run_s,
               f"join {join_s / batch_s:.1%}, Ray start {cluster.started_s:.1f} s")


def decoded_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def overlap_against_none(src: str, seconds: float, tmp: Path) -> Row:
    """`batch` of stylize_video.yaml with flow smoothing in 1 s chunks, with and without the overlap frames,
    each against `run` of the whole clip, all encoded losslessly: how far the frames at the chunk starts are
    from the whole run's (mean |difference| in levels of 255; elsewhere it is 0 but for the odd rounding), and
    what the overlap costs (its frames/s against none: the ratio)."""
    from launch.batch import OVERLAP_FRAMES
    from launch.cli import main
    from stream.chunks import index_video, plan_chunks
    from stream.media import open_input

    keyframed = tmp / "keyframed.mp4"  # the clip with a keyframe every second, so it cuts into 1 s chunks
    with open_input(src) as c:
        fps = c.streams.video[0].average_rate
    frames = plain_loop(src, str(keyframed), 18, "veryfast", seconds=seconds, gop=round(fps))
    sets = ["style.smoothing=flow", "sink.crf=0"]  # lossless: the differences are the graph's, not the encoder's
    run_graph("stylize_video", str(keyframed), str(tmp / "whole_flow.mp4"), *sets)
    whole = decoded_frames(tmp / "whole_flow.mp4")
    index = index_video(str(keyframed))
    starts = [index.pts.index(c.offset) for c in plan_chunks(index, 1.0)[1:]]
    near = sorted({i + k for i in starts for k in range(5)})
    fps_of, diffs = {}, {}
    for overlap in (0, OVERLAP_FRAMES):
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(["batch", "stylize_video", str(keyframed), "-o", str(tmp / f"overlap{overlap}"), "--quiet",
                         "--chunk-seconds", "1", "--overlap", str(overlap), *[a for s in sets for a in ("--set", s)]])
        if code != 0:
            raise SystemExit(f"batch --overlap {overlap} failed ({code})")
        fps_of[overlap] = frames / (time.perf_counter() - t0)
        out = decoded_frames(tmp / f"overlap{overlap}" / "keyframed.mp4")
        diff = [float(np.abs(a.astype(np.int16) - b).mean()) for a, b in zip(out, whole)]
        far = [d for i, d in enumerate(diff) if i not in near]
        diffs[overlap] = (np.mean([diff[i] for i in starts]), np.mean([diff[i] for i in near]), np.mean(far))
        print(f"overlap {overlap}: {len(out)} frames of {frames}, {len(starts) + 1} chunks; mean |chunked - whole| at "
              f"the chunk starts {diffs[overlap][0]:.2f}, their first 5 frames {diffs[overlap][1]:.2f}, elsewhere "
              f"{diffs[overlap][2]:.2f} (levels of 255); {fps_of[overlap]:.2f} frames/s")
    none, some = diffs[0], diffs[OVERLAP_FRAMES]
    return Row(f"overlap {OVERLAP_FRAMES} frames", frames, fps_of[OVERLAP_FRAMES], fps_of[0],
               f"chunk starts {none[0]:.2f} -> {some[0]:.2f}, elsewhere {some[2]:.2f} (levels)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", default=str(media_root() / "video" / "kinetics_ta_chi_340x256.mp4"),
                        help="clip of one person for the neural jobs")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="how much of it the neural jobs re-render (start-up counts less in longer runs)")
    parser.add_argument("--long", default=str(media_root() / "video" / "hybrik_taiji.mp4"),
                        help="long input for batch (keyframes every few seconds)")
    parser.add_argument("--chunk-seconds", type=float, default=4.0)
    parser.add_argument("--jobs", nargs="+", default=["avatar", "stylize", "batch"],
                        choices=["avatar", "stylize", "batch", "overlap"],
                        help="overlap (not by default): chunk starts with and without overlap frames, flow smoothing")
    args = parser.parse_args(argv)
    # as the stylize node does (stream/nodes/stylize.py): OpenMP threads that wait sleep instead of spinning,
    # else the loop's torch pool starves itself on shared cores and the comparison flatters the graph
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for f in (args.file, args.long):
        if not Path(f).is_file():
            log.error("input not found: %s", f)
            return Exit.REFUSED
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if "avatar" in args.jobs:
            rows.append(graph_against_loop("avatar_rerender", "avatar_rerender", avatar_stage, args.file, args.seconds, Path(tmp)))
        if "stylize" in args.jobs:
            rows.append(graph_against_loop("stylize_rerender", "stylize_video", stylize_stage, args.file, args.seconds, Path(tmp)))
        if "batch" in args.jobs:
            rows.append(batch_against_run(str(Path(args.long).resolve()), args.chunk_seconds, Path(tmp)))
        if "overlap" in args.jobs:
            rows.append(overlap_against_none(args.file, args.seconds, Path(tmp)))
    print(f"pipeline bench: {os.cpu_count()} CPUs; ratio = graph (or batch) frames/s / sequential frames/s")
    for r in rows:
        print(f"{r.job:<22} frames {r.frames:>5}  graph {r.graph_fps:7.2f} fps  sequential {r.loop_fps:7.2f} fps  "
              f"ratio x{r.ratio:.2f}  {r.note}")
    return Exit.OK
