"""The runtime end to end: real processes, real ZeroMQ sockets, real shared memory, the real CLI."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator

import msgpack
import numpy as np
import pytest
import zmq
import zmq.auth

REPO = Path(__file__).resolve().parents[1]


def _start(tmp_path: Path, graph: str, *args: str, name: str = "g",
           env: dict[str, str] | None = None) -> tuple[subprocess.Popen, Path]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(graph))
    report = tmp_path / f"{name}.json"
    env = {**os.environ, "TMPDIR": str(tmp_path), **(env or {})}  # the run's ipc sockets land under tmp_path
    proc = subprocess.Popen([sys.executable, "-m", "launch", "run", str(path), "--quiet", "--report", str(report), *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    return proc, report


def _finish(proc: subprocess.Popen, report: Path, timeout: float = 90) -> tuple[int, dict, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc.returncode, json.loads(report.read_text()) if report.exists() else {}, err


def run_graph(tmp_path: Path, graph: str, *args: str, timeout: float = 90) -> tuple[int, dict, str]:
    return _finish(*_start(tmp_path, graph, *args), timeout=timeout)


def _children(pid: int) -> dict[int, str]:
    """pid -> name (/proc comm) of the live processes whose parent is `pid`."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out[int(d.name)] = (d / "comm").read_text().strip()
            except (OSError, ValueError, IndexError):
                pass
    return out


def _wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@contextlib.contextmanager
def pushing_to(tmp_path: Path, port: str = "check.in") -> Iterator[zmq.Socket]:
    """A PUSH socket of this test process, a stranger to the run, connected to a node's ipc input."""
    endpoint = _wait_for(lambda: next(iter(tmp_path.glob(f"ns-*/{port}")), None))
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.connect(f"ipc://{endpoint}")
    try:
        yield sock
    finally:
        sock.close(linger=0)
        ctx.term()


def _integrity(report: dict, node: str = "check") -> dict:
    return report["nodes"][node]["extra"]


CHAIN = """
nodes:
  - {{name: source, kind: synthetic, params: {{width: {w}, height: {h}, frames: {n}, realtime: false}}}}
  - {{name: invert, kind: invert{group}}}
  - {{name: check, kind: integrity{group}}}
edges:
  - source.out -> invert.in
  - invert.out -> check.in
"""


@pytest.mark.parametrize("w, h, group", [
    (320, 240, ""),                 # separate processes, frames in shared memory
    (64, 48, ""),                   # separate processes, frames inline on the socket
    (320, 240, ", group: work"),    # invert and check in one process: objects handed over in-process
])
def test_block_edges_deliver_every_frame_in_order(tmp_path, w, h, group):
    code, report, err = run_graph(tmp_path, CHAIN.format(w=w, h=h, n=200, group=group))
    assert code == 0, err
    assert report["outcome"] == "completed"
    assert _integrity(report) == {"frames": 200, "gaps": 0, "reordered": 0, "corrupted": 0, "stamp_mismatch": 0}
    assert report["nodes"]["invert"]["frames_in"] == 200 and report["nodes"]["invert"]["drops"] == 0
    if group:
        assert report["nodes"]["invert"]["in_process"] == report["nodes"]["check"]["in_process"] == "work"


SLOW = """
nodes:
  - {{name: source, kind: synthetic, params: {{width: {w}, height: {h}, frames: 150, fps: 100, realtime: true}}}}
  - {{name: slow, kind: delay, params: {{ms: 40}}}}
  - {{name: check, kind: integrity}}
edges:
  - {{from: source.out, to: slow.in, policy: {policy}, depth: 1}}
  - slow.out -> check.in
"""


@pytest.mark.parametrize("w, h", [
    (320, 240),  # frames in shared memory: the ring bounds what is in flight
    (66, 16),    # small messages inline on the socket (between hosts: the next test)
])
def test_latest_edge_keeps_latency_flat_and_never_goes_back(tmp_path, w, h):
    code, latest, err = run_graph(tmp_path, SLOW.format(policy="latest", w=w, h=h))
    assert code == 0, err
    code, block, err = run_graph(tmp_path, SLOW.format(policy="block", w=w, h=h))
    assert code == 0, err
    # block: lossless; the producer waits for the slow consumer (150 x 40 ms at least)
    assert _integrity(block)["frames"] == 150 and block["nodes"]["slow"]["drops"] == 0
    assert _integrity(block)["gaps"] == 0 and block["duration_s"] >= 6.0
    # latest: a 40 ms consumer of a 100 fps stream sees about every 4th frame, always the newest
    lat, seen = latest["nodes"]["slow"], _integrity(latest)
    assert seen["gaps"] > 60 and seen["reordered"] == 0 and seen["corrupted"] == 0
    # every frame not delivered was counted as a drop, at the sender or the receiver
    assert latest["nodes"]["source"]["drops"] + lat["drops"] == 150 - seen["frames"]
    assert lat["latency"]["p99_ms"] < 250, lat["latency"]


def _hostile_messages() -> list[list[bytes]]:
    good = {"v": 1, "stream": "", "seq": 1, "pts": None, "cap": 0.0, "eos": False, "meta": {},
            "bufs": [{"name": "image", "role": "image", "dtype": "uint8", "shape": [48, 64, 3]}]}
    return [
        [b"\xc1\xc1 not msgpack"],
        [msgpack.packb(good)],                                            # buffer missing
        [msgpack.packb(good), b"\x00" * 100],                             # wrong size
        [msgpack.packb({**good, "bufs": [{**good["bufs"][0], "shape": [16000, 16000, 3]}]}), b""],  # huge
        [msgpack.packb({**good, "bufs": [{**good["bufs"][0], "dtype": "object"}]}), b"\x00" * 9216],
        [msgpack.packb({**good, "bufs": [{**good["bufs"][0], "shm": ["../../etc/passwd", 0, 0]}]})],
        [msgpack.packb({**good, "eos": "yes"})],
        [os.urandom(5000)],
    ]


def test_malformed_messages_are_counted_and_dropped_while_the_node_keeps_running(tmp_path):
    proc, report = _start(tmp_path, """
        nodes:
          - {name: source, kind: synthetic, params: {width: 64, height: 48, frames: 90, fps: 30, realtime: true}}
          - {name: check, kind: integrity}
        edges: [source.out -> check.in]
    """)
    bad = _hostile_messages()
    with pushing_to(tmp_path) as sock:
        for frames in bad:
            sock.send_multipart(frames)
        code, report, err = _finish(proc, report)
    assert code == 0, err
    check = report["nodes"]["check"]
    assert check["rejected"] == len(bad) and check["restarts"] == 0
    assert _integrity(report)["frames"] == 90 and _integrity(report)["gaps"] == 0
    assert "rejected message" in err


def test_ctrl_c_stops_everything_cleanly(tmp_path):
    out = tmp_path / "live.mp4"
    proc, report = _start(tmp_path, f"""
        nodes:
          - {{name: source, kind: synthetic, params: {{width: 320, height: 240, frames: 0, realtime: true}}}}
          - {{name: invert, kind: invert}}
          - {{name: sink, kind: mp4, params: {{path: {out}, finalize_on_stop: true}}}}
        edges: [source.out -> invert.in, invert.out -> sink.in]
    """)
    kids = _wait_for(lambda: (c := _children(proc.pid)) and sum(n.startswith("ns:") for n in c.values()) == 3 and c)
    time.sleep(1.5)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    code, report, err = _finish(proc, report, timeout=30)
    assert code == 130 and report["outcome"] == "interrupted"
    alive = [p for p in kids if Path(f"/proc/{p}").exists() and "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2]]
    assert alive == [], f"orphans left: {[(p, kids[p]) for p in alive]}"
    assert not list(tmp_path.glob("ns-*")), "run directory not cleaned up"
    import av  # the live recording was finalised, not left half-written

    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) > 10


def test_fatal_node_error_fails_the_job_with_a_clear_message(tmp_path):
    out = tmp_path / "out.mp4"
    code, report, err = run_graph(tmp_path, f"""
        nodes:
          - {{name: source, kind: synthetic, params: {{width: 64, height: 48, frames: 10}}}}
          - {{name: sink, kind: mp4, params: {{path: {out}, codec: no_such_encoder}}}}
        edges: [source.out -> sink.in]
    """)
    # an encoder FFmpeg lacks is found only when the first frame opens the stream (preflight cannot know)
    assert code == 1 and report["outcome"] == "failed"
    assert "[sink] error:" in err and "no_such_encoder" in err
    assert report["nodes"]["sink"]["restarts"] == 0  # fatal errors are not retried
    assert not out.exists() and not out.with_name("out.mp4.part").exists()  # a failed job leaves nothing behind


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_keys(folder: Path, *hosts: str) -> Path:
    """CurveZMQ key pairs for `hosts`, made by the real command."""
    subprocess.run([sys.executable, "-m", "launch", "keys", str(folder), "--hosts", *hosts],
                   cwd=REPO, check=True, capture_output=True)
    return folder


TWO_HOSTS = """
hosts:
  laptop: {{address: 127.0.0.1}}
  gpu: {{address: 127.0.0.1, bind: 127.0.0.1, port_base: {port}}}
security: {{keys: keys}}
nodes:
  - {{name: source, kind: synthetic, host: laptop, params: {{width: 64, height: 48, frames: {n}, fps: 30, realtime: true}}}}
  - {{name: check, kind: integrity, host: gpu}}
edges: [source.out -> check.in]
"""


TWO_HOSTS_SLOW = """
hosts:
  laptop: {{address: 127.0.0.1}}
  gpu: {{address: 127.0.0.1, bind: 127.0.0.1, port_base: {port}}}
security: {{keys: keys}}
nodes:
  - {{name: source, kind: synthetic, host: laptop, params: {{width: 66, height: 16, frames: 400, fps: 100, realtime: true}}}}
  - {{name: slow, kind: delay, host: gpu, params: {{ms: 300}}}}
  - {{name: check, kind: integrity, host: gpu}}
edges: [{{from: source.out, to: slow.in, policy: latest}}, slow.out -> check.in]
"""


def test_latest_edge_between_hosts_keeps_latency_flat(tmp_path):
    # Small messages over TCP: while the consumer is busy, the kernel's socket buffers hold hundreds of
    # them; a consumer reading only between frames would work through seconds of stale input.
    make_keys(tmp_path / "keys", "laptop", "gpu")
    graph = TWO_HOSTS_SLOW.format(port=_free_port())
    gpu, gpu_report = _start(tmp_path, graph, "--host", "gpu", name="gpu")
    laptop, laptop_report = _start(tmp_path, graph, "--host", "laptop", name="laptop")
    code, report, err = _finish(gpu, gpu_report)
    _finish(laptop, laptop_report)
    assert code == 0, err
    slow, seen = report["nodes"]["slow"], _integrity(report)
    assert seen["reordered"] == 0 and seen["corrupted"] == 0 and seen["gaps"] > 300
    # each turn takes the newest input (reading the socket only between turns: p50 1.4-2.9 s, p99 2.3-5.9 s here)
    assert slow["latency"]["p50_ms"] < 100 and slow["latency"]["p99_ms"] < 1000, slow["latency"]


def test_curve_between_hosts_delivers_to_keyed_peers_only(tmp_path):
    make_keys(tmp_path / "keys", "laptop", "gpu")
    port = _free_port()
    graph = TWO_HOSTS.format(port=port, n=45)
    gpu, gpu_report = _start(tmp_path, graph, "--host", "gpu", name="gpu")
    laptop, laptop_report = _start(tmp_path, graph, "--host", "laptop", name="laptop")
    code, report, err = _finish(gpu, gpu_report)
    assert code == 0, err
    assert _integrity(report) == {"frames": 45, "gaps": 0, "reordered": 0, "corrupted": 0, "stamp_mismatch": 0}
    os.killpg(laptop.pid, signal.SIGTERM)
    laptop.communicate(timeout=30)

    ctx = zmq.Context()
    # A sender with its own, unknown key pair is refused by the gpu host: check receives nothing.
    gpu, gpu_report = _start(tmp_path, graph, "--host", "gpu", "--for", "4", name="gpu2")
    rogue_pub, rogue_secret = zmq.curve_keypair()
    server_pub, _ = zmq.auth.load_certificate(str(tmp_path / "keys" / "gpu.key"))
    sender = ctx.socket(zmq.PUSH)
    sender.curve_publickey, sender.curve_secretkey, sender.curve_serverkey = rogue_pub, rogue_secret, server_pub
    sender.connect(f"tcp://127.0.0.1:{port}")
    good = {"v": 1, "stream": "", "seq": 1, "pts": None, "cap": 0.0, "eos": False, "meta": {},
            "bufs": [{"name": "image", "role": "image", "dtype": "uint8", "shape": [48, 64, 3]}]}
    for _ in range(20):
        try:
            sender.send_multipart([msgpack.packb(good), np.zeros((48, 64, 3), np.uint8)], flags=zmq.NOBLOCK)
        except zmq.Again:
            pass
        time.sleep(0.1)
    code, report, err = _finish(gpu, gpu_report)
    sender.close(linger=0)
    assert code == 1 and "host 'laptop'" in err and "never connected; 1 connection(s) failed the CurveZMQ handshake" in err
    assert report["nodes"]["check"]["frames_in"] == 0 and report["nodes"]["check"]["rejected"] == 0

    # A listener posing as the gpu host without its secret key receives nothing from the laptop.
    impostor = ctx.socket(zmq.PULL)
    impostor_pub, impostor_secret = zmq.curve_keypair()
    impostor.curve_publickey, impostor.curve_secretkey, impostor.curve_server = impostor_pub, impostor_secret, True
    impostor.bind(f"tcp://127.0.0.1:{port}")
    laptop, laptop_report = _start(tmp_path, graph, "--host", "laptop", "--for", "3", name="laptop2")
    got = impostor.poll(4000)
    _finish(laptop, laptop_report)
    impostor.close(linger=0)
    ctx.term()
    assert got == 0


def test_a_join_that_ends_early_still_lets_its_longer_producer_finish(tmp_path):
    # composite pairs by seq: it ends with the 5-frame foreground; the 60-frame background
    # must still be drained, or its source would block forever on the full edge.
    code, report, err = run_graph(tmp_path, """
        nodes:
          - {name: fg, kind: mannequin, params: {width: 64, height: 64, frames: 5}}
          - {name: bg, kind: synthetic, params: {width: 64, height: 48, frames: 60}}
          - {name: comp, kind: composite, params: {background: stream}}
          - {name: sink, kind: discard}
        edges: [fg.video -> comp.in, {from: bg.out, to: comp.background, depth: 2}, comp.out -> sink.in]
    """, timeout=60)
    assert code == 0, err
    assert report["outcome"] == "completed" and report["nodes"]["sink"]["frames_in"] == 5
    assert report["nodes"]["bg"]["frames_out"] == 60


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, all threads


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process CPU time from /proc (Linux)")
def test_a_join_waiting_on_its_slow_input_sleeps_instead_of_spinning(tmp_path):
    """The mosaic's `a` input is full (its producer is fast) while `b` comes through a 40 ms delay: the node
    loop must sleep until `b` arrives. It once polled the full input's socket, readable all along, and spun:
    the compositor of avatar_rerender burned 27 ms of CPU a frame so."""
    proc, report = _start(tmp_path, """
        nodes:
          - {name: src, kind: synthetic, params: {width: 64, height: 48, frames: 100}}
          - {name: slow, kind: delay, params: {ms: 40}}
          - {name: tile, kind: mosaic}
          - {name: sink, kind: discard}
        edges: [src.out -> tile.a, src.out -> slow.in, slow.out -> tile.b, tile.out -> sink.in]
    """)
    tile = _wait_for(lambda: next((p for p, name in _children(proc.pid).items() if name == "ns:tile"), None))
    samples = []
    while proc.poll() is None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            samples.append((time.monotonic(), _cpu_seconds(tile)))
        time.sleep(0.1)
    code, report, err = _finish(proc, report)
    assert code == 0, err
    assert report["nodes"]["sink"]["frames_in"] == 100
    steady = [s for s in samples if s[0] > samples[0][0] + 1.0]  # its imports done, frames flowing
    assert len(steady) >= 10, f"the run was too short to measure: {len(samples)} samples"
    (t0, c0), (t1, c1) = steady[0], steady[-1]
    assert (c1 - c0) / (t1 - t0) < 0.25, f"the waiting node used {(c1 - c0) / (t1 - t0):.0%} of a core"


def test_the_report_gives_each_node_process_cpu_time(tmp_path):
    """A node burning 20 ms of CPU a frame over 60 frames shows 1.2 s and more (its imports on top); the sink
    that only reads, much less."""
    code, report, err = run_graph(tmp_path, """
        nodes:
          - {name: src, kind: synthetic, params: {width: 64, height: 48, frames: 60}}
          - {name: burn, kind: delay, params: {ms: 20, busy: true}}
          - {name: sink, kind: discard}
        edges: [src.out -> burn.in, burn.out -> sink.in]
    """)
    assert code == 0, err
    cpu = {n: report["nodes"][n]["process_cpu_s"] for n in ("src", "burn", "sink")}
    assert cpu["burn"] >= 1.2 and cpu["sink"] < cpu["burn"] - 0.8, cpu


def test_pts_join_pairs_streams_of_different_rates_by_nearest_timestamp(tmp_path):
    # 30 fps over 10 fps, both one second long: every 30 fps frame is shown with the 10 fps frame
    # nearest in time (the default seq join would give 10 outputs, frame i with frame i).
    from PIL import Image

    from stream.nodes.testing.synthetic import read_stamp

    code, report, err = run_graph(tmp_path, f"""
        nodes:
          - {{name: fast, kind: synthetic, params: {{width: 256, height: 64, fps: 30, frames: 30}}}}
          - {{name: slow, kind: synthetic, params: {{width: 256, height: 64, fps: 10, frames: 10}}}}
          - {{name: both, kind: mosaic, join: pts, params: {{layout: column}}}}
          - {{name: sink, kind: image_seq, params: {{path: {tmp_path}/%03d.png}}}}
        edges: [fast.out -> both.a, slow.out -> both.b, both.out -> sink.in]
    """, timeout=60)
    assert code == 0, err
    pairs = []
    for path in sorted(tmp_path.glob("*.png")):
        image = np.asarray(Image.open(path))
        pairs.append((read_stamp(image[:64])[0], read_stamp(image[64:])[0]))
    assert pairs == [(i, min(9, round(i / 3))) for i in range(30)]


def test_unknown_join_is_a_validation_error(tmp_path):
    code, _, err = run_graph(tmp_path, """
        nodes:
          - {name: a, kind: synthetic, params: {frames: 1}}
          - {name: m, kind: mosaic, join: nearest}
          - {name: sink, kind: discard}
        edges: [a.out -> m.a, m.out -> sink.in]
    """)
    assert code == 2 and "node 'm': join must be one of seq, latest, pts, any, got 'nearest'" in err
