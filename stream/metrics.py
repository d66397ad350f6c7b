"""Per-node counters and timing percentiles, as nodes report them to the supervisor."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Timings:
    """The most recent `capacity` durations (seconds), for p50 / p99 without unbounded memory."""

    def __init__(self, capacity: int = 2048):
        self._values = np.zeros(capacity, np.float64)
        self._count = 0

    def add(self, seconds: float) -> None:
        self._values[self._count % len(self._values)] = seconds
        self._count += 1

    @property
    def count(self) -> int:
        return self._count

    def percentiles_ms(self) -> dict[str, float | None]:
        n = min(self._count, len(self._values))
        if n == 0:
            return {"p50_ms": None, "p99_ms": None}
        p50, p99 = np.percentile(self._values[:n], [50, 99]) * 1e3
        return {"p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3)}


@dataclass
class NodeMetrics:
    """What every node reports: traffic, losses, speed, backlog, and at sinks end-to-end latency."""

    frames_in: int = 0
    frames_out: int = 0
    drops: int = 0          # stale messages discarded on `latest` edges (or unsendable on them)
    rejected: int = 0       # malformed messages counted and dropped by the receiver
    queue_depth: int = 0    # messages received but not yet processed, at the last look
    last_seq: int = -1
    net_bytes_in: int = 0   # bytes received from other hosts (tcp edges): what crosses the network
    total: int | None = None  # sources: messages the stream will hold, when known
    process: Timings = field(default_factory=Timings)
    latency: Timings = field(default_factory=Timings)  # capture -> arrival at this node (sinks)
    extra: dict[str, Any] = field(default_factory=dict)  # node-specific counters (e.g. integrity checks)
    state: str | None = None  # what the node is doing when it is not processing ("compiling", "waiting for ...")
    started: float = field(default_factory=time.time)

    def snapshot(self) -> dict[str, Any]:
        elapsed = max(time.time() - self.started, 1e-9)
        return {
            "frames_in": self.frames_in, "frames_out": self.frames_out, "drops": self.drops,
            "rejected": self.rejected, "net_bytes_in": self.net_bytes_in, "queue_depth": self.queue_depth,
            "last_seq": self.last_seq,
            "total": self.total, "fps": round(max(self.frames_in, self.frames_out) / elapsed, 2),
            "process": self.process.percentiles_ms(), "latency": self.latency.percentiles_ms(),
            "extra": dict(self.extra), "state": self.state,
        }
