"""`python -m launch bench soak [--seconds 600]`: a live graph for a long while; does anything grow?

The graph exercises what a long live run keeps doing: a 30 fps camera-like source, frames through
shared memory (a `block` edge), a `latest` edge into a slow stage that drops most frames, heartbeats,
metrics. It runs as a user runs it (`python -m launch run ... --for SECONDS`). After a warm-up (a
tenth of the run, at least 10 s: imports, rings and pools fill) the resident memory and open file
descriptors of every process of the run (supervisor and nodes) are the baseline; at the end they
are measured again. Prints the growth; exits 1 when memory grew by 5% or more or any process holds
more descriptors than at the baseline.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRAPH = """
name: soak
nodes:
  - {name: source, kind: synthetic, params: {width: 640, height: 360, fps: 30, frames: 0, realtime: true}}
  - {name: invert, kind: invert}
  - {name: slow, kind: delay, params: {ms: 80}}
  - {name: check, kind: integrity}
edges:
  - source.out -> invert.in
  - {from: invert.out, to: slow.in, policy: latest}
  - slow.out -> check.in
"""
MAX_GROWTH_PCT = 5.0


def _tree(pid: int) -> list[int]:
    """`pid` and its children (the node processes)."""
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(d.name))
            except (OSError, ValueError, IndexError):
                pass
    return [pid, *kids]


def _sample(pid: int) -> dict[int, tuple[float, int]]:
    """pid -> (resident MB, open descriptors) for the run's processes."""
    out = {}
    for p in _tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
            rss = int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024
            out[p] = (rss, len(os.listdir(f"/proc/{p}/fd")))
        except (OSError, StopIteration):
            pass
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench soak", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="how long the live graph runs (default 600)")
    args = ap.parse_args(argv)
    warmup = max(10.0, args.seconds / 10)
    if args.seconds <= warmup:
        ap.error(f"--seconds must exceed the {warmup:.0f} s warm-up")
    with tempfile.TemporaryDirectory() as tmp:
        graph, report = Path(tmp) / "soak.yaml", Path(tmp) / "report.json"
        graph.write_text(GRAPH)
        proc = subprocess.Popen([sys.executable, "-m", "launch", "run", str(graph), "--quiet", "--for", str(args.seconds),
                                 "--report", str(report)], stdout=subprocess.DEVNULL)
        time.sleep(warmup)
        before = _sample(proc.pid)
        time.sleep(max(0.0, args.seconds - warmup - 2.0))  # just before the supervisor stops it
        after = _sample(proc.pid)
        code = proc.wait()
    if code != 0:
        print(f"soak: the run failed (exit {code})", file=sys.stderr)
        return 1
    common = sorted(set(before) & set(after))
    rss0, rss1 = sum(before[p][0] for p in common), sum(after[p][0] for p in common)
    growth = 100 * (rss1 - rss0) / rss0
    fd_growth = {p: after[p][1] - before[p][1] for p in common if after[p][1] != before[p][1]}
    print(f"soak: {args.seconds:.0f} s live graph, {len(common)} processes measured from {warmup:.0f} s to "
          f"{args.seconds - 2:.0f} s (restarted or new processes: {len(set(before) ^ set(after))})")
    for p in common:
        print(f"  pid {p:>7}  rss {before[p][0]:7.1f} -> {after[p][0]:7.1f} MB  fds {before[p][1]:>3} -> {after[p][1]:>3}")
    print(f"memory growth {growth:+.2f}% ({rss0:.1f} -> {rss1:.1f} MB), fd growth "
          f"{sum(fd_growth.values()):+d} ({len(fd_growth)} processes changed)")
    return 0 if growth < MAX_GROWTH_PCT and not fd_growth and len(common) == len(before) else 1
