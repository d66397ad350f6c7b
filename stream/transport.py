"""Edges made real: ZeroMQ PUSH/PULL sockets, shared-memory rings, and the two edge policies.

How an edge is carried depends on where its two nodes run (`plan_wires`):
- same process (a `group:`): `inproc`, the Message object itself is handed over, so
  tensors stay where they are (GPU included);
- same host: `ipc` sockets carrying headers, large buffers in the producer's shm ring;
- different hosts: `tcp` with CurveZMQ, buffers inline.

Policies:
- block: bounded queue (ZeroMQ high-water marks plus the ring), the producer waits;
  nothing is dropped, order is kept.
- latest: the producer never waits (a full queue drops the message, counted); the
  consumer drains everything waiting and keeps only the newest, counting the rest,
  and never delivers a message older than one it already delivered.
End-of-stream markers are never dropped, whatever the policy.
"""
from __future__ import annotations

import collections
import itertools
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import zmq

from stream.graph import EdgeSpec, GraphSpec
from stream.message import Message
from stream.metrics import NodeMetrics
from stream.security import curve_client, curve_server
from stream.shm import ShmReader, ShmRing, StaleError, lease_of
from stream.wire import Limits, WireError, decode, encode, wire_array

#: Buffers smaller than this travel inline even on ipc edges (a slot costs more than the copy).
SHM_MIN_BYTES = 64 * 1024
_POLL_MS = 50


@dataclass(frozen=True)
class EdgeWire:
    """How one edge is carried."""

    edge: EdgeSpec
    transport: Literal["inproc", "ipc", "tcp"]
    connect: str           # endpoint the producer connects to
    bind: str              # endpoint the consumer binds
    ring: str | None = None  # producer's shm ring (ipc)
    column: int = 0          # this consumer's column in that ring
    server_host: str = ""    # tcp: consumer's host (CurveZMQ server)
    client_host: str = ""    # tcp: producer's host


def plan_wires(graph: GraphSpec, run_dir: Path) -> dict[EdgeSpec, EdgeWire]:
    """Deterministic wiring, so every process computes the same plan from the same graph."""
    wires: dict[EdgeSpec, EdgeWire] = {}
    columns: dict[tuple[str, str], itertools.count] = collections.defaultdict(itertools.count)
    tcp_ports: dict[str, itertools.count] = collections.defaultdict(itertools.count)
    for e in graph.edges:
        src, dst = graph.nodes[e.src], graph.nodes[e.dst]
        if src.host != dst.host:
            host = graph.hosts[dst.host]
            port = host.port_base + next(tcp_ports[dst.host])
            wires[e] = EdgeWire(e, "tcp", f"tcp://{host.address}:{port}", f"tcp://{host.bind}:{port}",
                                server_host=dst.host, client_host=src.host)
        elif src.group is not None and src.group == dst.group:
            endpoint = f"inproc://{e.dst}.{e.dst_port}"
            wires[e] = EdgeWire(e, "inproc", endpoint, endpoint)
        else:
            endpoint = f"ipc://{run_dir}/{e.dst}.{e.dst_port}"
            wires[e] = EdgeWire(e, "ipc", endpoint, endpoint, ring=f"{e.src}.{e.src_port}",
                                column=next(columns[(e.src, e.src_port)]))
    return wires


class LocalObjects:
    """Messages handed between threads of one process: only a key crosses the inproc socket."""

    def __init__(self) -> None:
        self._items: dict[int, Message] = {}
        self._keys = itertools.count()
        self._lock = threading.Lock()

    def put(self, msg: Message) -> bytes:
        with self._lock:
            key = next(self._keys)
            self._items[key] = msg
        return b"obj" + key.to_bytes(8, "little")

    def take(self, frame: bytes) -> Message:
        if len(frame) != 11 or frame[:3] != b"obj":
            raise WireError("malformed in-process reference")
        with self._lock:
            msg = self._items.pop(int.from_bytes(frame[3:], "little"), None)
        if msg is None:
            raise WireError("unknown in-process reference")
        return msg


LOCAL = LocalObjects()


def _log(node: str, text: str) -> None:
    print(f"[{node}] {text}", file=sys.stderr, flush=True)


class OutputPort:
    """One output port: its outgoing edges and, when some are ipc, its shared-memory ring."""

    def __init__(self, node: str, name: str, wires: list[EdgeWire], zctx: zmq.Context, ring_dir: Path,
                 keys_dir: Path | None, metrics: NodeMetrics, stopping: Callable[[], bool]):
        self.node, self.name, self.wires = node, name, wires
        self.metrics, self.stopping = metrics, stopping
        self.ring_dir = ring_dir
        self.ring: ShmRing | None = None
        self.ring_columns = sum(1 for w in wires if w.transport == "ipc")
        self.sockets = []
        for w in wires:
            sock = zctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, w.edge.depth if w.edge.policy == "block" else 1)
            if w.transport == "tcp":
                curve_client(sock, keys_dir, w.client_host, w.server_host)
            sock.connect(w.connect)
            self.sockets.append(sock)

    def _ring_for(self, nbytes: int) -> ShmRing | None:
        if self.ring_columns == 0:
            return None
        if self.ring is None:
            depth = max(w.edge.depth for w in self.wires if w.transport == "ipc")
            self.ring = ShmRing(self.ring_dir / f"{self.node}.{self.name}", nbytes, 2 * depth + 4, self.ring_columns)
        return self.ring if nbytes <= self.ring.slot_bytes else None

    def allocate(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        ring = self._ring_for(nbytes) if nbytes >= SHM_MIN_BYTES else None
        lease = ring.acquire(timeout=0.5) if ring is not None else None
        if lease is None:
            return np.empty(shape, dtype)
        return np.asarray(lease)[:nbytes].view(dtype).reshape(shape)

    def _send(self, sock: zmq.Socket, frames: list[Any], wait: bool) -> bool:
        """Send without blocking forever: `wait` retries until sent or the node is stopping."""
        while True:
            try:
                sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                return True
            except zmq.Again:
                if not wait or self.stopping():
                    return False
                sock.poll(_POLL_MS, zmq.POLLOUT)

    def _shm_placement(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """name -> lease for the buffers that go by shared memory (copied into a slot unless already in one)."""
        leases: dict[str, Any] = {}
        for name, arr in arrays.items():
            if arr.nbytes < SHM_MIN_BYTES or (ring := self._ring_for(arr.nbytes)) is None:
                continue
            lease = lease_of(arr)
            if lease is None or lease.ring is not ring:
                lease = ring.acquire(timeout=0.5)
                if lease is None:  # consumers hold every slot: travel inline instead (a copy, no loss)
                    self.metrics.extra["shm_full"] = self.metrics.extra.get("shm_full", 0) + 1
                    continue
                np.copyto(np.asarray(lease)[:arr.nbytes].view(arr.dtype).reshape(arr.shape), arr)
            leases[name] = lease
        return leases

    def emit(self, msg: Message) -> None:
        arrays = leases = None
        for w, sock in zip(self.wires, self.sockets):
            wait = w.edge.policy == "block" or msg.eos
            if w.transport == "inproc":
                sent = self._send(sock, [LOCAL.put(msg)], wait)
            else:
                if arrays is None:
                    arrays = {n: wire_array(v) for n, v in msg.buffers.items()}
                    leases = self._shm_placement(arrays) if self.ring_columns else {}
                refs = {n: self.ring.publish(lease, w.column) for n, lease in leases.items()} if w.transport == "ipc" else {}
                sent = self._send(sock, encode(msg, arrays, refs), wait)
                if not sent:
                    for ref in refs.values():
                        self.ring.retract(ref)
            if not sent and not self.stopping():
                self.metrics.drops += 1


class InputPort:
    """One input port: a bound PULL socket feeding a local queue under the edge's policy.

    A `latest` edge is read by a receiver thread of its own, continuously: while the node is busy in
    `process()`, newer messages replace older ones as they arrive, so nothing stale piles up in
    ZeroMQ's queues or the kernel's socket buffers (hundreds of keypoint-sized messages fit there)
    and the node always gets the newest. The thread wakes the node's loop through an inproc socket,
    `poll_socket`; a `block` edge is read by the node's loop itself, `depth` at a time.
    """

    def __init__(self, node: str, name: str, wire: EdgeWire, zctx: zmq.Context, ring_dir: Path,
                 keys_dir: Path | None, metrics: NodeMetrics, restarted: bool, limits: Limits = Limits()):
        self.node, self.name, self.wire, self.metrics, self.limits = node, name, wire, metrics, limits
        self.policy, self.depth = wire.edge.policy, wire.edge.depth
        self.pending: collections.deque[Message] = collections.deque()
        self.eos = False
        self.last_seq = -1
        self.reader = ShmReader(ring_dir, {wire.ring: wire.column}) if wire.ring else None
        if self.reader is not None and restarted:
            self.reader.reset()
        self.socket = zctx.socket(zmq.PULL)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVHWM, self.depth if self.policy == "block" else 2)
        if wire.transport == "tcp":
            curve_server(self.socket, keys_dir, wire.server_host)
        self.socket.bind(wire.bind)
        self._lock = threading.Lock()
        self._tally: collections.Counter[str] = collections.Counter()  # counts not yet added to metrics
        self._rejected_total = 0
        self.poll_socket = self.socket
        self._receiver: threading.Thread | None = None
        if self.policy == "latest":
            self._newest: Message | None = None
            self._newest_eos = False
            self._closing = threading.Event()
            wake = f"inproc://wake-{node}.{name}"
            self.poll_socket = zctx.socket(zmq.PULL)
            self.poll_socket.setsockopt(zmq.LINGER, 0)
            self.poll_socket.bind(wake)
            self._receiver = threading.Thread(target=self._receive_latest, args=(zctx, wake), daemon=True,
                                              name=f"{node}.{name}:recv")
            self._receiver.start()

    def _decode(self, frames: list[Any]) -> Message | None:
        if self.wire.transport == "tcp":
            self._tally["net_bytes_in"] += sum(len(f) for f in frames)
        try:
            if self.wire.transport == "inproc":
                return LOCAL.take(frames[0].bytes if len(frames) == 1 else b"")
            return decode(frames, self.limits, self.reader.resolve if self.reader else None)
        except StaleError:
            self._tally["drops"] += 1
            return None
        except WireError as exc:
            self._tally["rejected"] += 1
            self._rejected_total += 1
            if self._rejected_total <= 5 or self._rejected_total % 1000 == 0:
                _log(self.node, f"input {self.name}: rejected message #{self._rejected_total}: {exc}")
            return None

    def _receive_latest(self, zctx: zmq.Context, wake: str) -> None:
        """The receiver thread of a `latest` edge: owns the data socket from here on."""
        notify = zctx.socket(zmq.PUSH)
        notify.setsockopt(zmq.LINGER, 0)
        notify.setsockopt(zmq.SNDHWM, 1)
        notify.connect(wake)
        try:
            while not self._closing.is_set() and not self._newest_eos:
                if not self.socket.poll(_POLL_MS):
                    continue
                while True:
                    try:
                        frames = self.socket.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    with self._lock:
                        msg = self._decode(frames)
                        if msg is not None:
                            self._hold_newest(msg)
                try:
                    notify.send(b"", flags=zmq.NOBLOCK)
                except zmq.Again:  # a wake-up is already waiting
                    pass
        finally:
            notify.close()

    def _hold_newest(self, msg: Message) -> None:
        """(receiver thread, under the lock) Keep `msg` if it is newer than everything held or delivered."""
        if msg.eos:
            self._newest_eos = True
            return
        held = self._newest.seq if self._newest is not None else -1
        if msg.seq <= max(held, self.last_seq):  # never go backwards
            self._tally["drops"] += 1
            return
        if self._newest is not None:
            self._tally["drops"] += 1
        self._newest = msg

    def _accept(self, msg: Message) -> None:
        if msg.eos:
            self.eos = True
            return
        self.pending.append(msg)

    def fill(self) -> None:
        """Take what has arrived: up to `depth` messages for block; for latest, the newest (replacing an undelivered one)."""
        if self._receiver is not None:
            while True:
                try:
                    self.poll_socket.recv(flags=zmq.NOBLOCK)
                except zmq.Again:
                    break
            with self._lock:
                if self._newest is not None:
                    self._tally["drops"] += len(self.pending)
                    self.pending.clear()
                    self.pending.append(self._newest)
                    self._newest = None
                self.eos = self._newest_eos
        else:
            while not self.eos and len(self.pending) < self.depth:
                try:
                    frames = self.socket.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                msg = self._decode(frames)
                if msg is not None:
                    self._accept(msg)
        with self._lock:
            for counter, n in self._tally.items():
                setattr(self.metrics, counter, getattr(self.metrics, counter) + n)
            self._tally.clear()

    def close(self) -> None:
        """Stop the receiver thread (before the process closes the ZeroMQ context)."""
        if self._receiver is not None:
            self._closing.set()
            self._receiver.join(timeout=2 * _POLL_MS / 1e3 + 1)

    def pop(self) -> Message:
        msg = self.pending.popleft()
        self.last_seq = max(self.last_seq, msg.seq)
        return msg

    @property
    def exhausted(self) -> bool:
        return self.eos and not self.pending
