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

Peers: every tcp socket is watched (`PeerLink`: ZeroMQ's socket monitor, CurveZMQ handshakes and
disconnects, ZMTP heartbeats for a host that vanishes without closing its connections), so a node
knows whether the other host of each of its cross-host edges is there; `PeerWatch` turns that into
what the node shows while it waits and the reason it gives up after its host's `peer_wait` seconds.
"""
from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

import numpy as np
import zmq
from zmq.utils.monitor import parse_monitor_message

from stream.graph import EdgeSpec, GraphSpec
from stream.keypoints import keypoint_problem
from stream.message import Message
from stream.metrics import NodeMetrics
from stream.node import Port
from stream.security import curve_client, curve_server, curve_user_id
from stream.shm import ShmReader, ShmRing, StaleError, lease_of
from stream.wire import AuthError, Limits, ShmRef, WireError, decode, encode, wire_array

log = logging.getLogger(__name__)

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
    client_address: str = ""  # tcp: where the producer's host is (its hosts: address), for what a waiting consumer says


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
                                server_host=dst.host, client_host=src.host,
                                client_address=graph.hosts[src.host].address)
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


#: ZMTP heartbeats on tcp edges: a peer host that vanishes without closing its connections (power, network)
#: counts as gone after HEARTBEAT_TIMEOUT_MS.
HEARTBEAT_IVL_MS, HEARTBEAT_TIMEOUT_MS = 1000, 3000
_HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                     zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
_PEER_EVENTS = (zmq.EVENT_ACCEPTED | zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
                | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class PeerLink:
    """Whether the other host of one tcp edge is there: some connection of this socket completed its
    CurveZMQ handshake and has not closed since (ZeroMQ's socket monitor).

    Made and read by the process's main thread (the monitor is a socket of its own; the data socket
    stays its node's). libzmq reports a handshake's result without the connection's descriptor, so
    it is given to the oldest connection still waiting for one: only peers connecting at the same
    instant could be told apart wrongly."""

    def __init__(self, wire: EdgeWire, sock: zmq.Socket, server: bool):
        self.wire = wire
        if server:  # the consumer: the producer's host connects to what it binds
            self.host, self.where = wire.client_host, f"{wire.client_address} -> {wire.bind}"
        else:
            self.host, self.where = wire.server_host, wire.connect
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        self.monitor = sock.get_monitor_socket(_PEER_EVENTS)  # before bind/connect: no event missed
        self._handshaking: list[int] = []
        self._live: set[int] = set()
        self.seen = False          # a handshake ever succeeded
        self.refused = 0           # handshakes that failed (a wrong CurveZMQ key, another protocol)
        self.absent_since: float | None = time.monotonic()
        self.announced = False     # the wait that began at absent_since has been logged

    @property
    def present(self) -> bool:
        return bool(self._live)

    def poll(self) -> bool:
        """Take the monitor's news without waiting; True when the peer came or went."""
        before = self.present
        while True:
            try:
                event = parse_monitor_message(self.monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                break
            kind, value = event["event"], event["value"]
            if kind in (zmq.EVENT_ACCEPTED, zmq.EVENT_CONNECTED):
                self._handshaking.append(value)
            elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED and self._handshaking:
                self._live.add(self._handshaking.pop(0))
                self.seen = True
            elif kind in _HANDSHAKE_FAILED and self._handshaking:
                self._handshaking.pop(0)
                self.refused += 1
            elif kind == zmq.EVENT_DISCONNECTED:
                self._live.discard(value)
                if value in self._handshaking:
                    self._handshaking.remove(value)
        changed = self.present != before
        if changed:
            self.absent_since, self.announced = (None, False) if self.present else (time.monotonic(), False)
        return changed

    def describe(self) -> str:
        return f"host {self.host!r} at {self.where} (edge {self.wire.edge})"


class PeerWatch:
    """A node's cross-host edges as its process sees them: whom it waits for, and when it stops waiting.

    A peer host that has not connected yet, or whose connections all closed, is waited for up to
    `wait_s` (the waiting host's `peer_wait`). Meanwhile the node's state (the live status line) says
    for whom and where, a log line says so when a wait begins and when the peer comes; `check`
    returns the reason to give up once a wait has lasted longer. A state the node set itself
    ("compiling") is left alone."""

    def __init__(self, node: str, links: list[PeerLink], wait_s: float, setting: str):
        self.node, self.links, self.wait_s, self.setting = node, links, wait_s, setting
        self._shown: str | None = None

    def check(self, metrics: NodeMetrics) -> str | None:
        """Update what the node shows; the reason to give up, or None."""
        now = time.monotonic()
        for link in self.links:
            if link.poll() and link.present:
                log.info("%s connected", link.describe(), extra={"node": self.node})
            if not link.present and not link.announced:
                link.announced = True
                log.warning("%s %s: waiting up to %g s%s (%s)", "lost" if link.seen else "waiting for",
                            link.describe(), self.wait_s, " for it to return" if link.seen else "", self.setting,
                            extra={"node": self.node})
        absent = [link for link in self.links if not link.present]
        text = None
        if absent:
            link = absent[0]
            text = f"waiting for host {link.host!r} at {link.where}: {now - link.absent_since:.0f}/{self.wait_s:g} s"
        if metrics.state is None or metrics.state == self._shown:
            metrics.state = self._shown = text
        for link in absent:
            if now - link.absent_since > self.wait_s:
                return self._reason(link, f"within {self.wait_s:g} s ({self.setting})")
        return None

    def never_came(self) -> str | None:
        """Why the node did no work with its peers, when one of them never connected (for a run stopped early)."""
        link = next((link for link in self.links if not link.seen), None)
        return None if link is None else self._reason(link, "")

    def _reason(self, link: PeerLink, limit: str) -> str:
        what = "went away and did not return" if link.seen else "never connected"
        refused = f"; {link.refused} connection(s) failed the CurveZMQ handshake (wrong keys?)" if link.refused else ""
        return f"{link.describe()} {what}{' ' + limit if limit else ''}{refused}"


#: A replay keeps at most this many messages per edge (the ring's in-flight share bounds those in shared memory).
REPLAY_MAX = 1024
REPLAY_MAX_BYTES = 32 * 1024 * 1024
#: A sequence number may run ahead of the last one an input accepted by at most this much (9.7 hours at
#: 30 fps): a forged or buggy 2**62 would otherwise make every later message look old.
MAX_SEQ_STEP = 1 << 20


def in_flight(depth: int) -> int:
    """Shared-memory frames a consumer of a `depth` edge may hold at once (queues on both ends, its backlog)."""
    return 2 * depth + 4


def replay_window(wires: Iterable[EdgeWire]) -> int:
    """Frames a producer keeps per replayable edge: what may be in flight to its consumer, plus what that
    consumer may have passed on that had not reached the next one when it died (a hop of the graph's
    deepest block edge). A resume point older than this fails the job instead of losing frames."""
    deepest = max((w.edge.depth for w in wires if w.edge.policy == "block"), default=1)
    return 2 * in_flight(deepest) + 4


def replayable(wire: EdgeWire) -> bool:
    """Edges a restarted consumer gets replayed: lossless (block) and between processes of this host,
    whose producer the same supervisor can ask (a peer host's producer it cannot)."""
    return wire.transport == "ipc" and wire.edge.policy == "block"


def _slot_view(lease: Any, like: np.ndarray) -> np.ndarray:
    """The start of a slot as an array of `like`'s dtype and shape."""
    return np.asarray(lease)[:like.nbytes].view(like.dtype).reshape(like.shape)


@dataclass
class _Sent:
    """A message kept for replay: its header fields, its buffers (copies, or the shared-memory slots it holds)."""

    msg: Message
    arrays: dict[str, np.ndarray]
    leases: dict[str, Any]
    nbytes: int


class _Edge:
    """One outgoing edge: its socket, what waits to be sent on it, and (replayable edges) what it sent lately."""

    def __init__(self, wire: EdgeWire, sock: zmq.Socket):
        self.wire, self.sock = wire, sock
        self.outbox: collections.deque[tuple[list[Any], list[ShmRef]]] = collections.deque()  # frames, their slots
        self.window: collections.deque[_Sent] | None = collections.deque() if replayable(wire) else None
        self.window_bytes = 0
        self.window_slots = 0  # kept messages holding shared-memory slots
        self.evicted_upto = -1  # the newest seq dropped from the window: a replay from there or before is incomplete


class OutputPort:
    """One output port: its outgoing edges and, when some are ipc, its shared-memory ring.

    On a replayable edge the port keeps what it sent lately (`_Sent`: inline buffers copied, shm
    slots held). When the supervisor says the consumer restarted (`request_replay`), the port sends a
    replay marker and then every kept message from the consumer's resume point on: the restarted
    consumer discards what reaches it before the marker (queued for its dead predecessor), and
    everyone downstream drops what it already has by sequence number. A resume point older than the
    window is counted in `replay_failures`, and the supervisor fails the job. Requests arrive from
    the process's main thread; only the thread that owns the sockets (`serve`) acts on them.
    """

    def __init__(self, node: str, name: str, wires: list[EdgeWire], zctx: zmq.Context, ring_dir: Path,
                 keys_dir: Path | None, metrics: NodeMetrics, stopping: Callable[[], bool], key: bytes | None = None,
                 window: int = 0):
        self.node, self.name, self.wires = node, name, wires
        self.metrics, self.stopping, self.key, self.window = metrics, stopping, key, window
        self.ring_dir = ring_dir
        self.ring: ShmRing | None = None
        self.ring_columns = sum(1 for w in wires if w.transport == "ipc")
        self.requests: collections.deque[tuple[str, str, int]] = collections.deque()
        self.edges = []
        self.peers: list[PeerLink] = []
        for w in wires:
            sock = zctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, w.edge.depth if w.edge.policy == "block" else 1)
            if w.transport == "tcp":
                curve_client(sock, keys_dir, w.client_host, w.server_host)
                self.peers.append(PeerLink(w, sock, server=False))
            sock.connect(w.connect)
            self.edges.append(_Edge(w, sock))

    def _ring_for(self, nbytes: int) -> ShmRing | None:
        if self.ring_columns == 0:
            return None
        if self.ring is None:  # with replayable edges, the kept frames hold slots (those in flight among them)
            replaying = any(e.window is not None for e in self.edges)
            nslots = self.window + 2 if replaying else in_flight(max(w.edge.depth for w in self.wires if w.transport == "ipc"))
            self.ring = ShmRing(self.ring_dir / f"{self.node}.{self.name}", nbytes, nslots, self.ring_columns)
        return self.ring if nbytes <= self.ring.slot_bytes else None

    def allocate(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        ring = self._ring_for(nbytes) if nbytes >= SHM_MIN_BYTES else None
        lease = ring.acquire(timeout=0.5) if ring is not None else None
        if lease is None:
            return np.empty(shape, dtype)
        return np.asarray(lease)[:nbytes].view(dtype).reshape(shape)

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
                np.copyto(_slot_view(lease, arr), arr)
            leases[name] = lease
        return leases

    def _frames(self, edge: _Edge, msg: Message, arrays: dict[str, np.ndarray], leases: dict[str, Any],
                replay: bool = False) -> tuple[list[Any], list[ShmRef]]:
        refs = {n: self.ring.publish(lease, edge.wire.column) for n, lease in leases.items()} \
            if edge.wire.transport == "ipc" else {}
        key = self.key if edge.wire.transport == "ipc" else None
        return encode(msg, arrays, refs, key, replay), list(refs.values())

    def _keep(self, edge: _Edge, msg: Message, arrays: dict[str, np.ndarray], leases: dict[str, Any]) -> None:
        # inline buffers copied (the node may reuse its arrays), the others as views of the slot now holding them
        # (never of what they were copied from: an input's shared memory must go back to its producer)
        kept_arrays = {n: _slot_view(leases[n], a) if n in leases else a.copy() for n, a in arrays.items()}
        kept = _Sent(Message(seq=msg.seq, pts=msg.pts, capture_ts=msg.capture_ts, stream=msg.stream, meta=dict(msg.meta),
                             eos=msg.eos), kept_arrays, dict(leases),
                     sum(a.nbytes for n, a in kept_arrays.items() if n not in leases))
        edge.window.append(kept)
        edge.window_bytes += kept.nbytes
        edge.window_slots += bool(leases)
        while len(edge.window) > REPLAY_MAX or edge.window_bytes > REPLAY_MAX_BYTES or edge.window_slots > self.window:
            old = edge.window.popleft()
            edge.window_bytes -= old.nbytes
            edge.window_slots -= bool(old.leases)
            edge.evicted_upto = max(edge.evicted_upto, old.msg.seq)

    def emit(self, msg: Message) -> None:
        if self.requests:
            self.serve()
        arrays = leases = None
        for edge in self.edges:
            w = edge.wire
            wait = w.edge.policy == "block" or msg.eos
            if w.transport == "inproc":
                sent = self._send(edge, [LOCAL.put(msg)], [], wait)
            else:
                if arrays is None:
                    arrays = {n: wire_array(v) for n, v in msg.buffers.items()}
                    leases = self._shm_placement(arrays) if self.ring_columns else {}
                if edge.window is not None:
                    self._keep(edge, msg, arrays, leases)
                    if leases and not self._credit(edge):
                        continue
                sent = self._send(edge, *self._frames(edge, msg, arrays, leases), wait)
            if not sent and not self.stopping():
                self.metrics.drops += 1

    def _credit(self, edge: _Edge) -> bool:
        """Wait until the edge's consumer holds fewer than `in_flight` slots: what a crash can strand in
        flight stays within the window. False when stopping."""
        flags, limit = self.ring.map.flags[:, edge.wire.column], in_flight(edge.wire.edge.depth)
        pause = 20e-6
        while np.count_nonzero(flags) >= limit:
            if self.stopping():
                return False
            self.serve()  # what the outbox holds (a replay) is what the consumer must release first
            time.sleep(pause)
            pause = min(pause * 2, 2e-3)
        return True

    def _send(self, edge: _Edge, frames: list[Any], refs: list[ShmRef], wait: bool) -> bool:
        """Send what waits in the edge's outbox, then `frames`; `wait` retries until sent or the node is stopping.
        A replay requested meanwhile takes the outbox over (it holds `frames` too: they are in the window)."""
        edge.outbox.append((frames, refs))
        while True:
            if not self._flush(edge):
                if not wait or self.stopping():
                    if edge.window is None:  # latest edges keep no backlog: the message is dropped
                        self._drop_outbox(edge)
                    return False
                edge.sock.poll(_POLL_MS, zmq.POLLOUT)
                if self.requests:
                    self.serve()
                    return True
                continue
            return True

    @staticmethod
    def _flush(edge: _Edge) -> bool:
        """Send what the outbox holds without waiting; False while something is left."""
        while edge.outbox:
            try:
                edge.sock.send_multipart(edge.outbox[0][0], flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return False
            edge.outbox.popleft()
        return True

    def _drop_outbox(self, edge: _Edge) -> None:
        """Forget what was not sent, handing its slots back (`publish` had given them to the consumer)."""
        for _, refs in edge.outbox:
            for ref in refs:
                self.ring.retract(ref)
        edge.outbox.clear()

    def request_replay(self, dst: str, dst_port: str, from_seq: int) -> None:
        """(any thread) The consumer at dst.dst_port restarted and resumes at `from_seq`."""
        self.requests.append((dst, dst_port, from_seq))

    def serve(self) -> bool:
        """(the sockets' thread) Act on replay requests and send what waits, without blocking; True when all is sent."""
        while self.requests:
            dst, dst_port, from_seq = self.requests.popleft()
            for edge in self.edges:
                if edge.window is not None and (edge.wire.edge.dst, edge.wire.edge.dst_port) == (dst, dst_port):
                    self._replay(edge, from_seq)
        return all([self._flush(edge) for edge in self.edges])

    def _replay(self, edge: _Edge, from_seq: int) -> None:
        if edge.evicted_upto >= from_seq:
            self.metrics.extra["replay_failures"] = self.metrics.extra.get("replay_failures", 0) + 1
            log.error("output %s: cannot replay to restarted %s from frame %d: frames up to %d are no longer kept",
                      self.name, edge.wire.edge.dst, from_seq, edge.evicted_upto, extra={"node": self.node})
        self._drop_outbox(edge)  # what it holds is in the window, or was meant for the dead consumer
        edge.outbox.append(self._frames(edge, Message(seq=from_seq), {}, {}, replay=True))
        again = [k for k in edge.window if k.msg.seq >= from_seq]
        for kept in again:
            edge.outbox.append(self._frames(edge, kept.msg, kept.arrays, kept.leases))
        self.metrics.extra["replayed"] = self.metrics.extra.get("replayed", 0) + sum(not k.msg.eos for k in again)


class InputPort:
    """One input port: a bound PULL socket feeding a local queue under the edge's policy.

    A `latest` edge is read by a receiver thread of its own, continuously: while the node is busy in
    `process()`, newer messages replace older ones as they arrive, so nothing stale piles up in
    ZeroMQ's queues or the kernel's socket buffers (hundreds of keypoint-sized messages fit there)
    and the node always gets the newest. The thread wakes the node's loop through an inproc socket,
    `poll_socket`; a `block` edge is read by the node's loop itself, `depth` at a time.

    Before delivery a message must come from the edge's producer (the run's mac on ipc, the producer
    host's CurveZMQ key on tcp), carry the buffer the port's type needs (on a keypoints port, in the
    quantised form: `stream.keypoints.keypoint_problem`), and have a sequence number
    after the last one accepted (a repeat is dropped and counted: on a block edge it is a replay's
    duplicate) but at most MAX_SEQ_STEP ahead. A restarted consumer on a replayable edge discards
    everything until its producer's replay marker.
    """

    def __init__(self, node: str, name: str, wire: EdgeWire, port: Port, zctx: zmq.Context, ring_dir: Path,
                 keys_dir: Path | None, metrics: NodeMetrics, restarted: bool, key: bytes | None = None,
                 limits: Limits = Limits()):
        self.node, self.name, self.wire, self.port, self.metrics, self.limits = node, name, wire, port, metrics, limits
        self.policy, self.depth = wire.edge.policy, wire.edge.depth
        self.key = key if wire.transport == "ipc" else None
        self.pending: collections.deque[Message] = collections.deque()
        self.eos = False
        self.accepted = -1  # the newest seq accepted: what the supervisor resumes a restarted producer after
        # (the supervisor gave a restarted consumer's shared-memory columns a new epoch before it started it)
        self.awaiting_replay = restarted and replayable(wire)
        self.reader = ShmReader(ring_dir, {wire.ring: wire.column}) if wire.ring else None
        self.socket = zctx.socket(zmq.PULL)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVHWM, self.depth if self.policy == "block" else 2)
        # a peer sending a frame larger than any buffer may be is disconnected before it fills our memory
        self.socket.setsockopt(zmq.MAXMSGSIZE, max(limits.max_header_bytes, limits.max_buffer_bytes))
        self.peer = None
        self.peers: list[PeerLink] = []
        if wire.transport == "tcp":
            curve_server(self.socket, keys_dir, wire.server_host)
            self.peer = curve_user_id(keys_dir, wire.client_host)
            self.peers.append(PeerLink(wire, self.socket, server=True))
        self.socket.bind(wire.bind)
        self._lock = threading.Lock()
        self._tally: collections.Counter[str] = collections.Counter()  # counts not yet added to metrics
        self._refusals = 0
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

    def _refuse(self, counter: str, why: str) -> None:
        self._tally[counter] += 1
        self._refusals += 1
        if self._refusals <= 5 or self._refusals % 1000 == 0:
            log.warning("input %s: %s message #%d: %s", self.name, counter, self._refusals, why, extra={"node": self.node})

    def _decode(self, frames: list[Any]) -> Message | None:
        """The message in `frames` if it passes every check (the module docstring), else None, counted."""
        if self.wire.transport == "tcp":
            self._tally["net_bytes_in"] += sum(len(f) for f in frames)
        try:
            if self.wire.transport == "inproc":
                return LOCAL.take(frames[0].bytes if len(frames) == 1 else b"")
            if self.peer is not None and frames[0].get("User-Id") != self.peer:
                raise WireError("sent with a CurveZMQ key that is not this edge's producer host")
            msg = decode(frames, self.limits, self.reader.resolve if self.reader else None, self.key)
        except StaleError as exc:
            self._refuse("stale", str(exc))
            return None
        except WireError as exc:  # before a replay's marker, our producer's own traffic may fail too: stale
            self._refuse("stale" if self.awaiting_replay and not isinstance(exc, AuthError) else "rejected", str(exc))
            return None
        if msg.replay:
            if self.awaiting_replay:
                self.awaiting_replay, self.accepted = False, msg.seq - 1
            return None
        if self.awaiting_replay:  # meant for the dead predecessor: the replay that follows the marker holds it
            self._tally["stale"] += 1
            return None
        if msg.eos:
            return msg
        problem = self.port.problem(msg)
        if problem is None and self.port.type == "keypoints":  # the compact wire form, before a node decodes it
            problem = keypoint_problem(msg)
        if problem is None and msg.seq > self.accepted + MAX_SEQ_STEP:
            problem = f"seq {msg.seq} is implausibly far ahead of {self.accepted}"
        if problem is not None:
            self._refuse("rejected", f"frame {msg.seq}: {problem}")
            return None
        if msg.seq <= self.accepted:  # not newer than what this input has: old (latest) or a replay's duplicate (block)
            self._tally["drops" if self.policy == "latest" else "duplicates"] += 1
            return None
        self.accepted = msg.seq
        return msg

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
        """(receiver thread, under the lock) Keep `msg` (newer than everything held or delivered: `_decode`)."""
        if msg.eos:
            self._newest_eos = True
            return
        if self._newest is not None:
            self._tally["drops"] += 1
        self._newest = msg

    def _accept(self, msg: Message) -> None:
        if msg.eos:
            self.eos = True
            return
        self.pending.append(msg)

    @property
    def hungry(self) -> bool:
        """Whether `fill` would take more: a latest edge always; a block edge until `depth` wait or it ended.
        A full block edge's socket stays readable, so a loop that polled it would spin until the node's other
        inputs catch up (the compositor spent 27 of its 47 ms CPU a frame so, waiting on the avatar)."""
        return self._receiver is not None or (not self.eos and len(self.pending) < self.depth)

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
                if hasattr(self.metrics, counter):
                    setattr(self.metrics, counter, getattr(self.metrics, counter) + n)
                else:
                    self.metrics.extra[counter] = self.metrics.extra.get(counter, 0) + n
            self._tally.clear()

    def close(self) -> None:
        """Stop the receiver thread (before the process closes the ZeroMQ context)."""
        if self._receiver is not None:
            self._closing.set()
            self._receiver.join(timeout=2 * _POLL_MS / 1e3 + 1)

    def pop(self) -> Message:
        return self.pending.popleft()

    @property
    def exhausted(self) -> bool:
        return self.eos and not self.pending
