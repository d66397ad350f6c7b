"""The `camera` node as the source of every live graph: a file paced at its own timestamps, a folder, the
test pattern, a live network stream, and a clear error for what cannot be opened; the pacer never bursts
after a stall. Real processes, real ZeroMQ (the frames are read off a `zmq_pub` sink), real PyAV."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from stream.media import probe, write_video
from stream.pacing import SLACK_S, Pacer

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graph(tmp_path: Path, camera: str, sink: str, policy: str = "latest") -> Path:
    path = tmp_path / "live.yaml"
    path.write_text(f"""
name: live_sources
policy: {policy}
nodes:
  - {{name: camera, kind: camera, params: {camera}}}
  - {{name: sink, {sink}}}
edges:
  - camera.out -> sink.in
""")
    return path


def _launch(graph: Path, tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "launch", "run", str(graph), "--quiet",
                             "--report", str(tmp_path / "report.json"), *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _frames_from(camera: str, tmp_path: Path, *args: str) -> tuple[np.ndarray, dict]:
    """(rows of (pts, capture_ts) of every frame the graph's sink published, the run's report)."""
    port = _free_port()
    graph = _graph(tmp_path, camera, f"kind: zmq_pub, params: {{bind: 'tcp://127.0.0.1:{port}', hwm: 1000}}")
    zctx = zmq.Context()
    sub = zctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVTIMEO, 200)
    sub.connect(f"tcp://127.0.0.1:{port}")
    sub.subscribe(b"frame")
    proc = _launch(graph, tmp_path, *args)
    rows = []
    try:
        while proc.poll() is None:
            try:
                header = json.loads(sub.recv_multipart()[1])
            except zmq.Again:
                continue
            rows.append((header["pts"], header["capture_ts"]))
    finally:
        proc.wait(60)
        zctx.destroy(linger=0)
    assert proc.returncode == 0, proc.stdout.read()
    return np.array(rows), json.loads((tmp_path / "report.json").read_text())


def _worst_burst(pts: np.ndarray, wall: np.ndarray) -> float:
    """How far (s) the frames ever ran ahead of their own timestamps over any stretch: max over i < j of
    (pts_j - pts_i) - (wall_j - wall_i). A source that caught up after a stall by sending back to back
    is ahead by the stall."""
    lag = wall - pts
    return float(np.max(np.maximum.accumulate(lag) - lag))


def test_pacer_moves_its_clock_after_a_stall_instead_of_bursting() -> None:
    pacer, interval = Pacer(realtime=True), 0.04
    times = []
    for i in range(16):
        if i == 4:
            time.sleep(0.6)  # the consumer was starting, a decode was slow: frame 4 is late
        pacer.wait(i * interval)
        times.append(time.monotonic())
    pts = np.arange(16) * interval
    assert _worst_burst(pts, np.array(times)) <= SLACK_S + 0.02
    assert pacer.resyncs == 1
    # a frame only a little late (jitter) is caught up on, keeping the long-run rate
    pacer, start = Pacer(realtime=True), time.monotonic()
    pacer.wait(0.0)
    time.sleep(interval + SLACK_S / 2)
    pacer.wait(interval)
    pacer.wait(4 * interval)
    assert pacer.resyncs == 0 and time.monotonic() - start >= 4 * interval


def test_a_file_plays_at_its_own_timestamps(tmp_path: Path) -> None:
    """--set camera.device=clip.mp4: the file's pts, sent on the wall clock at the file's spacing (30 fps)."""
    clip = write_video(tmp_path / "clip.mp4", (np.full((48, 64, 3), i * 3 % 256, np.uint8) for i in range(60)), fps=30)
    rows, report = _frames_from("{device: '0'}", tmp_path, "--set", f"camera.device={clip}")
    pts, wall = rows.T
    expected = probe(str(clip))["pts"]
    assert report["nodes"]["camera"]["frames_out"] == 60 and report["nodes"]["camera"]["extra"]["backend"] == "file"
    assert len(rows) >= 50  # a loaded machine may drop a few on the `latest` edge, never reorder or invent
    assert set(np.round(pts, 6)) <= set(np.round(expected, 6)) and np.all(np.diff(pts) > 0)
    assert _worst_burst(pts, wall) <= SLACK_S + 0.05  # never faster than the file
    assert wall[-1] - wall[0] >= (pts[-1] - pts[0]) - SLACK_S  # 2 s of clip take 2 s, not 1.6


def test_a_looped_file_keeps_its_timestamps_increasing(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", (np.full((48, 64, 3), i * 20, np.uint8) for i in range(10)), fps=30)
    rows, _ = _frames_from(f"{{device: '{clip}', loop: true, frames: 25}}", tmp_path)
    pts = rows[:, 0]
    # a subscriber that joins late on a loaded machine misses the first frames: what arrives must increase
    assert len(pts) >= 10 and np.all(np.diff(pts) > 0) and pts[-1] > 0.7  # past the 0.33 s clip, twice


def test_an_image_folder_in_natural_order(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in (1, 2, 10):
        cv2.imwrite(str(folder / f"frame{i}.png"), np.full((16, 16, 3), i * 20, np.uint8))
    out = tmp_path / "out"
    graph = _graph(tmp_path, f"{{device: '{folder}', fps: 20}}", f"kind: image_seq, params: {{path: '{out}/%d.png'}}",
                   policy="block")  # every image written
    proc = _launch(graph, tmp_path)
    assert proc.wait(60) == 0, proc.stdout.read()
    assert [int(cv2.imread(str(out / f"{i}.png"))[0, 0, 0]) for i in range(3)] == [20, 40, 200]


def test_the_test_pattern(tmp_path: Path) -> None:
    graph = _graph(tmp_path, "{device: test, width: 96, height: 64, frames: 12, fps: 60}", "kind: integrity",
                   policy="block")
    proc = _launch(graph, tmp_path)
    assert proc.wait(60) == 0, proc.stdout.read()
    counts = json.loads((tmp_path / "report.json").read_text())["nodes"]["sink"]["extra"]
    assert counts == {**counts, "frames": 12, "gaps": 0, "corrupted": 0, "reordered": 0}


def test_a_live_network_stream(tmp_path: Path) -> None:
    """An MPEG-TS stream over TCP from a server this test starts (loopback), read unpaced: its sender paces it."""
    import av

    port = _free_port()

    def serve() -> None:
        try:
            _stream(av.open(f"tcp://127.0.0.1:{port}?listen=1&listen_timeout=20000", "w", format="mpegts"))
        except (av.error.BrokenPipeError, av.error.ConnectionResetError):
            pass  # the reader hung up after its `frames`

    def _stream(out: av.container.OutputContainer) -> None:
        with out:
            s = out.add_stream("mpeg2video", rate=30)
            s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
            for i in range(60):
                frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 4, np.uint8), format="rgb24")
                for packet in s.encode(frame):
                    out.mux(packet)
                time.sleep(1 / 30)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    rows, report = _frames_from(f"{{device: 'tcp://127.0.0.1:{port}', frames: 20}}", tmp_path)
    server.join(30)
    assert report["nodes"]["camera"]["extra"]["backend"] == "stream"
    assert report["nodes"]["camera"]["frames_out"] == 20 and len(rows) > 0  # the first may precede the subscriber
    assert np.all(np.diff(rows[:, 0]) > 0)


@pytest.mark.parametrize("device, named", [("missing_clip.mp4", "missing_clip.mp4"),
                                           ("ftp://example.org/a.mp4", "unsupported URL scheme 'ftp'"),
                                           ("/dev/video97", "no camera at '/dev/video97'")])
def test_what_cannot_be_opened_is_named(tmp_path: Path, device: str, named: str) -> None:
    graph = _graph(tmp_path, f"{{device: '{device}'}}", "kind: discard")
    proc = _launch(graph, tmp_path, "--for", "20")
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 1
    assert named in out and "Traceback" not in out
    assert "WARN" not in out and "cap_v4l" not in out  # OpenCV's own lines stay off the terminal


def test_a_live_run_whose_sinks_got_nothing_fails_saying_so(tmp_path: Path) -> None:
    """--for ends a live run before its first frame reached the sink (a stage far slower than the run): exit 1."""
    graph = tmp_path / "idle.yaml"
    graph.write_text("""
name: idle
policy: latest
nodes:
  - {name: camera, kind: camera, params: {device: test, width: 32, height: 32}}
  - {name: slow, kind: delay, params: {ms: 6000}}
  - {name: sink, kind: discard}
edges: [camera.out -> slow.in, slow.out -> sink.in]
""")
    proc = _launch(graph, tmp_path, "--for", "3")
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 1, out
    assert out.strip().splitlines()[-1].endswith("nothing reached sink in the 3 s of the run")
    assert json.loads((tmp_path / "report.json").read_text())["outcome"] == "failed"

