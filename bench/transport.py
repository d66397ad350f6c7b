"""`python -m launch bench transport`: per-hop latency and throughput of 1080p frames between two node processes.

Baselines, measured in the same run on the same frame:
- one in-process memory copy of the frame (frames rotated so the copy runs from memory, not cache);
- raw ZeroMQ ipc PUSH/PULL between two processes (zero-copy send, no runtime), with the frame and with a
  descriptor-sized message: the floor of any cross-process hop on this machine (process wake-up).
Runtime cases (a real graph: source process -> sink process, supervisor, heartbeats):
- copy: the node emits an ordinary array; the runtime copies it into a shared-memory slot;
- allocate: the node wrote its output straight into a slot the runtime gave it.
Latency is capture_ts (set at emit) to the moment the sink's process() starts, after a 1 s warm-up.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import yaml
import zmq

from stream.graph import load_graph
from stream.message import Message
from stream.metrics import Timings
from stream.node import Port, Sink, Source
from stream.nodes.testing.synthetic import test_pattern
from stream.params import param
from stream.supervisor import Supervisor


WARMUP_S = 1.0


class BenchSource(Source):
    """Emits the same pattern frame, either as its own array (copy) or written into a runtime slot (allocate)."""

    outputs = {"out": Port("video")}

    @dataclass
    class Params:
        width: int = param(1920)
        height: int = param(1080)
        fps: float = param(60.0, "pace; 0 = as fast as possible")
        frames: int = param(300)
        mode: Literal["copy", "allocate"] = param("copy")

    def setup(self) -> None:
        self.frame = test_pattern(0, self.params.height, self.params.width)

    def frames(self) -> Iterator[Message]:
        p = self.params
        start = time.perf_counter()
        for i in range(p.frames):
            if p.fps:
                delay = start + i / p.fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            if p.mode == "allocate":
                image = self.allocate("out", self.frame.shape, np.uint8)
                np.copyto(image, self.frame)  # the node's own work: writing its output
            else:
                image = self.frame
            yield Message(capture_ts=time.time(), buffers={"image": image})


class ArrivalSink(Sink):
    """Records first and last arrival times (throughput) and the latency of every frame after a warm-up.

    The first frames leave while the sink process may still be starting, and wait for it: their
    latency measures start-up, not the hop, so the first `WARMUP_S` seconds are not counted
    (the raw ZeroMQ baselines likewise wait a second before sending).
    """

    inputs = {"in": Port("any")}

    def setup(self) -> None:
        self.latency = Timings()

    def process(self, inputs: dict[str, Message]) -> None:
        now = time.time()
        first = self.ctx.metrics.extra.setdefault("first", now)
        self.ctx.metrics.extra["last"] = now
        if now - first >= WARMUP_S:
            self.latency.add(now - inputs["in"].capture_ts)

    def finish(self) -> None:
        self.ctx.metrics.extra.update(self.latency.percentiles_ms())


def _copy_ms(frame: np.ndarray, cold: bool, n: int = 64) -> float:
    """Median time of one copy of `frame`; `cold` rotates over 8 frames and targets (beyond the CPU caches)."""
    k = 8 if cold else 1
    sources = [frame.copy() for _ in range(k)]
    targets = [np.empty_like(frame) for _ in range(k)]
    for t in targets:
        t.fill(0)  # fault the pages in: we time the copy, not the page faults
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        np.copyto(targets[i % k], sources[(i + 3) % k])
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def _raw_receiver(endpoint: str, n: int, result: "mp.Queue") -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.bind(endpoint)
    lat = []
    for _ in range(n):
        frames = sock.recv_multipart(copy=False)
        lat.append(time.time() - float(frames[0].bytes.decode()))
    result.put(lat)
    sock.close()
    ctx.term()


def _raw_zmq(frame: np.ndarray, fps: float, n: int) -> tuple[float, float]:
    endpoint = f"ipc://{tempfile.mkdtemp()}/raw"
    ctx = mp.get_context("spawn")
    result = ctx.Queue()
    proc = ctx.Process(target=_raw_receiver, args=(endpoint, n, result))
    proc.start()
    zctx = zmq.Context()
    sock = zctx.socket(zmq.PUSH)
    sock.connect(endpoint)
    time.sleep(1.0)
    start = time.perf_counter()
    for i in range(n):
        delay = start + i / fps - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sock.send_multipart([str(time.time()).encode(), frame], copy=False)
    lat = np.array(result.get()) * 1e3
    proc.join()
    sock.close()
    zctx.term()
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 99))


def _graph_run(params: dict, workdir: Path) -> dict:
    doc = {"name": f"bench-{params['mode']}", "nodes": [
        {"name": "source", "kind": "bench.transport:BenchSource", "params": params},
        {"name": "sink", "kind": "bench.transport:ArrivalSink"}],
        "edges": ["source.out -> sink.in"]}
    path = workdir / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    sup = Supervisor(load_graph(path), {}, quiet=True)
    if sup.run() != 0:
        raise RuntimeError(f"benchmark graph failed: {sup.last_report}")
    return sup.last_report["nodes"]["sink"]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench transport")
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--fps", type=float, default=60.0)
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args(argv)
    frame = test_pattern(0, args.height, args.width)
    print(f"frame {args.width}x{args.height} RGB uint8 = {frame.nbytes / 1e6:.1f} MB; paced at {args.fps:g} fps, {args.frames} frames")
    copy_ms, copy_hot = _copy_ms(frame, cold=True), _copy_ms(frame, cold=False)
    print(f"baseline  one memory copy (out of cache) {copy_ms:7.3f} ms   (in cache: {copy_hot:.3f} ms)")
    raw50, raw99 = _raw_zmq(frame, args.fps, args.frames)
    print(f"baseline  raw ZeroMQ ipc PUSH/PULL      p50 {raw50:7.3f} ms   p99 {raw99:7.3f} ms")
    tiny50, tiny99 = _raw_zmq(np.zeros(128, np.uint8), args.fps, args.frames)
    print(f"baseline  raw ZeroMQ, 128-byte message  p50 {tiny50:7.3f} ms   p99 {tiny99:7.3f} ms   (hop floor)")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("copy", "allocate"):
            paced = _graph_run({"width": args.width, "height": args.height, "fps": args.fps,
                                "frames": args.frames, "mode": mode}, Path(tmp))
            p50, p99 = paced["extra"]["p50_ms"], paced["extra"]["p99_ms"]
            flat = _graph_run({"width": args.width, "height": args.height, "fps": 0.0,
                               "frames": max(args.frames, 600), "mode": mode}, Path(tmp))
            extra = flat["extra"]
            throughput = (flat["frames_in"] - 1) / max(extra["last"] - extra["first"], 1e-9)
            print(f"runtime   {mode:<8} per hop  p50 {p50:7.3f} ms   p99 {p99:7.3f} ms   "
                  f"throughput {throughput:7.1f} frames/s   drops {paced['drops'] + flat['drops']}")
            print(f"          ratios: p50/copy {p50 / copy_ms:5.2f}  p99/copy {p99 / copy_ms:5.2f}  "
                  f"p50/raw-zmq {p50 / raw50:5.2f}  p50/hop-floor {p50 / tiny50:5.2f}")
    return 0
