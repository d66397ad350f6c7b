"""Live outputs, each read back by a real client: MPEG-TS over TCP with PyAV, raw frames over
ZeroMQ SUB, numbered images; and clear errors where a window or virtual camera cannot exist."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import zmq

from launch.cli import main



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graph_file(tmp_path: Path, sink: str, params: str, frames: int = 60, realtime: bool = True) -> Path:
    path = tmp_path / "g.yaml"
    path.write_text(f"""
name: out
policy: latest
nodes:
  - {{name: src, kind: synthetic, params: {{width: 160, height: 96, fps: 30, frames: {frames}, realtime: {str(realtime).lower()}}}}}
  - {{name: sink, kind: {sink}, params: {params}}}
edges:
  - src.out -> sink.in
""")
    return path


def run_in_background(graph: Path) -> subprocess.Popen:
    """The CLI in its own process (the supervisor owns signals, so it needs a main thread)."""
    return subprocess.Popen([sys.executable, "-m", "launch", "run", str(graph), "--quiet"], cwd=graph.parent)


def test_network_stream_plays_in_a_pyav_client(tmp_path: Path) -> None:
    port = free_port()
    graph = graph_file(tmp_path, "netstream", f"{{url: 'tcp://127.0.0.1:{port}?listen=1', gop: 10}}", frames=90)
    proc = run_in_background(graph)
    deadline = time.monotonic() + 20
    while True:
        try:
            client = av.open(f"tcp://127.0.0.1:{port}", format="mpegts", timeout=10)
            break
        except (av.error.FFmpegError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with client:
        stream = client.streams.video[0]
        assert stream.codec_context.name == "h264"
        images = [f.to_ndarray(format="rgb24") for f in client.decode(stream)]  # to the end of the stream
    assert proc.wait(30) == 0
    assert len(images) > 20 and images[0].shape == (96, 160, 3)
    assert not np.array_equal(images[0], images[-1])  # the picture moves


def test_zmq_pub_wire_format(tmp_path: Path) -> None:
    port = free_port()
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.connect(f"tcp://127.0.0.1:{port}")
    sub.subscribe(b"frame")
    sub.setsockopt(zmq.RCVTIMEO, 20_000)
    graph = graph_file(tmp_path, "zmq_pub", f"{{bind: 'tcp://127.0.0.1:{port}'}}", frames=150)
    proc = run_in_background(graph)
    try:
        topic, header, pixels = sub.recv_multipart()
        second = json.loads(sub.recv_multipart()[1])
    finally:
        sub.close()
        code = proc.wait(30)
    h = json.loads(header)
    assert topic == b"frame"
    assert (h["width"], h["height"], h["channels"], h["dtype"], h["format"]) == (160, 96, 3, "uint8", "rgb24")
    image = np.frombuffer(pixels, np.uint8).reshape(h["height"], h["width"], h["channels"])
    assert image.std() > 0 and second["seq"] > h["seq"] and second["pts"] > h["pts"]
    assert code == 0


def test_image_sequence_sink_writes_every_frame(tmp_path: Path) -> None:
    graph = graph_file(tmp_path, "image_seq", f"{{path: '{tmp_path / 'frames' / 'f%04d.jpg'}', quality: 90}}",
                       frames=12, realtime=False)
    graph.write_text(graph.read_text().replace("policy: latest", "policy: block"))
    assert main(["run", str(graph), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"f{i:04d}.jpg" for i in range(12)]


def test_window_without_display_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    report = tmp_path / "r.json"
    assert main(["run", str(graph_file(tmp_path, "window", "{}")), "--quiet", "--report", str(report)]) != 0
    assert "no display" in json.loads(report.read_text())["nodes"]["sink"]["error"]


def test_virtual_camera_absent_is_a_clear_error(tmp_path: Path) -> None:
    if Path("/dev/video10").exists():
        pytest.skip("a loopback device exists here")
    report = tmp_path / "r.json"
    code = main(["run", str(graph_file(tmp_path, "vcam", "{device: /dev/video10}")), "--quiet", "--report", str(report)])
    assert code != 0
    error = json.loads(report.read_text())["nodes"]["sink"]["error"]
    assert "pyvirtualcam" in error or "no virtual camera device" in error
