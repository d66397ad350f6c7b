"""`python -m launch batch GRAPH INPUT... -o OUTDIR`: an offline graph over many inputs and long ones, on Ray.

Each input, or each chunk of a long one (`--chunk-seconds`, `stream.chunks`), is one Ray task that
runs the graph with the project's own runtime (`Supervisor`, its processes and ZeroMQ) on its own
files: only paths and small records travel through Ray, never frames, so Ray's object store stays
small (`OBJECT_STORE_BYTES`). Ray retries a task whose worker died (`--retries`, Ray's `max_retries`:
a killed process, a lost machine); a graph that fails on its input fails the same way again, so
that is not retried (the runtime already restarts crashed nodes inside the task). Without `--ray`
the same tasks run one after another in this process tree.

Outputs are OUTDIR/<input's file name> (the suffix made .mp4 where it is not .mp4/.mkv/.mov), each
written as NAME.part and renamed when complete. Chunks are kept in OUTDIR/.chunks/<name>/ with the
plan they belong to (`plan.json`: the graph, its overrides, the input's size and time, the cuts):
a rerun of the same job skips the chunks already finished; any change starts the input afresh.
`rm -r OUTDIR/.chunks` reclaims their space once the outputs are complete.
"""
from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from launch.command import Exit, Refused, refuse_overwrite, refusing
from launch.shipped import graph_file
from stream.chunks import Chunk, ChunkError, VideoIndex, index_video, join_chunks, plan_chunks
from stream.graph import GraphError, GraphSpec, load_graph, parse_overrides

log = logging.getLogger("launch.batch")

#: Ray's shared-memory object store: only small records go through it (Ray's minimum is 75 MiB).
OBJECT_STORE_BYTES = 96 * 2 ** 20
#: Suffixes the file sink writes; other inputs (.avi, .gif...) get OUTDIR/<stem>.mp4.
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov")
CHUNKS = ".chunks"
#: Frames before each chunk (but the first) that its graph runs and drops: enough for the temporal state
#: of the shipped nodes to forget a cold start (EMA/flow smoothing at weight 0.5 keeps 0.5**8 = 0.4% of it).
OVERLAP_FRAMES = 8
PROGRESS_S = 0.5  # how often a task reports its frames


@dataclass(frozen=True)
class Task:
    """One run of the graph: what a Ray task receives (paths and numbers only)."""

    graph: str
    overrides: dict[str, dict[str, Any]]
    input: str
    output: str
    label: str           # the input and the time range, for messages
    frames: int          # what the progress bar advances by once it is done
    overwrite: bool      # an output that exists may be replaced (`--overwrite`, as `run` says it)


@dataclass(frozen=True)
class TaskResult:
    """What comes back: the exit code, the error of the first failed node, the frames written."""

    code: int
    error: str
    frames: int
    seconds: float


class SinkProgress:
    """Stands in for a task's status view (`Supervisor.view`): no bar of its own; the frames its sink has
    written go to `report` twice a second (the one bar of the batch adds up every task's)."""

    def __init__(self, graph: GraphSpec, report: Callable[[int], None]):
        self.sinks, self.report, self.last = graph.sinks(), report, 0.0

    def update(self, handles: list[Any], elapsed: float) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_S:
            return
        self.last = now
        # frames written (the mp4 sink's count: a chunk's pre-roll frames pass its seq but are not written)
        done = [h.node_status[n].get("metrics", {}).get("extra", {}).get("video_frames", 0) for h in handles
                for n in h.nodes if n in self.sinks and n in h.node_status]
        if done:
            self.report(min(done))

    def close(self, report: dict[str, Any]) -> None:
        pass  # the task's result says how it ended


def run_task(task: dict[str, Any], progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run one task's graph here (in a Ray worker, or in-process); a plain dict in and out."""
    from stream.supervisor import Supervisor

    t = Task(**task)
    started = time.monotonic()
    try:  # what changed since the command checked it (a file gone, an output made meanwhile)
        graph = load_graph(t.graph, t.overrides)
        sup = Supervisor(graph, t.overrides, quiet=True, overwrite=t.overwrite)
    except ValueError as exc:  # GraphError included
        return asdict(TaskResult(Exit.REFUSED, str(exc), 0, 0.0))
    if progress is not None:
        sup.view = SinkProgress(graph, lambda frames: progress(min(frames, t.frames)))
    code = sup.run()
    nodes = sup.last_report.get("nodes", {})
    error = next((n["error"] for n in nodes.values() if n.get("error")), "" if code == 0 else sup.last_report.get("outcome", ""))
    frames = sum(n.get("extra", {}).get("video_frames", 0) for n in nodes.values())
    return asdict(TaskResult(code, error, frames, round(time.monotonic() - started, 3)))


class ProgressBoard:
    """A Ray actor: each running task's frames so far, by label (what the driver's bar adds up)."""

    def __init__(self) -> None:
        self.frames: dict[str, int] = {}

    def set(self, label: str, frames: int) -> None:
        self.frames[label] = frames

    def all(self) -> dict[str, int]:
        return self.frames


def run_task_on_ray(task: dict[str, Any], board: Any) -> dict[str, Any]:
    """`run_task` in a Ray worker, its progress sent to the driver's `ProgressBoard`."""
    return run_task(task, lambda frames: board.set.remote(task["label"], frames))


# -- what a graph must be ---------------------------------------------------------------------

@dataclass(frozen=True)
class OfflineGraph:
    """The names of an offline graph's `video` source and `mp4` sink."""

    source: str
    sink: str


def offline_nodes(graph: GraphSpec) -> OfflineGraph:
    """The graph's source and file sink, or Refused saying why it is not an offline job."""
    why = f"{graph.path}: batch runs offline graphs only (one `video` source, one `mp4` sink, every edge `block`)"
    sources, sinks = graph.sources(), graph.sinks()
    kinds = {n: graph.nodes[n].kind for n in sources}
    if graph.hosts:
        raise Refused(f"{why}; this one spans hosts ({', '.join(graph.hosts)})")
    if list(kinds.values()) != ["video"]:
        raise Refused(f"{why}; its sources are {', '.join(f'{n} ({k})' for n, k in kinds.items())}")
    if [graph.nodes[n].kind for n in sinks] != ["mp4"]:
        raise Refused(f"{why}; its sinks are {', '.join(f'{n} ({graph.nodes[n].kind})' for n in sinks)}")
    if latest := [str(e) for e in graph.edges if e.policy != "block"]:
        raise Refused(f"{why}; these edges drop frames (policy latest): {', '.join(latest)}")
    return OfflineGraph(sources[0], sinks[0])


def task_resources(graph: GraphSpec) -> dict[str, float]:
    """Ray resources of one run of `graph`: a GPU per CUDA device its nodes use, CPUs from its nodes'
    `threads` (a neural node with threads 0 counts one)."""
    cpus = sum(max(1, getattr(spec.params, "threads", 0)) for spec in graph.nodes.values()
               if hasattr(spec.params, "threads"))
    gpus = len({spec.device for spec in graph.nodes.values() if spec.device.startswith("cuda")})
    return {"num_cpus": max(1, cpus), "num_gpus": gpus}


def output_name(path: str) -> str:
    p = Path(path)
    return p.name if p.suffix.lower() in VIDEO_SUFFIXES else p.stem + ".mp4"


# -- one input ---------------------------------------------------------------------------------

@dataclass
class Job:
    """One input: its tasks (one, or one per chunk), what a rerun reuses, and how it ends."""

    input: str
    output: Path
    tasks: list[Task]
    frames: int
    chunks: list[Chunk]          # empty: the input runs whole
    reused: int = 0
    done: int = 0
    error: str = ""
    index: VideoIndex | None = None

    @property
    def chunk_dir(self) -> Path:
        return self.output.parent / CHUNKS / self.output.name


def _plan_key(graph_path: Path, overrides: dict, source: str, chunks: list[Chunk]) -> dict[str, Any]:
    """What a chunk folder's contents belong to: the same key on a rerun means the chunks can be reused."""
    stat = Path(source).stat()
    return {"graph": hashlib.sha256(graph_path.read_bytes()).hexdigest(), "overrides": overrides,
            "input": str(Path(source).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "chunks": [asdict(c) for c in chunks]}


def chunk_path(job: Job, i: int) -> Path:
    return job.chunk_dir / f"{i:04d}.mp4"


def plan_job(graph_path: Path, overrides: dict, nodes: OfflineGraph, source: str, outdir: Path,
             chunk_seconds: float | None, overwrite: bool = False, overlap: int = OVERLAP_FRAMES) -> Job:
    """The tasks of one input (paths made absolute: tasks may run elsewhere), its finished chunks skipped."""
    source = str(Path(source).resolve())
    output = outdir.resolve() / output_name(source)
    with refusing(ChunkError):
        index = index_video(source)

    def task(out: Path, label: str, frames: int, replace: bool, **source_params: Any) -> Task:
        sets = {**overrides, nodes.source: {**overrides.get(nodes.source, {}), "path": source, **source_params},
                nodes.sink: {**overrides.get(nodes.sink, {}), "path": str(out)}}
        return Task(str(graph_path), sets, source, str(out), label, frames, replace)

    if chunk_seconds is None:
        return Job(source, output, [task(output, source, index.frames, overwrite)], index.frames, [])
    chunks = plan_chunks(index, chunk_seconds, overlap)
    job = Job(source, output, [], index.frames, chunks, index=index)
    # a chunk is the job's own scratch: a retry replaces what a killed attempt completed (replace=True);
    # audio is muxed once from the source onto the joined video
    tasks = [task(chunk_path(job, c.index), f"{source} {c.describe()}", c.frames, True, start=c.start, end=c.end,
                  preroll=c.preroll, audio=False) for c in chunks]
    key = _plan_key(graph_path, overrides, source, chunks)
    plan = job.chunk_dir / "plan.json"
    if plan.exists() and json.loads(plan.read_text()) != key:
        log.info("%s: the job changed since its chunks were made: starting it afresh", source)
        shutil.rmtree(job.chunk_dir)
    job.chunk_dir.mkdir(parents=True, exist_ok=True)
    plan.write_text(json.dumps(key, indent=1))
    job.tasks = [t for t in tasks if not Path(t.output).exists()]  # finished chunks have their final name
    job.reused = len(tasks) - len(job.tasks)
    return job


def finish_job(job: Job) -> None:
    """Join a chunked input's chunks (nothing to do for one that ran whole: its sink wrote the output)."""
    if not job.chunks or job.error:
        return
    try:
        join_chunks([(c, chunk_path(job, c.index)) for c in job.chunks], job.input, str(job.output), job.index)
    except ChunkError as exc:
        job.error = str(exc)


# -- running the tasks -------------------------------------------------------------------------

@dataclass
class RayCluster:
    """How this job reaches Ray, and what starting it cost."""

    address: str
    started_s: float
    owned: bool     # started (or joined) by this command, so shut down by it


#: Ray's switch for a single-machine Ray (its default on Windows and macOS): the node's address is loopback,
#: so the GCS, raylet, object manager and worker gRPC servers listen on 127.0.0.1 alone. Ray reads it when
#: it is imported; `ray.init(_node_ip_address="127.0.0.1")` alone is turned back into the machine's address.
LOOPBACK_ONLY = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def connect_ray(address: str, num_cpus: int | None = None) -> RayCluster:
    """`local`: a Ray of this machine only, listening on loopback (`num_cpus`: all of them by default); else
    join the cluster at `address`. A Ray this process already runs (a test session's) is used as it is."""
    if address == "local":
        os.environ.setdefault(*LOOPBACK_ONLY)
    try:
        import ray
    except ImportError:
        raise Refused("--ray needs Ray, an extra: pip install -e '.[ray]'") from None

    if ray.is_initialized():
        return RayCluster(ray.get_runtime_context().gcs_address, 0.0, owned=False)
    started = time.monotonic()
    options: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address == "local":
        options.update(address="local", num_cpus=num_cpus or os.cpu_count(), object_store_memory=OBJECT_STORE_BYTES)
    else:
        options.update(address=address)
    with refusing(ConnectionError, ValueError, RuntimeError):
        ray.init(**options)
    cluster = RayCluster(ray.get_runtime_context().gcs_address, time.monotonic() - started, owned=True)
    if address == "local" and not ipaddress.ip_address(cluster.address.rsplit(":", 1)[0].strip("[]")).is_loopback:
        log.warning("the local Ray listens on %s, not on loopback only: Ray was imported before --ray local "
                    "could set %s=%s", cluster.address, *LOOPBACK_ONLY)
    return cluster


class Progress:
    """The one bar over every frame of every input: finished tasks count whole, running ones as reported."""

    def __init__(self, total: int, quiet: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc="batch", unit="frame", file=sys.stderr, dynamic_ncols=True, disable=quiet)
        self.base = 0                        # frames of finished (or reused) tasks
        self.running: dict[str, int] = {}    # label -> frames so far

    def finished(self, task: Task) -> None:
        self.running.pop(task.label, None)
        self.base += task.frames
        self.show()

    def show(self) -> None:
        self.bar.n = min(self.bar.total, self.base + sum(self.running.values()))
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def run_sequential(tasks: list[tuple[Job, Task]], done: Callable[[Job, Task, dict], None], progress: Progress) -> None:
    for job, task in tasks:
        def report(frames: int, label: str = task.label) -> None:
            progress.running[label] = frames
            progress.show()

        done(job, task, run_task(asdict(task), report))


def run_on_ray(tasks: list[tuple[Job, Task]], done: Callable[[Job, Task, dict], None], progress: Progress,
               retries: int, resources: dict[str, float]) -> None:
    import ray

    board = ray.remote(ProgressBoard).options(num_cpus=0).remote()
    remote = ray.remote(run_task_on_ray).options(max_retries=retries, retry_exceptions=False, **resources)
    pending = {remote.remote(asdict(task), board): (job, task) for job, task in tasks}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=PROGRESS_S)
            progress.running = {k: v for k, v in ray.get(board.all.remote()).items()
                                if k in {t.label for _, t in pending.values()}}
            progress.show()
            if not ready:
                continue
            job, task = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except (ray.exceptions.RayError, OSError) as exc:  # the worker died more often than retried
                result = asdict(TaskResult(Exit.FAILED, f"{type(exc).__name__}: {str(exc).splitlines()[0]}", 0, 0.0))
            done(job, task, result)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        ray.kill(board)


def cmd_batch(args: argparse.Namespace) -> int:
    from stream.preflight import check_graph

    outdir = Path(args.output)
    if args.chunk_seconds is not None and args.chunk_seconds <= 0:
        raise Refused(f"--chunk-seconds must be > 0, got {args.chunk_seconds}")
    if args.overlap < 0:
        raise Refused(f"--overlap must be >= 0 frames, got {args.overlap}")
    with refusing(GraphError, ValueError):
        path = graph_file(args.graph)
        overrides = parse_overrides(args.set or [], path)
        graph = load_graph(path, overrides)
    nodes = offline_nodes(graph)
    names: dict[str, str] = {}
    for source in args.inputs:
        if not Path(source).is_file():
            raise Refused(f"{source}: no such file")
        name = output_name(source)
        if name in names:
            raise Refused(f"{source} and {names[name]} would both be written to {outdir / name}")
        names[name] = source
        refuse_overwrite(args.inputs, str(outdir / name))
        if (outdir / name).is_file() and not args.overwrite:
            raise Refused(f"{outdir / name}: exists; run with --overwrite to replace it, or choose another folder")
    first = {**overrides, nodes.source: {**overrides.get(nodes.source, {}), "path": args.inputs[0]},
             nodes.sink: {**overrides.get(nodes.sink, {}), "path": str(outdir / output_name(args.inputs[0]))}}
    with refusing(GraphError, ValueError):
        # the models and parameters: what every task would refuse
        if problems := check_graph(load_graph(path, first), overwrite=args.overwrite):
            raise GraphError(str(path), problems)
    jobs = [plan_job(Path(path).resolve(), overrides, nodes, source, outdir, args.chunk_seconds, args.overwrite,
                     args.overlap) for source in args.inputs]

    cluster = connect_ray(args.ray) if args.ray else None
    if cluster is not None:
        print(f"ray: {'started' if args.ray == 'local' else 'joined'} {cluster.address} in {cluster.started_s:.1f} s"
              if cluster.owned else f"ray: using this process's cluster {cluster.address}")
    started = time.monotonic()
    progress = Progress(sum(j.frames for j in jobs), args.quiet)
    progress.base = sum(j.frames - sum(t.frames for t in j.tasks) for j in jobs)  # chunks a previous run finished

    def done(job: Job, task: Task, result: dict[str, Any]) -> None:
        progress.finished(task)
        if result["code"] != Exit.OK and not job.error:
            job.error = f"{task.label} failed: {result['error'] or 'exit code ' + str(result['code'])}"
        job.done += 1
        if job.done == len(job.tasks):
            finish_job(job)

    for job in jobs:
        if not job.tasks:
            finish_job(job)
    tasks = [(job, task) for job in jobs for task in job.tasks]
    try:
        if cluster is None:
            run_sequential(tasks, done, progress)
        else:
            run_on_ray(tasks, done, progress, args.retries, task_resources(graph))
    except KeyboardInterrupt:
        progress.close()
        log.error("interrupted: finished chunks are kept in %s for a rerun", outdir / CHUNKS)
        return Exit.INTERRUPTED
    finally:
        if cluster is not None and cluster.owned:
            import ray

            ray.shutdown()
    progress.close()
    elapsed = time.monotonic() - started
    for job in jobs:
        if job.error:
            log.error("%s", job.error)
        else:
            reused = f", {job.reused} of {len(job.chunks)} chunks reused" if job.reused else ""
            cut = f" in {len(job.chunks)} chunks" if job.chunks else ""
            print(f"{job.input}: wrote {job.output.resolve()} ({job.frames} frames{cut}{reused})")
    failed = sum(1 for j in jobs if j.error)
    ray_s = f", Ray start {cluster.started_s:.1f} s" if cluster is not None and cluster.owned else ""
    print(f"batch: {len(jobs) - failed} of {len(jobs)} inputs complete in {elapsed:.1f} s{ray_s}")
    return Exit.FAILED if failed else Exit.OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batch", help="run an offline graph over many inputs (and long ones in chunks), on Ray or here")
    p.add_argument("graph", help="an offline graph file, or a shipped one by name (rerender, avatar_rerender...)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video files")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder of the outputs (same file names)")
    p.add_argument("--set", action="append", metavar="NODE.PARAM=VALUE", help="override a node parameter")
    p.add_argument("--ray", metavar="local|ADDRESS", help="run the tasks on Ray: `local` starts one on this machine, "
                                                         "an address joins a cluster (`ray start --head`); "
                                                         "without it they run one after another here")
    p.add_argument("--chunk-seconds", type=float, metavar="S", help="cut each input at keyframes into chunks of "
                                                                    "at least S seconds, joined without re-encoding")
    p.add_argument("--overlap", type=int, default=OVERLAP_FRAMES, metavar="FRAMES",
                   help="frames before each chunk run through the graph and dropped, so temporal state (smoothing, "
                        f"tracking) starts warm (default {OVERLAP_FRAMES}; 0 for a graph without any)")
    p.add_argument("--retries", type=int, default=3, help="Ray retries of a task whose worker died (default 3)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs that exist (otherwise refused before any work, as `run` does)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_batch)
