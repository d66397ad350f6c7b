"""A sink that discards everything (its metrics still count frames, latency, drops)."""
from __future__ import annotations

from stream.message import Message
from stream.node import Port, Sink


class DiscardSink(Sink):
    """Discards everything; its metrics still count frames, latency and drops."""

    inputs = {"in": Port("any")}
    resumable = True  # it keeps nothing a crash could lose

    def process(self, inputs: dict[str, Message]) -> None:
        pass
