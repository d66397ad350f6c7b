"""`python -m launch bench pipeline`: every shipped job as a graph against its nodes run one after another.

The baseline of every job is the same graph's nodes, the same classes with the same parameters, run in
sequence in one thread of one fresh process (`bench._sequential.SequentialGraph`: a frame goes through every
node before the next is decoded; a stylizer one frame at a time, on all the cores): the ratio graph / loop
is what the runtime's pipelining gains (each node in its own process, the stages overlapping), net of what
it costs (processes, sockets, copies).

1. Offline, run to their end on the same input: demo (the mannequin's 150 frames), avatar re-render
   (graphs/avatar_rerender.yaml) and stylize re-render (graphs/stylize_video.yaml) on ``--file``'s first
   ``--seconds``.
2. Live, ``--warmup`` s then ``--live-seconds`` s measured: stylize_live and both hosts of telepresence on
   loopback (CurveZMQ between them, a viewer reading the MJPEG preview), ``--file`` standing in for the
   camera at its own 30 fps, looping; the loop takes the clip as fast as it goes. The live graphs' rate is
   capped by the camera's; the stylizer runs eager on both sides (its compiled package: `bench live`).
3. `batch` on a local Ray over one input cut into 4 chunks against `run` of the whole file, one
   after the other in this process: the ratio, Ray's start apart, and the joining's own cost
   (stream copy of the chunks and the source's audio) as a share of the work.
4. `--jobs overlap`: stylize_video.yaml with flow smoothing in 1 s chunks (without Ray), with and
   without `batch`'s overlap frames, each compared frame by frame with `run` of the whole clip.

Frames/s are end to end (start-up included: that is what a user waits), and steady: from the first
frame out to the last (the times the loop's sink took its frames; the graph's sink count, read twice a
second as `batch` reads it), which is the pipelining alone, without each side's start-up (imports, models loaded:
one process against several). The graph rows add the sink's latency p50/p99 (capture to encoder),
drops, each torch node's threads, each node's processing time p50 and each node process's CPU (from its
heartbeats, start-up included: a frame for the offline jobs, a share of a core for the live ones). CPU per frame counts this
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
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from bench.rerender import cpu_seconds, plain_loop
from launch.command import Exit
from launch.media import media_root
from launch.shipped import graph_file

log = logging.getLogger(__name__)

JOBS = ("demo", "live", "telepresence", "avatar", "stylize", "batch", "overlap")


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


@dataclass
class Run:
    """One timed run: seconds end to end, the frames written, and the steady rate (first frame out to the last,
    start-up excluded), from the sink's count twice a second (graph) or the loop's own clock."""

    seconds: float
    frames: int
    steady_fps: float
    report: dict
    marks: list[tuple[float, int]] = field(default_factory=list)  # (seconds, frames so far) of a loop


def steady_rate(marks: list[tuple[float, int]]) -> float:
    """Frames/s between the first mark with a frame written and the last mark: (time, frames so far) pairs."""
    written = [(t, n) for t, n in marks if n > 0]
    if len(written) < 2 or written[-1][0] <= written[0][0]:
        return float("nan")
    return (written[-1][1] - written[0][1]) / (written[-1][0] - written[0][0])


def run_graph(graph: str | Path, *sets: str) -> Run:
    """A graph (shipped name or file) run here as `run` runs it (the supervisor, quiet), its sink's frames timed."""
    from launch.batch import SinkProgress
    from stream.graph import load_graph, parse_overrides
    from stream.supervisor import Supervisor

    path = graph_file(graph) if isinstance(graph, str) else graph
    overrides = parse_overrides(list(sets), path)
    spec = load_graph(path, overrides)
    t0 = time.perf_counter()
    marks: list[tuple[float, int]] = []
    sup = Supervisor(spec, overrides, quiet=True)
    sup.view = SinkProgress(spec, lambda frames: marks.append((time.perf_counter() - t0, frames)))
    code = sup.run()
    seconds = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"{path.name} failed ({code}): {json.dumps(sup.last_report)[:2000]}")
    frames = sup.last_report["nodes"]["sink"]["extra"]["video_frames"]
    return Run(seconds, frames, steady_rate(marks), sup.last_report)


def _loop_child(path: Path, sets: list[str], until: float | None, t0: float, conn: Connection) -> None:
    """In a fresh process: the graph's nodes one after another (`SequentialGraph`), one frame at a time (a
    stylizer's ``frames_at_once`` set to 1); the times (since `t0`) its sink took each video frame sent back."""
    from bench._sequential import SequentialGraph
    from stream.graph import load_graph, parse_overrides

    overrides = parse_overrides(sets, path)
    for name, node in load_graph(path, overrides).nodes.items():
        if node.kind == "stylize":
            overrides.setdefault(name, {})["frames_at_once"] = 1
    marks: list[tuple[float, int]] = []

    def taken(sink: str, batch: dict) -> None:
        if "in" in batch:  # a video frame (an encoder's audio arrives on its own port)
            marks.append((time.perf_counter() - t0, len(marks) + 1))

    SequentialGraph(load_graph(path, overrides), taken).run(until)
    conn.send(marks)


def run_loop(path: Path, sets: list[str], until: float | None = None) -> Run:
    """The graph's nodes in sequence in a fresh process, timed from its start: its imports and models are its
    start-up, as the graph's node processes' are theirs (in this process, a job run before would have
    imported torch and MediaPipe for it, 2-3 s of the graph's start-up that the loop would skip)."""
    receive, send = multiprocessing.Pipe(duplex=False)
    t0 = time.perf_counter()  # CLOCK_MONOTONIC: the same clock in the child
    child = multiprocessing.get_context("spawn").Process(target=_loop_child, args=(path, sets, until, t0, send))
    child.start()
    send.close()
    try:
        marks = receive.recv()
    except EOFError:
        raise SystemExit(f"the sequential loop of {path.name} failed (exit code {child.join() or child.exitcode})") from None
    child.join()
    total = time.perf_counter() - t0
    return Run(total, len(marks), steady_rate(marks), {}, marks)


def _per_node(nodes: dict, frames: int = 0, seconds: float = 0.0) -> str:
    """Threads of the torch nodes, processing p50, and each node process's CPU (start-up included): a frame
    over ``frames`` (an offline job), or as a share of a core over ``seconds`` (a live one, whose sink sees
    only what was not dropped)."""
    cpu = {m["in_process"]: m["process_cpu_s"] for m in nodes.values() if "process_cpu_s" in m}
    used = (", ".join(f"{p} {c / frames * 1e3:.0f} ms" for p, c in cpu.items()) if frames else
            ", ".join(f"{p} {c / seconds:.0%}" for p, c in cpu.items()))
    return ("threads " + ", ".join(f"{n} {m['extra']['threads']}" for n, m in nodes.items() if "threads" in m.get("extra", {}))
            + "; per node p50 ms: " + ", ".join(f"{n} {(m.get('process') or {}).get('p50_ms')}" for n, m in nodes.items())
            + ("; CPU a frame by process: " if frames else "; CPU by process (share of a core): ") + used)


def graph_against_loop(job: str, graph: str, sets: list[str], tmp: Path) -> Row:
    """An offline graph run to its end against its nodes in sequence over the same input."""
    path = graph_file(graph)
    c0 = cpu_seconds()
    loop = run_loop(path, [*sets, f"sink.path={tmp / (job + '_loop.mp4')}"])
    loop_cpu = cpu_seconds() - c0
    c0 = cpu_seconds()
    run = run_graph(path, *sets, f"sink.path={tmp / (job + '_graph.mp4')}")
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
          f"{sum(n.get('drops', 0) for n in nodes.values())}; {_per_node(nodes, frames=frames)}")
    return Row(job, frames, frames / run.seconds, frames / loop.seconds,
               f"steady x{run.steady_fps / loop.steady_fps:.2f} ({run.steady_fps:.2f} / {loop.steady_fps:.2f} fps)")


def live_file(graph: str, clip: str, folder: Path, realtime: bool) -> Path:
    """A live graph with ``clip`` (looping, no audio) as its camera, paced at its timestamps or as fast as it
    decodes, and a discarding sink as its preview: the same nodes between them."""
    doc = yaml.safe_load(graph_file(graph).read_text())
    nodes = {n["name"]: n for n in doc["nodes"]}
    nodes["camera"].update(kind="video", params={"path": clip, "realtime": realtime, "loop": True, "audio": False})
    nodes["preview"].update(kind="discard", params={})
    path = folder / f"{graph}_{'paced' if realtime else 'unpaced'}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def loop_rate(path: Path, sets: list[str], seconds: float, warmup: float) -> float:
    """Frames/s of the graph's nodes in sequence on the unpaced clip, from ``warmup`` s to ``warmup + seconds``."""
    return steady_rate([m for m in run_loop(path, sets, warmup + seconds).marks if m[0] >= warmup])


def live_against_loop(job: str, graph: str, clip: str, seconds: float, warmup: float, tmp: Path) -> Row:
    """A live graph fed the clip at its own rate (30 fps) for ``warmup + seconds``, its sink's frames/s over the
    last ``seconds``, against its nodes in sequence on the clip as fast as they go. The stylizer eager on both
    sides (its compiled package is `bench live`'s business)."""
    from bench.live import run_live

    sets = ["style.compile=false"]
    loop = loop_rate(live_file(graph, clip, tmp, realtime=False), sets, seconds, warmup)
    live = run_live(live_file(graph, clip, tmp, realtime=True), {"compile": False}, seconds, warmup)
    nodes = live.report["nodes"]
    print(f"{job}: graph {live.line()}; loop {loop:.2f} frames/s; {_per_node(nodes, seconds=live.report['duration_s'])}")
    return Row(job, nodes["preview"]["frames_in"], live.fps, loop, f"p50 {live.p50_ms:.0f} ms, p99 {live.p99_ms:.0f} ms, "
               f"drops {live.drops} (the clip paced at its 30 fps)")


def telepresence_against_loop(clip: str, seconds: float, warmup: float, tmp: Path) -> Row:
    """Both hosts of telepresence.yaml on loopback (CurveZMQ between them, a viewer on the preview's MJPEG) against
    their nodes in sequence in one process on the clip as fast as they go (no wire, no JPEG for a viewer)."""
    from bench.telepresence import glass_to_glass

    loop = loop_rate(live_file("telepresence", clip, tmp, realtime=False), [], seconds, warmup)
    run = glass_to_glass(Path(clip), "mannequin_avatar", warmup + seconds, warmup, tmp / "telepresence")
    ages = run["render"]["preview"]["extra"]["glass_to_glass"]
    nodes = {**run["laptop"], **run["render"]}
    drops = sum(n.get("drops", 0) for n in nodes.values())
    print(f"telepresence: viewer {run['fps']:.1f} fps, glass-to-glass p50 {ages['p50_ms']:.0f} ms p99 "
          f"{ages['p99_ms']:.0f} ms, drops {drops}; loop {loop:.2f} frames/s; {_per_node(nodes, seconds=warmup + seconds)}")
    return Row("telepresence", run["frames"], run["fps"], loop, f"p50 {ages['p50_ms']:.0f} ms, p99 {ages['p99_ms']:.0f} "
               f"ms, drops {drops} (the clip paced at its 30 fps)")


def batch_against_run(src: str, chunk_seconds: float, tmp: Path) -> Row:
    """`batch --ray local` in 4 chunks against `run` of the whole input (rerender.yaml), and the join's cost."""
    from launch.batch import chunk_path, connect_ray, offline_nodes, plan_job
    from launch.cli import main
    from stream.chunks import join_chunks
    from stream.graph import load_graph

    run_s = run_graph("rerender", f"source.path={src}", f"sink.path={tmp / 'whole.mp4'}").seconds
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
    run_graph("stylize_video", f"source.path={keyframed}", f"sink.path={tmp / 'whole_flow.mp4'}", *sets)
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
    parser.add_argument("--live-seconds", type=float, default=20.0, help="measured seconds of each live job")
    parser.add_argument("--warmup", type=float, default=12.0, help="seconds of a live job before measuring (start-up)")
    parser.add_argument("--jobs", nargs="+", default=[j for j in JOBS if j != "overlap"], choices=JOBS,
                        help="overlap (not by default): chunk starts with and without overlap frames, flow smoothing")
    args = parser.parse_args(argv)
    # as the stylize node does (stream/nodes/stylize.py): OpenMP threads that wait sleep instead of spinning,
    # else the loop's torch pool starves itself on shared cores and the comparison flatters the graph
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for f in (args.file, args.long):
        if not Path(f).is_file():
            log.error("input not found: %s", f)
            return Exit.REFUSED
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = [f"source.path={args.file}", f"source.end={args.seconds}"]
        jobs: dict[str, Callable[[], Row]] = {
            "demo": lambda: graph_against_loop("demo", "demo", [], tmp),
            "live": lambda: live_against_loop("stylize_live", "stylize_live", args.file, args.live_seconds, args.warmup, tmp),
            "telepresence": lambda: telepresence_against_loop(args.file, args.live_seconds, args.warmup, tmp),
            "avatar": lambda: graph_against_loop("avatar_rerender", "avatar_rerender", clip, tmp),
            "stylize": lambda: graph_against_loop("stylize_rerender", "stylize_video", clip, tmp),
            "batch": lambda: batch_against_run(str(Path(args.long).resolve()), args.chunk_seconds, tmp),
            "overlap": lambda: overlap_against_none(args.file, args.seconds, tmp)}
        rows = [jobs[j]() for j in JOBS if j in args.jobs]
    print(f"pipeline bench: {os.cpu_count()} CPUs; ratio = graph (or batch) frames/s / sequential frames/s")
    for r in rows:
        print(f"{r.job:<22} frames {r.frames:>5}  graph {r.graph_fps:7.2f} fps  sequential {r.loop_fps:7.2f} fps  "
              f"ratio x{r.ratio:.2f}  {r.note}")
    return Exit.OK
