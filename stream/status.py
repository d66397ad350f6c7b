"""What a person watching a run sees: a progress bar (finite jobs), a live status line, a final table."""
from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm

from stream.graph import GraphSpec


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


class StatusView:
    def __init__(self, graph: GraphSpec, quiet: bool = False):
        self.graph, self.quiet = graph, quiet
        self.tty = sys.stderr.isatty()
        self.period = 0.5 if self.tty else 5.0
        self._last = 0.0
        self._bar: tqdm | None = None

    def _metrics(self, handles: list[Any]) -> dict[str, dict[str, Any]]:
        return {n: h.node_status.get(n, {}).get("metrics", {}) for h in handles for n in h.nodes}

    def line(self, metrics: dict[str, dict[str, Any]], elapsed: float) -> str:
        parts = [f"{elapsed:6.1f}s"]
        for name, m in metrics.items():
            if not m:
                continue
            text = f"{name} {m.get('fps', 0):.1f}fps p50 {_ms(m['process']['p50_ms'])}ms"
            if m.get("state"):
                text += f" [{m['state']}]"
            if name in self.graph.sinks():
                text += f" latency p50 {_ms(m['latency']['p50_ms'])}/p99 {_ms(m['latency']['p99_ms'])}ms"
            if m.get("drops") or m.get("rejected"):
                text += f" drops {m['drops']} rejected {m['rejected']}"
            if m.get("queue_depth"):
                text += f" q{m['queue_depth']}"
            parts.append(text)
        return " | ".join(parts)

    def update(self, handles: list[Any], elapsed: float) -> None:
        now = time.monotonic()
        if self.quiet or now - self._last < self.period:
            return
        self._last = now
        metrics = self._metrics(handles)
        totals = [m.get("total") for n, m in metrics.items() if n in self.graph.sources() and m.get("total")]
        # frames done = the sequence number the slowest sink has reached (audio messages at an
        # encoder arrive too, but do not advance past the frames they belong to)
        sinks = [m.get("last_seq", -1) + 1 for n, m in metrics.items() if n in self.graph.sinks() and m]
        if totals and sinks:
            if self._bar is None:  # its rate starts from here, so it is not updated in the same call
                self._bar = tqdm(total=min(totals), desc=self.graph.name, unit="frame", file=sys.stderr, dynamic_ncols=True)
                return
            self._bar.n = min(min(sinks), self._bar.total)
            self._bar.refresh()
        elif any(metrics.values()):  # nothing to show before the first heartbeat
            print(("\r" if self.tty else "") + self.line(metrics, elapsed)[:240], end="" if self.tty else "\n",
                  file=sys.stderr, flush=True)

    def close(self, report: dict[str, Any]) -> None:
        if self._bar is not None:  # its last count, from the final heartbeats: a completed job shows 100%
            done = [n.get("last_seq", -1) + 1 for name, n in report["nodes"].items() if name in self.graph.sinks()]
            self._bar.n = min(min(done, default=self._bar.n), self._bar.total)
            self._bar.refresh()
            self._bar.close()
        elif self.tty and not self.quiet:
            print(file=sys.stderr)
        if self.quiet:
            return
        print(f"{report['graph']}: {report['outcome']} in {report['duration_s']:.1f}s", file=sys.stderr)
        for name, n in report["nodes"].items():
            proc, lat = n.get("process") or {}, n.get("latency") or {}
            print(f"  {name:<14} {n.get('kind', ''):<10} {n.get('state', ''):<9} in {n.get('frames_in', 0):>6} "
                  f"out {n.get('frames_out', 0):>6} drops {n.get('drops', 0):>4} rejected {n.get('rejected', 0):>3} "
                  f"restarts {n.get('restarts', 0)} proc p50/p99 {_ms(proc.get('p50_ms'))}/{_ms(proc.get('p99_ms'))}ms "
                  f"latency p50/p99 {_ms(lat.get('p50_ms'))}/{_ms(lat.get('p99_ms'))}ms"
                  + (f"  network in {n['net_bytes_in'] / 1e3:.1f} kB" if n.get("net_bytes_in") else "")
                  + (f"  error: {n['error']}" if n.get("error") else ""), file=sys.stderr)
        sys.stderr.flush()
