"""The supervisor: starts one process per node (or per group), watches and restarts them.

- Processes start with `spawn` (ZeroMQ contexts do not survive fork).
- Each process heartbeats its nodes' states and metrics; a process that dies (or stops
  heartbeating) is restarted after a backoff that doubles, up to its node's limit; the
  rest of the graph keeps running. A restarted source continues after the last
  sequence number it reported.
- The job completes when every process has finished (end-of-stream reached every
  sink); `duration` stops a live job after that many seconds.
- Ctrl-C / SIGTERM stop everything: SIGTERM to every child, SIGKILL after a grace
  period; children also die with the supervisor (PR_SET_PDEATHSIG), so none is orphaned.
- Exit code: 0 completed or stopped on request, 1 failed (fatal error or restarts
  exhausted), 130 interrupted.
- CPU threads: each process gets an equal share of this host's cores for its torch/OpenMP
  pool (OMP_NUM_THREADS), unless the environment sets OMP_NUM_THREADS or a node its own
  `threads`. Every library otherwise starts one thread per core in every process, and on
  a small host the pools fight: measured on 2 cores with the telepresence render host
  (avatar + stylizer + two light nodes), avatar / stylizer 666 / 883 ms a frame with the
  defaults against 95 / 215 ms with this share.
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import shutil
import signal
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from stream.graph import LOCAL_HOST, GraphSpec
from stream.runner import EXIT_FATAL, ProcessConfig, process_main
from stream.shm import shm_root
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


def _stop_resource_tracker() -> None:
    """Spawn starts multiprocessing's resource-tracker helper; it would exit only after we do, briefly outliving
    the job. Stop it here (it restarts on demand) so a finished job leaves no process behind."""
    from multiprocessing import resource_tracker

    tracker = resource_tracker._resource_tracker  # private API, present in 3.8-3.13
    if getattr(tracker, "_pid", None) is not None and hasattr(tracker, "_stop"):  # ours, not one inherited
        tracker._stop()


def _host_cpus() -> int:
    """The cores this process may run on (a container's or taskset's limit, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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
                 duration: float | None = None, report_path: Path | None = None, quiet: bool = False):
        self.graph, self.overrides, self.duration, self.report_path = graph, overrides, duration, report_path
        self.host = host if graph.hosts else LOCAL_HOST
        run_id = uuid.uuid4().hex[:8]
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"ns-{run_id}-"))
        self.ring_dir = shm_root() / f"ns-{run_id}"
        self.ring_dir.mkdir(mode=0o700)
        self.handles = _groups(graph, self.host)
        if not self.handles:
            raise ValueError(f"no node of {graph.path} runs on host {host!r}")
        self.cpu_threads = max(1, _host_cpus() // len(self.handles))
        self.mp = mp.get_context("spawn")
        self.zctx = zmq.Context()
        self.status_sock = self.zctx.socket(zmq.PULL)
        self.status_endpoint = f"ipc://{self.run_dir}/supervisor"
        self.status_sock.bind(self.status_endpoint)
        self.view = StatusView(graph, quiet=quiet)
        self._signal: int | None = None
        self.last_report: dict[str, Any] = {}

    # -- processes ------------------------------------------------------------------------
    def _resume_points(self, h: ProcessHandle) -> dict[str, int]:
        resume = {}
        for n in h.nodes:
            last = h.node_status.get(n, {}).get("metrics", {}).get("last_seq", -1)
            if last >= 0:
                resume[n] = last + 1
        return resume

    def _start(self, h: ProcessHandle) -> None:
        cfg = ProcessConfig(label=h.label, graph_path=str(self.graph.path), overrides=self.overrides, nodes=h.nodes,
                            run_dir=str(self.run_dir), ring_dir=str(self.ring_dir), status_endpoint=self.status_endpoint,
                            resume=self._resume_points(h), incarnation=h.incarnation, cpu_threads=self.cpu_threads)
        h.proc = self.mp.Process(target=process_main, args=(cfg.to_json(),), name=f"node:{h.label}", daemon=False)
        h.proc.start()
        h.state, h.last_heartbeat = "running", time.monotonic()

    @staticmethod
    def _all_finished(h: ProcessHandle) -> bool:
        return all(h.node_status.get(n, {}).get("state") == "finished" for n in h.nodes)

    def _on_exit(self, h: ProcessHandle, now: float) -> None:
        code = h.proc.exitcode
        states = {s.get("state") for s in h.node_status.values()}
        if code == EXIT_FATAL or "fatal" in states:
            h.state = "failed"
            h.error = h.error or next((s.get("error") for s in h.node_status.values() if s.get("error")), "fatal error")
            return
        if h.restarts >= h.max_restarts:
            h.state = "failed"
            h.error = f"exited with code {code}; restart limit {h.max_restarts} reached"
            return
        delay = h.backoff * (2 ** h.restarts)
        h.restarts += 1
        h.incarnation += 1
        h.state, h.restart_at = "waiting", now + delay
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
            if body.get("fatal"):
                h.error = body["fatal"]

    # -- run ------------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self._signal is not None:  # second Ctrl-C: no more grace
            for h in self.handles:
                if h.proc is not None and h.proc.is_alive():
                    h.proc.kill()
        self._signal = signum

    def run(self) -> int:
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        started = time.monotonic()
        outcome = "completed"
        try:
            for h in self.handles:
                self._start(h)
            while True:
                now = time.monotonic()
                self._receive_status()
                for h in self.handles:
                    if h.state == "running" and not h.proc.is_alive():
                        h.proc.join()
                        self._receive_status()
                        self._on_exit(h, now)
                    elif h.state == "running" and self._all_finished(h):
                        h.state = "finished"  # it stays up, serving what downstream still reads, until shutdown
                    elif h.state == "running" and now - h.last_heartbeat > HEARTBEAT_TIMEOUT_S:
                        log.warning("%s: no heartbeat for %.0fs, killing it", h.label, HEARTBEAT_TIMEOUT_S)
                        h.proc.kill()
                    elif h.state == "waiting" and now >= h.restart_at:
                        self._start(h)
                self.view.update(self.handles, now - started)
                if any(h.state == "failed" for h in self.handles):
                    outcome = "failed"
                    break
                if all(h.state == "finished" for h in self.handles):
                    break
                if self._signal is not None:
                    outcome = "interrupted" if self._signal == signal.SIGINT else "stopped"
                    break
                if self.duration is not None and now - started >= self.duration:
                    outcome = "stopped"
                    break
                time.sleep(0.05)
        finally:
            self._shutdown()
            for s, handler in old.items():
                signal.signal(s, handler)
        elapsed = time.monotonic() - started
        code = {"completed": 0, "stopped": 0, "failed": 1, "interrupted": 130}[outcome]
        report = self.last_report = self.report(outcome, code, elapsed)
        self.view.close(report)
        if self.report_path is not None:
            self.report_path.parent.mkdir(parents=True, exist_ok=True)
            self.report_path.write_text(json.dumps(report, indent=2))
        return code

    def _shutdown(self) -> None:
        live = [h for h in self.handles if h.proc is not None and h.proc.is_alive()]
        for h in live:
            h.proc.terminate()
        deadline = time.monotonic() + GRACE_S
        for h in live:
            h.proc.join(max(0.0, deadline - time.monotonic()))
            if h.proc.is_alive():
                h.proc.kill()
                h.proc.join()
        self._receive_status()  # the final heartbeats, with the final counts
        _stop_resource_tracker()
        self.status_sock.close(linger=0)
        self.zctx.term()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        shutil.rmtree(self.ring_dir, ignore_errors=True)

    def report(self, outcome: str, code: int, elapsed: float) -> dict[str, Any]:
        nodes = {}
        for h in self.handles:
            for n in h.nodes:
                s = h.node_status.get(n, {})
                nodes[n] = {"kind": self.graph.nodes[n].kind, "in_process": h.label, "state": s.get("state", h.state),
                            "restarts": h.restarts, "error": s.get("error") or h.error, **s.get("metrics", {})}
        return {"graph": self.graph.name, "file": str(self.graph.path), "host": self.host, "outcome": outcome,
                "exit_code": code, "duration_s": round(elapsed, 3), "nodes": nodes}
