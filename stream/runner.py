"""Inside a node process: run its node(s), one thread each, and report to the supervisor.

The supervisor starts `stream.boot`, which hands `process_main` a JSON `ProcessConfig`. The
process loads the graph itself (so nothing but JSON crosses the process boundary), wires its
ports, runs each node in a thread and, from the main thread, sends a heartbeat with every
node's state, metrics and the newest seq each input accepted a few times a second, and
passes the supervisor's replay requests (a control socket) to its output ports. SIGTERM stops it cleanly (nodes' `close()`
runs); SIGINT is left to the supervisor, which turns Ctrl-C into SIGTERM for all.

Exit codes: 0 finished or stopped, 1 crashed (the supervisor may restart it),
3 fatal (a `NodeError`, e.g. a missing file, or a peer host that did not come within its
`peer_wait`: restarting cannot help). The main thread also watches the nodes' cross-host
edges (`stream.transport.PeerWatch`) and puts whom a node waits for in its state.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zmq

from stream.graph import GraphSpec, NodeSpec, load_graph
from stream.logs import configure_logging
from stream.message import Message
from stream.metrics import NodeMetrics
from stream.security import stop_authenticators
from stream.node import Node, NodeError, Source
from stream.transport import EdgeWire, InputPort, OutputPort, PeerWatch, plan_wires, replay_window
from stream.wire import unpack_bounded

log = logging.getLogger(__name__)

EXIT_OK, EXIT_CRASH, EXIT_FATAL = 0, 1, 3
HEARTBEAT_S = 0.25
_POLL_MS = 50


@dataclass
class ProcessConfig:
    """What a node process needs to know; JSON on the way in."""

    label: str                     # the process's name: its node, or its group
    graph_path: str
    overrides: dict[str, dict[str, Any]]
    nodes: list[str]
    run_dir: str
    ring_dir: str
    status_endpoint: str
    resume: dict[str, int] = field(default_factory=dict)  # source node -> first seq to emit (after a restart)
    incarnation: int = 0
    edge_key: str = ""             # hex: the run's secret that authenticates messages between its processes
    control_endpoint: str = ""     # where the supervisor sends replay requests to this process
    cpu_threads: int = 0           # torch/OpenMP threads of this process (0: the libraries' default)
    log_level: int = logging.INFO  # the launcher's --log-level

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> "ProcessConfig":
        return ProcessConfig(**json.loads(text))


def _time(msg: Message) -> float:
    return msg.pts if msg.pts is not None else msg.capture_ts


class NodeRunner:
    """Runs one node: the loop, the joins, the metrics; and is the node's `NodeContext`."""

    def __init__(self, spec: NodeSpec, graph: GraphSpec, wires: dict, cfg: ProcessConfig, zctx: zmq.Context,
                 stop: threading.Event):
        self.name, self.device, self.spec = spec.name, spec.device, spec
        self.metrics = NodeMetrics()
        self.state, self.error = "starting", ""
        self._stop = stop
        self._resume = cfg.resume.get(spec.name, 0)
        ring_dir = Path(cfg.ring_dir)
        mine_out: dict[str, list[EdgeWire]] = {}
        mine_in: dict[str, EdgeWire] = {}
        for e, w in wires.items():
            if e.src == spec.name:
                mine_out.setdefault(e.src_port, []).append(w)
            if e.dst == spec.name:
                mine_in[e.dst_port] = w
        key = bytes.fromhex(cfg.edge_key) if cfg.edge_key else None
        self.inputs = {p: InputPort(self.name, p, w, spec.cls.inputs[p], zctx, ring_dir, graph.keys_dir, self.metrics,
                                    cfg.incarnation > 0, key) for p, w in mine_in.items()}
        window = replay_window(wires.values())
        self.outputs = {p: OutputPort(self.name, p, ws, zctx, ring_dir, graph.keys_dir, self.metrics, self.stopping, key,
                                      window) for p, ws in mine_out.items()}
        self._latest: dict[str, Message] = {}
        links = [link for port in [*self.inputs.values(), *self.outputs.values()] for link in port.peers]
        self.peers = PeerWatch(self.name, links, graph.hosts[spec.host].peer_wait,
                               f"hosts.{spec.host}.peer_wait") if links else None
        self.gave_up = ""  # why the node stopped waiting for a peer host: the process ends as fatal
        self.node: Node = spec.cls(spec.params, self)

    # -- NodeContext -------------------------------------------------------------------------
    def emit(self, port: str, msg: Message) -> None:
        if port not in self.spec.cls.outputs:
            raise ValueError(f"node {self.name}: no output port {port!r}")
        out = self.outputs.get(port)
        if out is not None:
            out.emit(msg)
        self.metrics.frames_out += 1

    def allocate(self, port: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        out = self.outputs.get(port)
        return out.allocate(tuple(shape), dtype) if out is not None else np.empty(shape, dtype)

    def stopping(self) -> bool:
        return self._stop.is_set()

    def connected(self, port: str) -> bool:
        return port in self.inputs or port in self.outputs

    # -- loop ---------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self.node.setup()
            self.state = "running"
            finished = self._run_source() if isinstance(self.node, Source) else self._run_inputs()
            self.node.finish()  # also when stopped on request: a live recording still gets a complete file
            if finished:
                for out in self.outputs.values():
                    out.emit(Message.end_of_stream(self.metrics.last_seq + 1))
                self._drain()
            self.state = "finished" if finished else "stopped"
        except NodeError as exc:
            self.state, self.error = "fatal", str(exc)
            log.error("%s", exc, extra={"node": self.name})
            self._stop.set()
        except Exception as exc:  # a crash: report it, the supervisor decides about a restart
            self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
            log.error("crashed:\n%s", traceback.format_exc(), extra={"node": self.name})
            self._stop.set()
        finally:
            try:
                self.node.close()
            except Exception:
                log.error("close() failed:\n%s", traceback.format_exc(), extra={"node": self.name})
            # The sockets stay open until the process ends: closing them now would drop what
            # downstream has not read yet (the last frames, end-of-stream).

    def _run_source(self) -> bool:
        node: Source = self.node  # type: ignore[assignment]
        total = node.length()
        self.metrics.total = total
        if self._resume:
            node.skip_to(self._resume)
        outputs = list(self.spec.cls.outputs)
        seq = self._resume
        frames = iter(node.frames())
        while not self.stopping():
            t0 = time.perf_counter()
            item = next(frames, None)
            if item is None:
                return True
            self.metrics.process.add(time.perf_counter() - t0)
            for port, msg in (item if isinstance(item, dict) else {outputs[0]: item}).items():
                msg.seq = seq
                self.emit(port, msg)
            self.metrics.last_seq = seq
            seq += 1
        return False

    def _run_inputs(self) -> bool:
        poller = zmq.Poller()
        while not self.stopping():
            self.serve_outputs()
            for port in self.inputs.values():
                port.fill()
            self.metrics.queue_depth = sum(len(p.pending) for p in self.inputs.values())
            batch = self._next_batch()
            if batch is not None:
                self._process(batch)
            elif self._exhausted():
                return True
            else:  # wait for the inputs that can take more (a replay request is served within _POLL_MS)
                for port in self.inputs.values():
                    poller.register(port.poll_socket, zmq.POLLIN if port.hungry else 0)  # 0: unregistered
                poller.poll(_POLL_MS)
        return False

    def _drain(self) -> None:
        """After the end, keep reading (and discarding) until every input ended: a producer
        still blocked on a full `block` edge into this node would otherwise never finish."""
        poller = zmq.Poller()
        for port in self.inputs.values():
            poller.register(port.poll_socket, zmq.POLLIN)
        while not self.stopping() and not all(p.eos for p in self.inputs.values()):
            self.serve_outputs()
            for port in self.inputs.values():
                port.fill()
                if port.pending:
                    self.metrics.extra["discarded_after_end"] = self.metrics.extra.get("discarded_after_end", 0) + len(port.pending)
                    port.pending.clear()
            poller.poll(_POLL_MS)

    def _exhausted(self) -> bool:
        ports = self.inputs.values()
        if not ports:
            return True
        join = self.spec.join
        if join == "any":
            return all(p.exhausted for p in ports)
        if join == "latest" or len(self.inputs) == 1:
            return self._primary().exhausted
        if join == "pts":  # an input that ended keeps lending its last message
            return self._primary().exhausted or any(p.exhausted and n not in self._latest for n, p in self.inputs.items())
        return any(p.exhausted for p in ports)  # seq join: nothing more can match

    def _primary(self) -> InputPort:
        return next(self.inputs[p] for p in self.spec.cls.inputs if p in self.inputs)

    def _next_batch(self) -> dict[str, Message] | None:
        if len(self.inputs) == 1:
            (name, port), = self.inputs.items()
            return {name: port.pop()} if port.pending else None
        if self.spec.join == "any":
            oldest = min((p for p in self.inputs.values() if p.pending), key=lambda p: p.pending[0].capture_ts, default=None)
            return {oldest.name: oldest.pop()} if oldest is not None else None
        if self.spec.join == "latest":
            return self._join_latest()
        if self.spec.join == "pts":
            return self._join_pts()
        return self._join_seq()

    def _join_seq(self) -> dict[str, Message] | None:
        """Pair inputs by sequence number; heads older than the newest head can never match."""
        while all(p.pending for p in self.inputs.values()):
            newest = max(p.pending[0].seq for p in self.inputs.values())
            if all(p.pending[0].seq == newest for p in self.inputs.values()):
                return {name: p.pop() for name, p in self.inputs.items()}
            for p in self.inputs.values():
                while p.pending and p.pending[0].seq < newest:
                    p.pop()
                    self.metrics.extra["join_dropped"] = self.metrics.extra.get("join_dropped", 0) + 1
        return None

    def _join_latest(self) -> dict[str, Message] | None:
        """Run on each arrival at the first input, with the newest message seen on each other input."""
        primary = self._primary()
        for name, p in self.inputs.items():
            if p is not primary:
                while p.pending:
                    self._latest[name] = p.pop()
        if not primary.pending:
            return None
        batch = {primary.name: primary.pop()}
        for name in self.inputs:
            if name != primary.name:
                if name not in self._latest:
                    self.metrics.drops += 1  # nothing to pair with yet
                    return None
                batch[name] = self._latest[name]
        return batch

    def _join_pts(self) -> dict[str, Message] | None:
        """Run on each arrival at the first input with, on each other input, the message nearest in time
        (media time, or capture time where a source has none); wait while a nearer one may still come."""
        primary = self._primary()
        if not primary.pending:
            return None
        t = _time(primary.pending[0])
        batch = {}
        for name, p in self.inputs.items():
            if p is primary:
                continue
            while len(p.pending) >= 2 and _time(p.pending[1]) <= t:  # superseded: a later one is still <= t
                p.pop()
                self.metrics.extra["join_dropped"] = self.metrics.extra.get("join_dropped", 0) + 1
            if p.pending and (_time(p.pending[0]) >= t or len(p.pending) >= 2 or p.eos):
                self._latest[name] = min(list(p.pending)[:2], key=lambda m: abs(_time(m) - t))
            elif not (p.exhausted and name in self._latest):
                return None  # nothing yet, or only older messages while a nearer one may still arrive
            batch[name] = self._latest[name]
        batch[primary.name] = primary.pop()
        return batch

    def _process(self, batch: dict[str, Message]) -> None:
        now = time.time()
        self.metrics.latency.add(now - min(m.capture_ts for m in batch.values()))
        t0 = time.perf_counter()
        self.node.process(batch)
        self.metrics.process.add(time.perf_counter() - t0)
        self.metrics.frames_in += 1
        self.metrics.last_seq = max(m.seq for m in batch.values())

    def serve_outputs(self) -> bool:
        """Replays asked for and sends still waiting, without blocking; True when nothing waits."""
        return all([out.serve() for out in self.outputs.values()])

    def request_replay(self, dst: str, dst_port: str, from_seq: int) -> None:
        for out in self.outputs.values():
            out.request_replay(dst, dst_port, from_seq)

    def close_inputs(self) -> None:
        """Stop the inputs' receiver threads: the last step before the process closes its sockets."""
        for port in self.inputs.values():
            port.close()

    def check_peers(self) -> None:
        """(main thread) Whom the node waits for on its cross-host edges; past the host's peer_wait, give up:
        a run whose peer never came, or went for good, has failed (restarting this node cannot bring it)."""
        reason = self.peers.check(self.metrics) if self.peers is not None and not self.gave_up else None
        if reason:
            self.gave_up = reason
            log.error("%s", reason, extra={"node": self.name})
            self._stop.set()

    def status(self) -> dict[str, Any]:
        state, error = ("fatal", self.gave_up) if self.gave_up else (self.state, self.error)
        return {"state": state, "error": error, "metrics": self.metrics.snapshot(),
                "accepted": {p: port.accepted for p, port in self.inputs.items()},
                "peer_lost": self.gave_up or None,
                "peer_never_came": self.peers.never_came() if self.peers is not None else None}


def _set_process_name(label: str) -> None:
    """Linux: show as ns:<label> in ps/top (the supervisor's death already kills us: `stream.boot`)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(15, f"ns:{label}"[:15].encode())  # PR_SET_NAME
        except OSError:
            pass


def _limit_cpu_threads(n: int) -> None:
    """Cap the process's OpenMP/torch thread pool at its share of the host's cores, unless the user's
    environment already says (OMP_NUM_THREADS). A node's own `threads` parameter still wins.

    Its threads also sleep when they wait (OMP_WAIT_POLICY=PASSIVE, unless the environment says): by default
    OpenMP spins at every barrier, and processes that spin beside each other (and beside other jobs) burn
    the cores the others need. avatar_rerender on 90 frames with the machine's load at 12 on 2 cores:
    124 s of CPU and 206 s wall spinning (avatar 61 s, composite 49 s), 18 s and 47 s passive."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when the OpenMP runtime loads (torch's import)
    if n <= 0 or "OMP_NUM_THREADS" in os.environ:
        return
    os.environ["OMP_NUM_THREADS"] = str(n)  # read by torch/MKL/OpenMP when they load
    if "torch" in sys.modules:  # already loaded (by the spawn preparation): tell it directly
        sys.modules["torch"].set_num_threads(n)


def _dispatch(control: zmq.Socket, runners: list[NodeRunner]) -> None:
    """Hand the supervisor's replay requests to the output ports they concern."""
    while True:
        try:
            body = unpack_bounded(control.recv(zmq.NOBLOCK), 1 << 16)
        except zmq.Again:
            return
        except ValueError:
            continue
        for dst, dst_port, from_seq in body.get("replay", []) if isinstance(body, dict) else []:
            for r in runners:
                r.request_replay(dst, dst_port, from_seq)


def _exit(zctx: zmq.Context, code: int) -> None:
    """Every way out of a node process: close the sockets without lingering, skip interpreter teardown
    (library threads of torch or mediapipe can hang it, as can a socket a failed start-up left open)."""
    stop_authenticators()
    zctx.destroy(linger=0)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def process_main(config_json: str) -> None:
    """Entry point of a node process (started by the supervisor through `stream.boot`)."""
    cfg = ProcessConfig.from_json(config_json)
    configure_logging(cfg.log_level, cfg.label)
    _set_process_name(cfg.label)
    _limit_cpu_threads(cfg.cpu_threads)
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    zctx = zmq.Context()
    status = zctx.socket(zmq.PUSH)
    status.setsockopt(zmq.LINGER, 2000)
    status.connect(cfg.status_endpoint)
    label = cfg.label

    def report(runners: list[NodeRunner], extra: dict[str, Any] | None = None) -> None:
        body = {"proc": label, "pid": os.getpid(), "incarnation": cfg.incarnation, "cpu_s": time.process_time(),
                "nodes": {r.name: r.status() for r in runners}, **(extra or {})}
        status.send(msgpack.packb(body, use_bin_type=True))

    try:
        graph = load_graph(cfg.graph_path, cfg.overrides)
        wires = plan_wires(graph, Path(cfg.run_dir))
        control = zctx.socket(zmq.PULL)
        control.setsockopt(zmq.LINGER, 0)
        control.bind(cfg.control_endpoint)
        runners = [NodeRunner(graph.nodes[n], graph, wires, cfg, zctx, stop) for n in cfg.nodes]
    except Exception as exc:
        log.error("cannot start: %s", exc)
        report([], {"fatal": str(exc)})
        status.close(linger=2000)  # the one message that says why, then out
        _exit(zctx, EXIT_FATAL)

    threads = [threading.Thread(target=r.run, name=r.name, daemon=True) for r in runners]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for r in runners:
            r.check_peers()
        report(runners)
        _dispatch(control, runners)
        for t in threads:
            t.join(HEARTBEAT_S / len(threads))
    # A finished process stays up (its sockets open) until the supervisor ends the job:
    # ZeroMQ drops what a peer has not read yet once the sending process goes away. Its
    # node threads are done, so this thread owns the output sockets now and serves replays.
    while not stop.is_set() and all(r.state == "finished" for r in runners):
        report(runners)
        _dispatch(control, runners)
        idle = all([r.serve_outputs() for r in runners])
        stop.wait(HEARTBEAT_S if idle else _POLL_MS / 1e3)
    report(runners)
    for r in runners:
        r.close_inputs()
    status.close()
    states = {r.status()["state"] for r in runners}
    _exit(zctx, EXIT_FATAL if "fatal" in states else EXIT_CRASH if "failed" in states else EXIT_OK)
