"""An artificially slow stage for tests and benchmarks."""
from __future__ import annotations

import time
from dataclasses import dataclass

from stream.message import Message
from stream.node import Node, Port
from stream.params import param


class Delay(Node):
    """Forwards each message after `ms` milliseconds: an artificially slow stage for tests and benchmarks."""

    inputs = {"in": Port("any")}
    outputs = {"out": Port("any")}

    @dataclass
    class Params:
        ms: float = param(10.0, "milliseconds spent per message")
        busy: bool = param(False, "burn CPU instead of sleeping (models a compute-bound stage)")

        def __post_init__(self) -> None:
            if not 0 <= self.ms <= 60_000:
                raise ValueError(f"ms must be in 0..60000, got {self.ms}")

    def process(self, inputs: dict[str, Message]) -> None:
        msg = inputs["in"]
        if self.params.busy:
            end = time.perf_counter() + self.params.ms / 1e3
            while time.perf_counter() < end:
                pass
        else:
            time.sleep(self.params.ms / 1e3)
        self.emit("out", msg)
