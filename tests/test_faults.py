"""Crashes and hostile peers, with real processes and real sockets: what the runtime promises
(docs/runtime.md, "What the runtime promises"). Each test names what the code before it did."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import msgpack
import pytest
import zmq
import zmq.auth

from stream.message import Message
from stream.nodes.testing import synthetic
from stream.wire import encode, wire_array
from test_runtime import _children, _finish, _free_port, _integrity, _start, _wait_for, make_keys, pushing_to, run_graph

CRASH = """
nodes:
  - {{name: source, kind: synthetic, restart: {{max: 3, backoff: 0.2}},
     params: {{width: {w}, height: {h}, frames: 150, fps: 50, realtime: true}}}}
  - {{name: mid, kind: invert, restart: {{max: 3, backoff: 0.2}}}}
  - {{name: check, kind: integrity}}
edges: [source.out -> mid.in, mid.out -> check.in]
"""


def _pid_of(proc: subprocess.Popen, node: str) -> int:
    return _wait_for(lambda: next((p for p, n in _children(proc.pid).items() if n == f"ns:{node}"), None))


@pytest.mark.parametrize("victim, w, h", [
    ("mid", 320, 240),     # frames in shared memory (used to lose 11-12 frames, exit 0)
    ("mid", 64, 48),       # frames inline on the socket
    ("source", 320, 240),  # a restarted source (used to repeat up to a heartbeat of frames)
])
def test_a_crashed_node_on_block_edges_loses_and_repeats_nothing(tmp_path, victim, w, h):
    proc, report = _start(tmp_path, CRASH.format(w=w, h=h))
    pid = _pid_of(proc, victim)
    time.sleep(1.0)
    os.kill(pid, signal.SIGKILL)
    code, report, err = _finish(proc, report)
    assert code == 0, err
    assert _integrity(report) == {"frames": 150, "gaps": 0, "reordered": 0, "corrupted": 0, "stamp_mismatch": 0}
    restarted = report["nodes"][victim]
    assert restarted["restarts"] == 1 and restarted["restart_log"][0]["exit_code"] == -signal.SIGKILL
    resumed = restarted["restart_log"][0]["resume_from"]
    # counters sum both incarnations (each used to report its own); the dead one's as of its last heartbeat
    assert 0 < resumed < 150 and restarted["frames_out"] > 150 - resumed


def test_a_crashed_file_sink_fails_the_job_and_leaves_no_output(tmp_path):
    # a restarted mp4 sink used to rewrite its .part from scratch: a "completed" file starting at frame 445-590
    out = tmp_path / "out.mp4"
    proc, report = _start(tmp_path, f"""
        nodes:
          - {{name: source, kind: synthetic, params: {{width: 64, height: 48, frames: 150, fps: 50, realtime: true}}}}
          - {{name: sink, kind: mp4, restart: {{max: 3, backoff: 0.2}}, params: {{path: {out}, preset: ultrafast}}}}
        edges: [source.out -> sink.in]
    """)
    pid = _pid_of(proc, "sink")
    time.sleep(1.0)
    os.kill(pid, signal.SIGKILL)
    code, report, err = _finish(proc, report)
    assert code == 1 and report["outcome"] == "failed"
    assert "cannot be completed exactly once" in report["nodes"]["sink"]["error"]
    assert report["nodes"]["sink"]["restarts"] == 0 and not out.exists()


def _forged(kind: str) -> list[bytes]:
    """Well-formed messages a process outside the run can send: right ring, column, sizes; no mac."""
    head = {"v": 2, "stream": "", "seq": 5, "pts": None, "cap": 0.0, "eos": False, "meta": {}}
    image = {"name": "image", "role": "image", "dtype": "uint8", "shape": [240, 320, 3]}
    if kind == "descriptor":
        return [msgpack.packb({**head, "bufs": [{**image, "shm": ["source.out", 3, 0, 0, 1]}]})]
    if kind == "eos":
        return [msgpack.packb({**head, "eos": True, "bufs": []})]
    if kind == "seq":
        return [msgpack.packb({**head, "seq": 2 ** 62, "bufs": [image]}), synthetic.test_pattern(0, 240, 320).tobytes()]
    return [msgpack.packb({**head, "bufs": [{**image, "name": "mask", "role": "mask"}]}), bytes(240 * 320 * 3)]


def test_forged_descriptors_eos_and_sequence_numbers_are_refused(tmp_path):
    # the forged descriptor used to be delivered (and free the genuine slot), the forged EOS to end the
    # input after 32 of 150 frames and deadlock the graph, seq 2**62 to freeze the edge
    proc, report = _start(tmp_path, """
        nodes:
          - {name: source, kind: synthetic, params: {width: 320, height: 240, frames: 90, fps: 30, realtime: true}}
          - {name: check, kind: integrity}
        edges: [source.out -> check.in]
    """)
    kinds = ["descriptor", "seq", "no image", "eos"] * 3
    with pushing_to(tmp_path) as sock:
        for kind in kinds:
            sock.send_multipart(_forged(kind))
            time.sleep(0.1)
        code, report, err = _finish(proc, report)
    assert code == 0, err
    assert _integrity(report) == {"frames": 90, "gaps": 0, "reordered": 0, "corrupted": 0, "stamp_mismatch": 0}
    assert report["nodes"]["check"]["rejected"] == len(kinds) and "message authentication code" in err


def _genuine(seq: int) -> list:
    return encode(Message(seq=seq, buffers={"image": synthetic.test_pattern(seq, 48, 64)}, meta={"frame": seq}),
                  {"image": wire_array(synthetic.test_pattern(seq, 48, 64))})


def test_a_keyed_peer_can_neither_freeze_nor_end_a_latest_edge(tmp_path):
    # Between hosts CurveZMQ admits every key of the folder: a third host's key could end the edge with
    # an EOS, and the producer host's own key (a buggy node) freeze it with seq 2**62 (114 frames lost).
    keys = make_keys(tmp_path / "keys", "laptop", "gpu", "other")
    port = _free_port()
    proc, report = _start(tmp_path, f"""
        hosts:
          laptop: {{address: 127.0.0.1}}
          gpu: {{address: 127.0.0.1, port_base: {port}}}
        security: {{keys: keys}}
        nodes:
          - {{name: source, kind: synthetic, host: laptop, params: {{width: 64, height: 48}}}}
          - {{name: check, kind: integrity, host: gpu}}
        edges: [{{from: source.out, to: check.in, policy: latest}}]
    """, "--host", "gpu", "--for", "8")
    ctx = zmq.Context()
    server_public, _ = zmq.auth.load_certificate(str(keys / "gpu.key"))

    def peer(host: str) -> zmq.Socket:
        sock = ctx.socket(zmq.PUSH)
        sock.curve_publickey, sock.curve_secretkey = zmq.auth.load_certificate(str(keys / f"{host}.key_secret"))
        sock.curve_serverkey = server_public
        sock.connect(f"tcp://127.0.0.1:{port}")
        return sock

    laptop, other = peer("laptop"), peer("other")
    time.sleep(2.0)  # the gpu host's processes start and bind
    other.send_multipart(encode(Message.end_of_stream(0), {}))
    laptop.send_multipart(_genuine(2 ** 62))
    # paced over 4.5 s: what is queued before the node binds arrives in one burst, of which a latest
    # edge keeps the newest, so a slow start (a loaded machine) must leave paced frames after it
    for seq in range(150):
        laptop.send_multipart(_genuine(seq))
        time.sleep(0.03)
    code, report, err = _finish(proc, report)
    for sock in (laptop, other):
        sock.close(linger=0)
    ctx.term()
    assert code == 0, err
    check = report["nodes"]["check"]
    assert check["rejected"] == 2 and "not this edge's producer host" in err and "implausibly far ahead" in err
    assert check["frames_in"] >= 20 and _integrity(report)["reordered"] == 0


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024


def test_an_oversize_frame_is_cut_off_before_it_fills_memory(tmp_path):
    # no MAXMSGSIZE: six 500 MB messages grew a slow node to 2.0 GB before any header check
    proc, report = _start(tmp_path, """
        nodes:
          - {name: source, kind: synthetic, params: {width: 64, height: 48, frames: 90, fps: 30, realtime: true}}
          - {name: check, kind: integrity}
        edges: [source.out -> check.in]
    """)
    with pushing_to(tmp_path) as sock:
        check = _pid_of(proc, "check")
        sock.send(bytes(300 * 1024 * 1024), copy=False)
        time.sleep(1.5)
        peak = _peak_rss_mb(check)
        code, report, err = _finish(proc, report)
    assert code == 0, err
    assert peak < 250, f"the check process reached {peak:.0f} MB"
    assert _integrity(report)["frames"] == 90


BUGGY = '''
import numpy as np
from stream.node import Node, Port


class Buggy(Node):
    """Every tenth frame leaves without the image its video port promises."""

    inputs = {"in": Port("video")}
    outputs = {"out": Port("video")}

    def process(self, inputs):
        msg = inputs["in"]
        self.emit("out", msg if msg.seq % 10 else msg.derive(mask=np.zeros((48, 64), np.float32)))
'''


def test_a_message_without_the_buffer_its_port_needs_is_refused_not_a_crash(tmp_path):
    # it used to crash the consumer (KeyError 'image'); four of them failed the job
    (tmp_path / "buggy_kind.py").write_text(BUGGY)
    proc, report = _start(tmp_path, """
        nodes:
          - {name: source, kind: synthetic, params: {width: 64, height: 48, frames: 60}}
          - {name: buggy, kind: 'buggy_kind:Buggy'}
          - {name: invert, kind: invert}
          - {name: check, kind: integrity}
        edges: [source.out -> buggy.in, buggy.out -> invert.in, invert.out -> check.in]
    """, env={"PYTHONPATH": str(tmp_path)})
    code, report, err = _finish(proc, report)
    assert code == 0, err
    assert report["nodes"]["invert"]["rejected"] == 6 and report["nodes"]["invert"]["restarts"] == 0
    assert _integrity(report)["frames"] == 54 and "needs buffer 'image'" in err


TWO_HOSTS = """
hosts:
  laptop: {{address: 127.0.0.1}}
  gpu: {{address: 127.0.0.1, port_base: {port}}}
security: {{keys: keys}}
nodes:
  - {{name: source, kind: synthetic, host: laptop, params: {{width: 64, height: 48, frames: 30}}}}
  - {{name: check, kind: integrity, host: gpu}}
edges: [source.out -> check.in]
"""


def test_missing_keys_are_refused_before_anything_starts(tmp_path):
    # a missing key folder used to cost 15 s per try, three restarts, and end "stopped" with exit 0
    proc, report = _start(tmp_path, TWO_HOSTS.format(port=_free_port()), "--host", "gpu", "--for", "30")
    code, report, err = _finish(proc, report, timeout=60)
    assert code == 2 and "missing CurveZMQ key(s)" in err and str(tmp_path / "keys" / "gpu.key_secret") in err
    assert not list(tmp_path.glob("ns-*")), "nothing was to be started"


def test_a_start_up_failure_in_a_node_process_fails_the_job_at_once(tmp_path):
    # the failing process used to hang in zctx.term() on a socket left open: 15 s a try, restarted 3 times
    make_keys(tmp_path / "keys", "laptop", "gpu")
    port = _free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        code, report, err = run_graph(tmp_path, TWO_HOSTS.format(port=port), "--host", "gpu", timeout=60)
    assert code == 1 and report["outcome"] == "failed"
    assert report["nodes"]["check"]["restarts"] == 0 and "Address already in use" in report["nodes"]["check"]["error"]


LIVE = """
nodes:
  - {name: source, kind: synthetic, params: {width: 64, height: 48, frames: 0, realtime: true}}
  - {name: sink, kind: discard}
edges: [source.out -> sink.in]
"""


def _run_processes(marker: str) -> list[int]:
    """The live processes whose environment holds `marker` (a run's TMPDIR), whoever their parent now is."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if marker.encode() in (d / "environ").read_bytes().split(b"\0") and \
                        "Z" not in (d / "stat").read_text().rsplit(")", 1)[1].split()[:1]:
                    found.append(int(d.name))
            except OSError:
                pass
    return found


def test_a_killed_supervisor_leaves_no_orphans_and_the_next_run_cleans_up(tmp_path):
    # SIGKILL in the first second used to leave the node processes running (4 of 4 tries), and every
    # SIGKILL its folders in /dev/shm and the temp folder
    marker = f"TMPDIR={tmp_path}"
    left: list[Path] = []
    for attempt in range(4):
        proc, _ = _start(tmp_path, LIVE, name=f"k{attempt}")
        _wait_for(lambda: _children(proc.pid), timeout=30)  # a node process exists, still starting up
        time.sleep(0.1 * attempt)
        proc.kill()
        proc.wait()
        left += [d for d in Path("/dev/shm").glob("ns-*") if (d / "owner").is_file()
                 and (d / "owner").read_text().split()[0] == str(proc.pid)]
        _wait_for(lambda: not _run_processes(marker), timeout=20)
    assert left and list(tmp_path.glob("ns-*")), "a SIGKILLed supervisor cannot clean up after itself"
    code, _, err = run_graph(tmp_path, LIVE.replace("frames: 0", "frames: 5"))
    assert code == 0, err
    assert not list(tmp_path.glob("ns-*")) and not any(d.exists() for d in left)


def test_sigterm_of_an_unfinished_offline_job_is_not_a_success(tmp_path):
    # it used to exit 0, and count restarts of the children being stopped
    proc, report = _start(tmp_path, """
        nodes:
          - {name: source, kind: synthetic, params: {width: 64, height: 48, frames: 600, fps: 60, realtime: true}}
          - {name: invert, kind: invert}
          - {name: check, kind: integrity}
        edges: [source.out -> invert.in, invert.out -> check.in]
    """)
    _wait_for(lambda: sum(n.startswith("ns:") for n in _children(proc.pid).values()) == 3)
    time.sleep(1.5)
    os.killpg(proc.pid, signal.SIGTERM)  # the whole group, as a service manager does
    code, report, err = _finish(proc, report, timeout=30)
    assert code == 143 and report["outcome"] == "terminated"
    assert all(n["restarts"] == 0 for n in report["nodes"].values()), report["nodes"]
    assert "restart" not in err
