"""A graph's nodes run one after another in one thread of one process: `bench pipeline`'s baseline (a helper, not a
benchmark: the leading underscore keeps it out of `bench NAME`'s list).

The same node classes with the same parameters as the graph's processes run them, so the loop does exactly
the graph's operations; what it leaves out is what the runtime adds: processes, sockets, shared memory,
overlap. Each message goes depth first through the nodes downstream of it before the source yields the next;
a node with several inputs runs once it holds a message of the same ``seq`` on every connected input (join
``any``, an encoder's audio: on each arrival). A node's own threads (the stylizer's ``frames_at_once`` pool)
still run beside the loop: give such a node ``frames_at_once: 1`` for a loop that is strictly sequential.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from stream.graph import GraphSpec
from stream.message import Message
from stream.metrics import NodeMetrics
from stream.node import Node, Source


@dataclass
class _Context:
    """The `NodeContext` of one node in the loop: emitting hands the message to the loop."""

    name: str
    device: str
    wired: set[str]
    deliver: Callable[[str, str, Message], None]
    metrics: NodeMetrics = field(default_factory=NodeMetrics)

    def emit(self, port: str, msg: Message) -> None:
        self.metrics.frames_out += 1
        self.deliver(self.name, port, msg)

    def allocate(self, port: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.empty(shape, dtype)

    def stopping(self) -> bool:
        return False

    def connected(self, port: str) -> bool:
        return port in self.wired


class SequentialGraph:
    """Runs ``graph`` (one source) in this thread; ``on_sink`` is called with a sink's name and what it took
    (port -> message) each time a sink has processed."""

    def __init__(self, graph: GraphSpec, on_sink: Callable[[str, dict[str, Message]], None] = lambda name, batch: None):
        sources = graph.sources()
        if len(sources) != 1:
            raise ValueError(f"{graph.name}: the sequential loop runs graphs with one source, not {sources}")
        self.graph, self.on_sink, self.source = graph, on_sink, sources[0]
        self.order = graph.order()
        self.sinks = set(graph.sinks())
        self.wired_in = {n: {e.dst_port for e in graph.edges if e.dst == n} for n in graph.nodes}
        self.nodes: dict[str, Node] = {}
        for name in self.order:
            spec = graph.nodes[name]
            wired = self.wired_in[name] | {e.src_port for e in graph.edges if e.src == name}
            self.nodes[name] = spec.cls(spec.params, _Context(name, spec.device, wired, self._deliver))
        self.waiting: dict[str, dict[int, dict[str, Message]]] = {n: defaultdict(dict) for n in graph.nodes}

    def _deliver(self, src: str, port: str, msg: Message) -> None:
        for e in self.graph.edges:
            if e.src != src or e.src_port != port:
                continue
            if self.graph.nodes[e.dst].join == "any":
                self._process(e.dst, {e.dst_port: msg})
                continue
            held = self.waiting[e.dst][msg.seq]
            held[e.dst_port] = msg
            if held.keys() >= self.wired_in[e.dst]:
                del self.waiting[e.dst][msg.seq]
                self._process(e.dst, held)

    def _process(self, name: str, batch: dict[str, Message]) -> None:
        ctx: _Context = self.nodes[name].ctx  # type: ignore[assignment]
        ctx.metrics.frames_in += 1
        start = time.perf_counter()
        self.nodes[name].process(batch)
        ctx.metrics.process.add(time.perf_counter() - start)
        if name in self.sinks:
            self.on_sink(name, batch)

    def run(self, until: float | None = None) -> None:
        """Setup in order, the source's messages through the graph (``until``: seconds from here, for an endless
        source), then each node's finish in order; close always."""
        start = time.perf_counter()
        source: Source = self.nodes[self.source]  # type: ignore[assignment]
        outputs = list(type(source).outputs)
        try:
            for node in self.nodes.values():
                node.setup()
            for seq, item in enumerate(source.frames()):
                for port, msg in (item if isinstance(item, dict) else {outputs[0]: item}).items():
                    msg.seq = seq
                    self._deliver(self.source, port, msg)
                if until is not None and time.perf_counter() - start >= until:
                    break
            for name in self.order:
                self.nodes[name].finish()
        finally:
            for node in self.nodes.values():
                node.close()
