"""The supervisor: starts one process per node (or per group), watches and restarts them.

- Processes start with `spawn` (ZeroMQ contexts do not survive fork).
- Each process heartbeats its nodes' states and metrics; a process that dies (or stops
  heartbeating) is restarted after a backoff that doubles, up to its node's limit; the
  rest of the graph keeps running. A restarted source continues after the last
  sequence number it reported.
- The job completes when every process has finished (end-of-stream reached every
  sink); `duration` stops a live job after that many seconds.
- Lossless edges survive a crash: a restarted process resumes where its consumers' last
  heartbeats say they are, its producers replay what they sent since (`stream.transport`),
  and consumers drop what they already have. Where that cannot hold (a file sink that
  crashed, a replay the producer no longer has) the job fails. The report sums each node's
  counters over its incarnations and lists what every restart cost.
- Ctrl-C / SIGTERM stop everything: SIGTERM to every child, SIGKILL after a grace
  period, and no restarts once a stop began; children also die with the supervisor
  (PR_SET_PDEATHSIG, set first thing: `stream.boot`), so none is orphaned. A run's folders
  in the temp folder and /dev/shm record its pid; the next run removes those of a dead one.
- Exit code: 0 completed, or a live job stopped by `duration`; 1 failed (fatal error,
  restarts exhausted, a loss the runtime could not repair, a peer host that never connected or
  did not return within its `peer_wait`: `stream.transport.PeerWatch`, also when `duration` ends
  the run first; the reason is the last line; a live run stopped by `duration` whose sinks received
  nothing, the nodes' states in its last line); 128 + the signal when stopped by
  one (130 Ctrl-C, 143 SIGTERM): a job stopped before its end did not do all its work.
  A job that skipped lost data because its user chose so (a `video` source with `on_error: skip`)
  did what it was asked and exits 0, but its last line is a warning naming the file, the frames
  and seconds of video and the seconds of audio lost (also `warnings` in the report): a script
  that keeps the output keeps a file the user knowingly accepted incomplete, and a non-zero code
  would make every `set -e` caller treat the choice as a failure.
- CPU threads: the processes that compute share this host's cores for their torch/OpenMP
  pools (OMP_NUM_THREADS; `_thread_shares`), unless the environment sets OMP_NUM_THREADS or a
  node its own `threads`. Every library otherwise starts one thread per core in every process, and on
  a small host the pools fight: measured on 2 cores with the telepresence render host
  (avatar + stylizer + two light nodes), avatar / stylizer 666 / 883 ms a frame with the
  defaults against 95 / 215 ms with this share.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import zmq

from stream.graph import LOCAL_HOST, GraphError, GraphSpec
from stream.node import Sink
from stream.preflight import check_graph, partial_outputs
from stream.runner import EXIT_FATAL, HEARTBEAT_S, ProcessConfig
from stream.security import missing_keys
from stream.shm import ShmReader, shm_root
from stream.transport import plan_wires, replayable
from stream.status import StatusView
from stream.wire import unpack_bounded

log = logging.getLogger(__name__)
HEARTBEAT_TIMEOUT_S = 15.0
GRACE_S = 5.0


@dataclass
class ProcessHandle:
    """One supervised process and its history."""

    label: str
    nodes: list[str]
    max_restarts: int
    backoff: float
    proc: Any = None
    incarnation: int = 0
    restarts: int = 0
    state: str = "starting"        # running | finished | failed | waiting
    restart_at: float = 0.0
    last_heartbeat: float = 0.0
    node_status: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    totals: dict[str, dict[str, Any]] = field(default_factory=dict)  # node -> counters of dead incarnations
    history: list[dict[str, Any]] = field(default_factory=list)      # what each restart cost
    exited_at: float = 0.0
    resume: int | None = None      # where the next incarnation starts; None until its consumers have reported
    last_seq: dict[str, int] = field(default_factory=dict)  # of the dead incarnation, for the restart log
    cpu_s: float = 0.0             # CPU time of the running incarnation, as its last heartbeat said
    cpu_before_s: float = 0.0      # of the dead incarnations


#: Counters that add up over a node's incarnations (the rest describe the latest one).
_COUNTERS = ("frames_in", "frames_out", "drops", "rejected", "net_bytes_in")
_OWNER = "owner"  # in a run's folders: "pid start-time" of the supervisor that made them


def _start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot), which tells it from a later one with the same pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _claim(folder: Path) -> None:
    (folder / _OWNER).write_text(f"{os.getpid()} {_start_time(os.getpid())}")


def _remove_dead_runs(root: Path) -> None:
    """Remove the ns-* folders under `root` whose supervisor is gone (SIGKILL leaves them behind)."""
    for folder in root.glob("ns-*"):
        try:
            pid, started = (folder / _OWNER).read_text().split()
        except (OSError, ValueError):
            continue  # not a run's folder, or one still being made
        if _start_time(int(pid)) != started:
            shutil.rmtree(folder, ignore_errors=True)


def _add(total: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Add one incarnation's counters (and its numeric extras) to `total`."""
    for k in _COUNTERS:
        total[k] = total.get(k, 0) + metrics.get(k, 0)
    extra = total.setdefault("extra", {})
    for k, v in (metrics.get("extra") or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            extra[k] = extra.get(k, 0) + v


def _loss_warnings(report: dict[str, Any]) -> list[str]:
    """One line per node that went on without lost data (its metrics' extra `lost`: file, frames,
    video_s, audio_s, ranges as [stream, from, to] seconds), saying what the output lacks."""
    lines = []
    for name, node in report["nodes"].items():
        lost = (node.get("extra") or {}).get("lost") or {}
        if not (lost.get("frames") or lost.get("video_s") or lost.get("audio_s")):
            continue
        spans = sorted(lost.get("ranges", []), key=lambda r: r[1])
        ranges = ", ".join(f"{kind} {a:.2f}-{b:.2f} s" for kind, a, b in spans[:5])
        more = f" and {len(spans) - 5} more" if len(spans) > 5 else ""
        lines.append(f"{name}: skipped lost data in {lost.get('file')}: {lost.get('frames', 0)} frames "
                     f"({lost.get('video_s', 0):.2f} s) of video and {lost.get('audio_s', 0):.2f} s of audio "
                     f"are missing from the output ({ranges}{more})")
    return lines


def _host_cpus() -> int:
    """The cores this process may run on (a container's or taskset's limit, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _thread_shares(graph: GraphSpec, handles: list[ProcessHandle], cores: int) -> dict[str, int]:
    """Each process's torch/OpenMP pool (label -> threads): the cores split by the compute its nodes do.

    A node that runs a torch pool declares a `threads` parameter (stylize, avatar); it weighs 1 and
    takes its share, as does a `busy` node (pose's MediaPipe, the compositor's inpainting), which
    has no pool to size but keeps a core busy all the same; any other node weighs 0 (sources,
    resizers, encoders and sinks mostly decode, copy or wait). Every process keeps at least 1
    thread; with no torch node the cores are shared equally. An equal share per process gave the
    live stylizer 1 of 2 cores beside two nearly idle nodes (11.6 fps; 14 fps with both, issue 13);
    the avatar of avatar_rerender both cores beside pose and compositor (18.7 fps; 22.3 with one).
    """
    def weight(name: str, torch_only: bool) -> int:
        spec = graph.nodes[name]
        return int(hasattr(spec.params, "threads") or (not torch_only and spec.cls.busy))

    pools = {h.label: sum(weight(n, True) for n in h.nodes) for h in handles}
    if not sum(pools.values()):
        return {label: max(1, cores // len(handles)) for label in pools}
    total = sum(weight(n, False) for h in handles for n in h.nodes)
    return {label: max(1, round(cores * c / total)) for label, c in pools.items()}


def _groups(graph: GraphSpec, host: str) -> list[ProcessHandle]:
    handles: dict[str, ProcessHandle] = {}
    for name in graph.order():
        spec = graph.nodes[name]
        if spec.host != host:
            continue
        key = f"group:{spec.group}" if spec.group else name
        h = handles.get(key)
        if h is None:
            handles[key] = ProcessHandle(label=spec.group or name, nodes=[name], max_restarts=spec.restart.max,
                                         backoff=spec.restart.backoff)
        else:
            h.nodes.append(name)
            h.max_restarts = min(h.max_restarts, spec.restart.max)
    return list(handles.values())


class Supervisor:
    def __init__(self, graph: GraphSpec, overrides: dict[str, dict[str, Any]], host: str = LOCAL_HOST,
                 duration: float | None = None, report_path: Path | None = None, quiet: bool = False,
                 overwrite: bool = False):
        self.graph, self.overrides, self.duration, self.report_path = graph, overrides, duration, report_path
        self.host = host if graph.hosts else LOCAL_HOST
        self.handles = _groups(graph, self.host)
        if not self.handles:
            raise ValueError(f"no node of {graph.path} runs on host {host!r}")
        if problems := check_graph(graph, self.host, overwrite):  # before any process starts: nothing written yet
            raise GraphError(graph.path, problems)
        self.wires = plan_wires(graph, Path("."))  # only the kinds of edge matter here, not the folders
        peers = {w.server_host if w.client_host == self.host else w.client_host for w in self.wires.values()
                 if w.transport == "tcp" and self.host in (w.client_host, w.server_host)}
        if peers and (missing := missing_keys(graph.keys_dir, self.host, peers)):
            raise ValueError(f"{graph.path}: host {self.host!r} cannot talk to {sorted(peers)}: missing CurveZMQ "
                             f"key(s) {', '.join(missing)} (make them with `python -m launch keys DIR --hosts ...`)")
        for root in {Path(tempfile.gettempdir()), shm_root()}:
            _remove_dead_runs(root)
        run_id = uuid.uuid4().hex[:8]
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"ns-{run_id}-"))
        _claim(self.run_dir)
        self.ring_dir = shm_root() / f"ns-{run_id}"
        self.ring_dir.mkdir(mode=0o700)
        _claim(self.ring_dir)
        self.cpu_threads = _thread_shares(graph, self.handles, _host_cpus())
        self.edge_key = secrets.token_hex(32)  # authenticates every message between this run's processes
        self.zctx = zmq.Context()
        self.status_sock = self.zctx.socket(zmq.PULL)
        self.status_endpoint = f"ipc://{self.run_dir}/supervisor"
        self.status_sock.bind(self.status_endpoint)
        self.control: dict[str, zmq.Socket] = {}
        for h in self.handles:
            sock = self.control[h.label] = self.zctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(self._control_endpoint(h))
        self.view = StatusView(graph, quiet=quiet)
        self._signal: int | None = None
        self.last_report: dict[str, Any] = {}

    # -- processes ------------------------------------------------------------------------
    def _control_endpoint(self, h: ProcessHandle) -> str:
        return f"ipc://{self.run_dir}/control.{h.label}"

    def _handle_of(self, node: str) -> ProcessHandle | None:
        return next((h for h in self.handles if node in h.nodes), None)

    def _accepted(self, node: str, port: str) -> int:
        """The newest seq `node` accepted on `port`, by its last heartbeat (-1: none, or not on this host)."""
        h = self._handle_of(node)
        return (h.node_status.get(node, {}).get("accepted") or {}).get(port, -1) if h is not None else -1

    def _resume_point(self, h: ProcessHandle, last_seq: dict[str, int]) -> int:
        """Where a restarted `h` starts again: after what its consumers on this host already have (their
        heartbeats lag, so this errs early, and the consumers drop the repeats), else after its own last frame."""
        outgoing = [e for e in self.graph.edges if e.src in h.nodes and e.dst not in h.nodes and self._handle_of(e.dst)]
        if outgoing:
            return min(self._accepted(e.dst, e.dst_port) for e in outgoing) + 1
        return min(last_seq.values(), default=-1) + 1

    def _start(self, h: ProcessHandle) -> None:
        resume = h.resume or 0
        sources = [n for n in h.nodes if n in self.graph.sources()]
        cfg = ProcessConfig(label=h.label, graph_path=str(self.graph.path), overrides=self.overrides, nodes=h.nodes,
                            run_dir=str(self.run_dir), ring_dir=str(self.ring_dir), status_endpoint=self.status_endpoint,
                            resume={n: resume for n in sources if resume}, incarnation=h.incarnation,
                            cpu_threads=self.cpu_threads[h.label], edge_key=self.edge_key, control_endpoint=self._control_endpoint(h),
                            log_level=logging.getLogger().getEffectiveLevel())
        h.proc = subprocess.Popen([sys.executable, "-m", "stream.boot", str(os.getpid())], stdin=subprocess.PIPE)
        h.proc.stdin.write(cfg.to_json().encode())
        h.proc.stdin.close()
        h.state, h.last_heartbeat = "running", time.monotonic()

    def _consumers_reported(self, h: ProcessHandle) -> bool:
        """Every running consumer of `h` has sent a heartbeat from after `h` died: what it accepted is settled."""
        consumers = [self._handle_of(e.dst) for e in self.graph.edges if e.src in h.nodes and e.dst not in h.nodes]
        return all(c.last_heartbeat > h.exited_at + HEARTBEAT_S for c in consumers
                   if c is not None and c.state in ("running", "finished"))

    def _prepare_restart(self, h: ProcessHandle) -> None:
        """Fix where `h` resumes, refuse what is still queued for its dead predecessor (its shared-memory
        columns get a new epoch), and have its producers replay from there (they hold until it listens)."""
        h.resume = self._resume_point(h, h.last_seq)
        h.history.append({"exit_code": h.proc.returncode, "resume_from": h.resume,
                          "redone": max(0, max(h.last_seq.values()) - h.resume + 1)})  # frames done again
        for w in self.wires.values():
            e = w.edge
            if replayable(w) and e.dst in h.nodes and e.src not in h.nodes:
                ShmReader(self.ring_dir, {w.ring: w.column}).reset()
                producer = self._handle_of(e.src)
                self.control[producer.label].send(msgpack.packb({"replay": [[e.dst, e.dst_port, h.resume]]}))

    @staticmethod
    def _all_finished(h: ProcessHandle) -> bool:
        return all(h.node_status.get(n, {}).get("state") == "finished" for n in h.nodes)

    def _lossy_sink(self, h: ProcessHandle) -> str | None:
        """A sink of `h` on a lossless input whose work a crash lost (a half-written file): no restart can
        make its output whole, so the job fails instead."""
        for n in h.nodes:
            cls = self.graph.nodes[n].cls
            if issubclass(cls, Sink) and not cls.resumable and any(
                    e.dst == n and e.policy == "block" for e in self.graph.edges):
                return n
        return None

    def _on_exit(self, h: ProcessHandle, now: float) -> None:
        code = h.proc.returncode
        states = {s.get("state") for s in h.node_status.values()}
        if code == EXIT_FATAL or "fatal" in states:
            h.state = "failed"
            h.error = h.error or next((s.get("error") for s in h.node_status.values() if s.get("error")), "fatal error")
            return
        if (sink := self._lossy_sink(h)) is not None:
            h.state = "failed"
            h.error = f"{sink} exited with code {code}: what it wrote cannot be completed exactly once"
            return
        if h.restarts >= h.max_restarts:
            h.state = "failed"
            h.error = f"exited with code {code}; restart limit {h.max_restarts} reached"
            return
        delay = h.backoff * (2 ** h.restarts)
        h.restarts += 1
        h.incarnation += 1
        h.state, h.restart_at, h.exited_at, h.resume = "waiting", now + delay, now, None
        h.last_seq = {n: h.node_status.get(n, {}).get("metrics", {}).get("last_seq", -1) for n in h.nodes}
        for n in h.nodes:  # the next incarnation counts from zero: keep what this one counted
            _add(h.totals.setdefault(n, {}), h.node_status.pop(n, {}).get("metrics", {}))
        h.cpu_before_s, h.cpu_s = h.cpu_before_s + h.cpu_s, 0.0
        log.warning("%s exited with code %s; restart %d/%d in %.2fs", h.label, code, h.restarts, h.max_restarts, delay)

    def _receive_status(self) -> None:
        while True:
            try:
                raw = self.status_sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                body = unpack_bounded(raw, 1 << 20)
            except Exception:
                continue
            h = next((h for h in self.handles if h.label == body.get("proc")), None)
            if h is None or body.get("incarnation") != h.incarnation:
                continue
            h.last_heartbeat = time.monotonic()
            h.node_status.update(body.get("nodes") or {})
            if isinstance(body.get("cpu_s"), (int, float)):
                h.cpu_s = float(body["cpu_s"])
            if body.get("fatal"):
                h.error = body["fatal"]

    # -- run ------------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self._signal is not None:  # second Ctrl-C: no more grace
            for h in self.handles:
                if h.proc is not None and h.proc.poll() is None:
                    h.proc.kill()
        self._signal = signum

    def run(self) -> int:
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        started = time.monotonic()
        outcome, idle = "completed", None
        try:
            for h in self.handles:
                self._start(h)
            while True:
                now = time.monotonic()
                if self._signal is not None:  # before looking at exits: children being stopped are not restarted
                    outcome = "interrupted" if self._signal == signal.SIGINT else "terminated"
                    break
                self._receive_status()
                for h in self.handles:
                    if h.state == "running" and h.proc.poll() is not None:
                        self._receive_status()
                        self._on_exit(h, now)
                    elif h.state == "running" and self._all_finished(h):
                        h.state = "finished"  # it stays up, serving what downstream still reads, until shutdown
                    elif h.state == "running" and now - h.last_heartbeat > HEARTBEAT_TIMEOUT_S:
                        log.warning("%s: no heartbeat for %.0fs, killing it", h.label, HEARTBEAT_TIMEOUT_S)
                        h.proc.kill()
                    elif h.state == "waiting" and h.resume is None and self._consumers_reported(h):
                        self._prepare_restart(h)
                    elif h.state == "waiting" and h.resume is not None and now >= h.restart_at:
                        self._start(h)
                self.view.update(self.handles, now - started)
                if (unrepaired := self._unrepaired()) is not None:
                    unrepaired.state = "failed"
                    unrepaired.error = "frames lost: a restarted consumer needed frames this process no longer kept"
                if any(h.state == "failed" for h in self.handles):
                    outcome = "failed"
                    break
                if all(h.state == "finished" for h in self.handles):
                    break
                if self.duration is not None and now - started >= self.duration:
                    outcome = "stopped" if self._live() else "incomplete"
                    if self._peer_never_came():
                        outcome = "failed"
                    elif outcome == "stopped" and (idle := self._nothing_delivered()):
                        outcome = "failed"
                    break
                time.sleep(0.05)
        finally:
            self._shutdown()
            for s, handler in old.items():
                signal.signal(s, handler)
        elapsed = time.monotonic() - started
        if outcome == "failed":  # nothing of a failed job stays on disk (a stopped one keeps its .part, and says so)
            self._remove_partial_outputs()
        code = {"completed": 0, "stopped": 0, "failed": 1, "incomplete": 1,
                "interrupted": 128 + signal.SIGINT, "terminated": 128 + signal.SIGTERM}[outcome]
        report = self.last_report = self.report(outcome, code, elapsed)
        report["warnings"] = _loss_warnings(report)
        self.view.close(report)
        for line in report["warnings"]:  # after the table: the last lines a user sees
            log.warning("%s", line)
        if outcome == "failed" and (peer := self._peer_failure()):
            log.error("%s", peer)
        if idle:
            log.error("%s", idle)
        if self.report_path is not None:
            self.report_path.parent.mkdir(parents=True, exist_ok=True)
            self.report_path.write_text(json.dumps(report, indent=2))
        return code

    def _peer_never_came(self) -> bool:
        """(a run stopped by --for) Fail the nodes of this host whose peer host never connected: a run that
        never met its peer did none of its work, however short."""
        failed = False
        for h in self.handles:
            for n in h.nodes:
                if reason := h.node_status.get(n, {}).get("peer_never_came"):
                    h.state, h.error, failed = "failed", f"in the {self.duration:g} s of the run, {reason}", True
        return failed

    def _nothing_delivered(self) -> str | None:
        """(a live run stopped by --for) Why no sink of this host received a frame, when none did: such a run
        showed nothing, however short, and says what its nodes were still doing (compiling, opening a source).
        Only where this host runs sources too: frames from another host are the peer rules' business."""
        mine = [n for h in self.handles for n in h.nodes]
        sinks = [n for n in mine if n in self.graph.sinks()]
        if not sinks or not any(n in self.graph.sources() for n in mine) or any(self._metrics(n).get("frames_in", 0) + self._handle_of(n).totals.get(n, {}).get("frames_in", 0)
                            for n in sinks):
            return None
        busy = [f"{n}: {m['state']}" for h in self.handles for n in h.nodes if (m := self._metrics(n)).get("state")]
        return (f"nothing reached {', '.join(sinks)} in the {self.duration:g} s of the run"
                + (f" (still {'; '.join(busy)})" if busy else ""))

    def _peer_failure(self) -> str | None:
        """Why the run failed, when a peer host did not come or did not return: its last line."""
        for h in self.handles:
            for n in h.nodes:
                status = h.node_status.get(n, {})
                if status.get("peer_lost") or (h.state == "failed" and status.get("peer_never_came")):
                    return f"{n}: {status.get('peer_lost') or h.error}"
        return None

    def _remove_partial_outputs(self) -> None:
        for partial in partial_outputs(self.graph, self.host):
            if partial.exists():
                partial.unlink()
                log.info("removed the partial output %s", partial)

    def _live(self) -> bool:
        """A live job runs until stopped: some source of this host is endless (or its sources are elsewhere)."""
        sources = [n for h in self.handles for n in h.nodes if n in self.graph.sources()]
        return not sources or any(self._metrics(n).get("total") is None for n in sources)

    def _metrics(self, node: str) -> dict[str, Any]:
        return self._handle_of(node).node_status.get(node, {}).get("metrics", {})

    def _unrepaired(self) -> ProcessHandle | None:
        """A process whose output port could not replay to a restarted consumer: frames are lost for good."""
        return next((h for h in self.handles if h.state != "failed" and any(
            self._metrics(n).get("extra", {}).get("replay_failures") for n in h.nodes)), None)

    def _shutdown(self) -> None:
        live = [h for h in self.handles if h.proc is not None and h.proc.poll() is None]
        for h in live:
            h.proc.terminate()
        deadline = time.monotonic() + GRACE_S
        for h in live:
            try:
                h.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                h.proc.kill()
                h.proc.wait()
        self._receive_status()  # the final heartbeats, with the final counts
        for sock in self.control.values():
            sock.close(linger=0)
        self.status_sock.close(linger=0)
        self.zctx.term()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        shutil.rmtree(self.ring_dir, ignore_errors=True)

    def report(self, outcome: str, code: int, elapsed: float) -> dict[str, Any]:
        nodes = {}
        for h in self.handles:
            for n in h.nodes:
                s = h.node_status.get(n, {})
                metrics = dict(s.get("metrics", {}))
                if n in h.totals:  # counters over every incarnation, the rest from the latest
                    total = {**h.totals[n], "extra": dict(h.totals[n].get("extra", {}))}
                    _add(total, metrics)
                    metrics.update(total, extra={**metrics.get("extra", {}), **total["extra"]})
                nodes[n] = {**metrics, "kind": self.graph.nodes[n].kind, "in_process": h.label,  # the node's state,
                            "process_cpu_s": round(h.cpu_before_s + h.cpu_s, 2),  # shared by the process's nodes
                            "state": s.get("state", h.state),  # not what its metrics said it was doing
                            "restarts": h.restarts, "restart_log": h.history, "error": s.get("error") or h.error}
        return {"graph": self.graph.name, "file": str(self.graph.path), "host": self.host, "outcome": outcome,
                "exit_code": code, "duration_s": round(elapsed, 3), "nodes": nodes}
