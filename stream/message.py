"""The unit that flows along every edge: a small header plus named raw buffers.

A `Message` is what a node receives and emits. Its buffers are numpy arrays (or,
between nodes grouped in one process, any object such as a CUDA tensor); the
header fields are what the wire format carries next to them (see `stream.wire`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

#: Roles a buffer may declare on the wire. The role says how to interpret a buffer,
#: the name (the key in `Message.buffers`) says which one it is.
ROLES = ("image", "mask", "keypoints", "tensor", "audio")

_DEFAULT_ROLE = {"image": "image", "mask": "mask", "keypoints": "keypoints", "audio": "audio"}


def role_of(name: str) -> str:
    """The role a buffer called `name` travels with: its own name for the standard roles, else tensor."""
    return _DEFAULT_ROLE.get(name, "tensor")


@dataclass
class Message:
    """One frame (or keypoint set, or end-of-stream marker) on an edge.

    seq: position in the stream, assigned by the source and kept by every node that
        transforms a message (so joins and integrity checks can match them up).
    pts: presentation timestamp in seconds (media time), None when unknown.
    capture_ts: wall-clock time (time.time()) when the source captured the frame;
        sinks subtract it from now for end-to-end latency, across processes and hosts.
    buffers: name -> array. Arrays received from another process are read-only views
        that may live in shared memory: copy them before keeping them past `process()`.
    meta: small JSON-like values (ints, floats, strings, lists, dicts) for per-frame facts.
    eos: end of stream; carries no buffers.
    replay: (runtime only) the marker a producer sends before replaying to a restarted consumer.
    """

    seq: int = 0
    pts: float | None = None
    capture_ts: float = field(default_factory=time.time)
    stream: str = ""
    buffers: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    eos: bool = False
    replay: bool = False
    #: In-process only: a CUDA event the consumer waits on before reading device buffers.
    ready_event: Any = field(default=None, repr=False, compare=False)

    def derive(self, **buffers: Any) -> "Message":
        """A new message for the same frame (same seq, timestamps, stream, meta) with other buffers."""
        return Message(
            seq=self.seq, pts=self.pts, capture_ts=self.capture_ts, stream=self.stream,
            buffers=dict(buffers), meta=dict(self.meta),
        )

    @staticmethod
    def end_of_stream(seq: int = 0) -> "Message":
        return Message(seq=seq, eos=True)
