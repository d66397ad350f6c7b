"""The node contract: declared ports and parameters, setup / process / finish / close.

A node is a small class. It never knows which process or host its peers live in:
it receives `Message`s on named input ports and emits them on named output ports
through its `NodeContext`, which the runtime provides. A kind is registered by its file: a
module ``stream/nodes/<kind>.py`` (test and debug kinds: ``stream/nodes/testing/<kind>.py``)
that defines one Node class is the kind of that name (docs/writing-a-node.md). The kind
``invert``, as ``stream/nodes/testing/invert.py`` defines it:

    class Invert(Node):
        '''255 - image, written straight into a runtime-provided output buffer (no extra copy).'''

        inputs = {"in": Port("video")}
        outputs = {"out": Port("video")}

        def process(self, inputs: dict[str, Message]) -> None:
            msg = inputs["in"]
            image = msg.buffers["image"]
            out = self.allocate("out", image.shape, image.dtype)
            np.subtract(255, image, out=out)
            self.emit("out", msg.derive(image=out))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Literal, Protocol

import numpy as np

from stream.message import Message
from stream.params import NoParams

if TYPE_CHECKING:
    from stream.metrics import NodeMetrics

#: Port types a graph can connect; "any" matches every type.
PORT_TYPES = ("video", "keypoints", "bones", "audio", "tensor", "any")
#: The buffer a message on a port of each type must carry, and its number of dimensions: checked
#: before delivery, so a node never sees a frame without the buffer it reads.
PORT_BUFFERS = {"video": ("image", 3), "keypoints": ("keypoints", 2), "bones": ("bones", 3), "audio": ("audio", 2)}


Join = Literal["seq", "latest", "pts", "any"]
JOINS: tuple[str, ...] = ("seq", "latest", "pts", "any")


@dataclass(frozen=True)
class Port:
    """A named input or output of a node kind."""

    type: str = "any"
    required: bool = True
    doc: str = ""

    def __post_init__(self) -> None:
        if self.type not in PORT_TYPES:
            raise ValueError(f"unknown port type {self.type!r} (known: {PORT_TYPES})")

    def accepts(self, other: "Port") -> bool:
        return "any" in (self.type, other.type) or self.type == other.type

    def problem(self, msg: Message) -> str | None:
        """Why `msg` cannot be delivered to a port of this type (None: it can)."""
        if self.type not in PORT_BUFFERS:
            return None
        name, ndim = PORT_BUFFERS[self.type]
        buf = msg.buffers.get(name)
        if buf is None:
            return f"a {self.type} message needs buffer {name!r}, got {sorted(msg.buffers)}"
        if len(buf.shape) != ndim:
            return f"buffer {name!r} of a {self.type} message needs {ndim} dimensions, got shape {tuple(buf.shape)}"
        return None


class NodeError(RuntimeError):
    """A fatal, explained failure (missing file, absent device): shown without a traceback, never retried."""


class NodeContext(Protocol):
    """What the runtime offers a node."""

    name: str
    device: str
    metrics: "NodeMetrics"

    def emit(self, port: str, msg: Message) -> None: ...

    def allocate(self, port: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray: ...

    def stopping(self) -> bool: ...

    def connected(self, port: str) -> bool:
        """Whether an edge feeds (input) or leaves (output) this port in the running graph."""


class Node:
    """Base of every node kind. Override `process`; `setup`, `finish`, `close` as needed."""

    kind: ClassVar[str] = ""
    inputs: ClassVar[dict[str, Port]] = {}
    outputs: ClassVar[dict[str, Port]] = {}
    Params: ClassVar[type] = NoParams
    #: How a node with several inputs pairs them (a graph may override it per node with `join:`):
    #: "seq" waits for the same sequence number on every input; "latest" runs on each arrival of
    #: the first input with the newest of the others; "pts" runs on each arrival of the first
    #: input with the message nearest in time on each other input (streams of different rates
    #: or sources); "any" runs on every arrival alone (e.g. an encoder muxing video and audio).
    join: ClassVar[Join] = "seq"
    #: per-frame compute that keeps a core busy without a torch pool of its own (MediaPipe, inpainting):
    #: counted when the host's cores are split between the torch pools (`threads` parameters)
    busy: ClassVar[bool] = False

    def __init__(self, params: Any, ctx: NodeContext):
        self.params = params
        self.ctx = ctx

    def setup(self) -> None:
        """Once, before the first message: load weights, open files and devices."""

    def process(self, inputs: dict[str, Message]) -> None:
        """Per arrival (or per joined set of inputs)."""
        raise NotImplementedError

    def finish(self) -> None:
        """At end of stream (or a requested stop), before end-of-stream goes downstream: flush, finalise files."""

    def close(self) -> None:
        """Always, last: release resources (also when stopped early)."""

    def emit(self, port: str, msg: Message) -> None:
        self.ctx.emit(port, msg)

    def allocate(self, port: str, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
        """A writable array the runtime can ship without copying (shared memory on an ipc edge)."""
        return self.ctx.allocate(port, shape, dtype)


class Source(Node):
    """A node without inputs that yields messages until exhausted (or forever).

    The runtime numbers the messages (seq), emits them and, when `frames()` ends,
    sends end-of-stream downstream. Yield a Message for the single output port, or a
    dict port -> Message for several.
    """

    def frames(self) -> Iterator[Message | dict[str, Message]]:
        raise NotImplementedError

    def length(self) -> int | None:
        """How many messages `frames()` will yield, when known (drives the progress bar)."""
        return None

    def skip_to(self, seq: int) -> None:
        """Called before `frames()` on a restart: continue near message `seq` instead of from the start."""


class Sink(Node):
    """A node without outputs."""

    #: Whether a new instance can take over from a crashed one on a lossless edge. A sink that
    #: writes a file cannot (what the dead one wrote is lost or half-written): its crash fails the job.
    resumable: ClassVar[bool] = False
