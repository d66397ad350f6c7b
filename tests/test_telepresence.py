"""graphs/telepresence.yaml as shipped, run as two hosts (two supervisors) over CurveZMQ on loopback;
hosts whose peer never comes or goes for good; the quantised keypoint message; output sizes that keep
the person's shape.

The camera is swapped for a live-paced, looping video of the mannequin (the recipe the graph file gives)
and the browser preview for a file, so the test can see what a viewer would have seen; everything else,
the real MediaPipe on the laptop side and the shipped avatar and style on the render side, is the
graph's own. A live job: both hosts run for a fixed time (`--for`), like a call that is hung up.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import av
import cv2
import numpy as np
import pytest
import yaml
import zmq
import zmq.auth

from avatars.body.mannequin import Camera, MannequinSequence
from avatars.core.weights import available
from clips import mannequin_clip, mannequin_frames
from stream.keypoints import Keypoints, fit_keypoints, keypoint_message, read_keypoints
from stream.message import Message
from stream.wire import decode, encode, wire_array
from test_runtime import REPO, _finish, _free_port, _start, make_keys, run_graph

FRAMES, FPS, SECONDS = 60, 30, 20


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(not {"starry_night", "mannequin_avatar"} <= set(available("style") + available("avatar")), reason="shipped weights not present")
def test_only_keypoints_cross_and_the_render_host_draws_the_person(tmp_path):
    clip, out, keys = mannequin_clip(tmp_path / "person.mp4", FRAMES, "dance"), tmp_path / "viewer.mp4", tmp_path / "keys"
    make_keys(keys, "laptop", "render")
    graph = yaml.safe_load((REPO / "graphs" / "telepresence.yaml").read_text())
    port = _free_port()
    hosts = ("--set", f"hosts.render.port_base={port}", "--set", f"security.keys={keys}")  # as a user runs it
    nodes = {n["name"]: n for n in graph["nodes"]}
    nodes["camera"].update(kind="video", params={"path": str(clip), "realtime": True, "loop": True})
    nodes["preview"].update(kind="mp4", params={"path": str(out), "crf": 12, "finalize_on_stop": True})
    text = yaml.safe_dump(graph)

    render, render_report = _start(tmp_path, text, "--host", "render", "--for", str(SECONDS), *hosts, name="render")
    deadline = time.monotonic() + 60
    while not _listening(port):  # the render host binds the keypoint edge before loading its models
        assert render.poll() is None and time.monotonic() < deadline, render.communicate()[1]
        time.sleep(0.1)
    laptop, laptop_report = _start(tmp_path, text, "--host", "laptop", "--for", str(SECONDS), *hosts, name="laptop")
    code, report, err = _finish(render, render_report, timeout=120)
    laptop_code, laptop_rep, laptop_err = _finish(laptop, laptop_report)
    assert code == 0, err
    assert laptop_code == 0, laptop_err
    assert set(report["nodes"]) == {"avatar", "style", "composite", "display", "preview"}
    assert set(laptop_rep["nodes"]) == {"camera", "pose"}
    assert laptop_rep["nodes"]["pose"]["extra"]["detected"] >= 0.9 * laptop_rep["nodes"]["pose"]["frames_in"]

    avatar = report["nodes"]["avatar"]
    received = avatar["frames_in"] + avatar["drops"]
    assert avatar["rejected"] == 0 and avatar["frames_in"] >= 10, (report, laptop_rep, err, laptop_err)
    assert 0 < avatar["net_bytes_in"] / received <= 300, avatar  # quantised keypoints and a header, no pixels
    assert report["nodes"]["preview"]["latency"]["p50_ms"] is not None

    truth = list(mannequin_frames(FRAMES, "dance"))
    with av.open(str(out)) as c:
        shown = [(round(float(f.pts * f.time_base) * FPS), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    assert len(shown) == report["nodes"]["preview"]["frames_in"] >= 10
    indices = [i for i, _ in shown]
    assert indices == sorted(set(indices))  # newest wins: never back in time
    for i, image in shown:
        assert image.shape == (480, 640, 3)  # the display size, not the 256x256 camera's nor the 480x360 render
        body = np.zeros((480, 640), bool)  # the square camera frame letterboxed into it: 1.875x, bands left and right
        body[:, 80:560] = cv2.resize(truth[i % FRAMES].mask.astype(np.uint8), (480, 480), interpolation=cv2.INTER_NEAREST) > 0
        person = np.abs(image.astype(int) - [236, 228, 210]).sum(-1) > 60  # not the plain background
        person[:40] = False  # the fps/latency overlay
        assert person[body].mean() > 0.5 and person[~body].mean() < 0.1, i  # drawn where the person is


# -- peers that do not come, or go ----------------------------------------------------------------

PAIR = """
hosts:
  laptop: {{address: 127.0.0.1, peer_wait: {wait}}}
  render: {{address: 127.0.0.1, port_base: {port}, peer_wait: {wait}}}
security: {{keys: keys}}
nodes:
  - {{name: source, kind: synthetic, host: laptop, params: {{width: 64, height: 48, frames: 0, realtime: true}}}}
  - {{name: sink, kind: discard, host: render}}
edges: [{{from: source.out, to: sink.in, policy: latest}}]
"""


def _last_line(err: str) -> str:
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("host, peer, where", [
    ("render", "laptop", "127.0.0.1 -> tcp://127.0.0.1:{port}"),   # the consumer: its peer connects to it
    ("laptop", "render", "tcp://127.0.0.1:{port}"),                # the producer: it connects to its peer
])
def test_a_host_whose_peer_never_comes_fails_naming_it(tmp_path, host, peer, where):
    make_keys(tmp_path / "keys", "laptop", "render")
    port = _free_port()
    start = time.monotonic()
    code, report, err = _finish(*_start(tmp_path, PAIR.format(port=port, wait=2), "--host", host, "--for", "60"))
    assert code == 1 and report["outcome"] == "failed", err
    assert time.monotonic() - start < 40  # the wait, not the --for
    said = f"host {peer!r} at {where.format(port=port)} (edge source.out -> sink.in) never connected within 2 s " \
           f"(hosts.{host}.peer_wait)"
    assert said in _last_line(err), err
    assert f"waiting for host {peer!r} at {where.format(port=port)}" in err  # said while it waited
    assert "Traceback" not in err


def _wait_for_line(proc, text: str, timeout: float = 60) -> list[str]:
    """The stderr lines of `proc` up to the first holding `text` (the rest stays for communicate())."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line, "".join(lines)
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no line with {text!r} in {timeout} s:\n{''.join(lines)}")


def test_a_peer_that_returns_in_time_is_taken_back_and_one_that_does_not_fails_the_run(tmp_path):
    make_keys(tmp_path / "keys", "laptop", "render")
    graph = PAIR.format(port=_free_port(), wait=10)
    render, render_report = _start(tmp_path, graph, "--host", "render", "--for", "90", name="render")
    laptop, _ = _start(tmp_path, graph, "--host", "laptop", name="laptop")
    _wait_for_line(render, "host 'laptop' at 127.0.0.1")  # waiting for it
    _wait_for_line(render, "connected")
    os.killpg(laptop.pid, signal.SIGTERM)  # the laptop goes away...
    laptop.communicate(timeout=30)
    _wait_for_line(render, "lost host 'laptop'")
    laptop, _ = _start(tmp_path, graph, "--host", "laptop", name="laptop2")  # ...and comes back in time
    _wait_for_line(render, "connected")
    os.killpg(laptop.pid, signal.SIGKILL)  # gone for good, without a word
    gone = time.monotonic()
    code, report, err = _finish(render, render_report)
    laptop.communicate(timeout=30)
    assert code == 1 and report["outcome"] == "failed", err
    assert 10 <= time.monotonic() - gone < 40
    assert "host 'laptop' at 127.0.0.1" in _last_line(err) and "went away and did not return within 10 s" in _last_line(err)
    sink = report["nodes"]["sink"]
    assert sink["frames_in"] > 0 and sink["restarts"] == 0 and "went away" in sink["error"]


@pytest.mark.skipif(not {"starry_night", "mannequin_avatar"} <= set(available("style") + available("avatar")), reason="shipped weights not present")
def test_telepresence_render_host_without_its_laptop_exits_non_zero_naming_it(tmp_path):
    """The command as the issue gives it: the render host alone, stopped by --for before its peer_wait."""
    make_keys(tmp_path / "keys", "laptop", "render")
    port = _free_port()
    proc = subprocess.run([sys.executable, "-m", "launch", "run", "telepresence", "--host", "render", "--for", "10",
                           "--set", f"hosts.render.port_base={port}", "--set", f"security.keys={tmp_path / 'keys'}",
                           "--set", f"preview.port={_free_port()}"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 1, proc.stderr
    last = _last_line(proc.stderr)
    assert last.startswith("error: avatar: in the 10 s of the run, host 'laptop' at ") and \
        f"127.0.0.1 -> tcp://127.0.0.1:{port} (edge pose.out -> avatar.in) never connected" in last, last


# -- what travels: the quantised keypoint message ----------------------------------------------------

def _frames_with_people(n: int) -> list:
    return [f for f in mannequin_frames(n, "dance") if (f.joints2d[:, 3] >= 0.5).sum() > 20]


def test_keypoint_message_is_under_300_bytes_and_keeps_the_pose(tmp_path):
    size = 256  # mannequin_frames' frame
    for i, f in enumerate(_frames_with_people(12)):
        kp = f.joints2d
        msg = keypoint_message(None, kp, size, size, True, seq=100_000 + i, pts=3600.0 + i / 30)
        frames = encode(msg, {n: wire_array(v) for n, v in msg.buffers.items()})
        assert sum(len(bytes(part)) for part in frames) <= 300
        got = read_keypoints(decode(frames), "test")
        steps = np.array([3 * size / 4095, 3 * size / 4095, size / 255])
        inside = (kp[:, :2] > -size).all(1) & (kp[:, :2] < 2 * size).all(1) & (np.abs(kp[:, 2]) < size / 2)
        assert np.all(np.abs(got.keypoints[inside, :3] - kp[inside, :3]) <= steps / 2 + 1e-3)
        assert np.array_equal(got.keypoints[:, 3] >= 0.5, kp[:, 3] >= 0.5)  # the same joints drawn
        assert (got.width, got.height, got.detected) == (size, size, True)


def test_forged_or_old_style_keypoint_messages_are_counted_and_dropped(tmp_path):
    """From the producer host's own key: a float32 (33, 4) array (the old message) and a frame size of 0 are
    refused before the node sees them; the genuine messages around them are drawn."""
    keys = make_keys(tmp_path / "keys", "laptop", "render")
    port = _free_port()
    proc, report = _start(tmp_path, f"""
        hosts:
          laptop: {{address: 127.0.0.1}}
          render: {{address: 127.0.0.1, port_base: {port}}}
        security: {{keys: keys}}
        nodes:
          - {{name: pose, kind: mannequin, host: laptop}}
          - {{name: bones, kind: bones, host: render, params: {{width: 64, height: 64}}}}
          - {{name: sink, kind: discard, host: render}}
        edges: [{{from: pose.keypoints, to: bones.in, policy: latest}}, bones.out -> sink.in]
    """, "--host", "render", "--for", "8")
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.curve_publickey, sock.curve_secretkey = zmq.auth.load_certificate(str(keys / "laptop.key_secret"))
    sock.curve_serverkey, _ = zmq.auth.load_certificate(str(keys / "render.key"))
    sock.connect(f"tcp://127.0.0.1:{port}")
    time.sleep(2.0)  # the render host's processes start and bind
    poses = _frames_with_people(3)
    old = Message(seq=1, buffers={"keypoints": poses[0].joints2d}, meta={"detected": True, "width": 256, "height": 256})
    no_size = keypoint_message(None, poses[0].joints2d, 256, 256, True, seq=2)
    no_size.meta["width"] = 0
    for msg in (old, no_size):
        sock.send_multipart(encode(msg, {n: wire_array(v) for n, v in msg.buffers.items()}))
        time.sleep(0.3)
    for seq in range(3, 90):
        msg = keypoint_message(None, poses[seq % 3].joints2d, 256, 256, True, seq=seq)
        sock.send_multipart(encode(msg, {n: wire_array(v) for n, v in msg.buffers.items()}))
        time.sleep(0.03)
    code, report, err = _finish(proc, report)
    sock.close(linger=0)
    ctx.term()
    assert code == 0, err
    bones = report["nodes"]["bones"]
    assert bones["rejected"] == 2 and bones["restarts"] == 0 and bones["frames_in"] >= 20, bones
    assert "(17, 9) uint8" in err and "meta width/height" in err


# -- sizes: the person keeps their shape -------------------------------------------------------------

def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return ys.min(), ys.max() + 1, xs.min(), xs.max() + 1


@pytest.mark.parametrize("width, height", [(160, 320), (480, 160)])  # portrait, and wider than the source
def test_bones_keep_the_persons_shape_at_any_size(width, height):
    """The bone stack at a size of another shape is the source's, scaled once and letterboxed (a stretch
    would change the person's height/width ratio by 2-3x)."""
    from avatars.body.bones import rasterize_bones

    f = _frames_with_people(1)[0]
    kp = Keypoints(f.joints2d, 256, 256, True)
    native = rasterize_bones(f.joints2d, 256, 256).max(0) > 0
    fitted = rasterize_bones(fit_keypoints(kp, width, height), height, width).max(0) > 0
    (y0, y1, x0, x1), (v0, v1, u0, u1) = _box(native), _box(fitted)
    ratio, got = (y1 - y0) / (x1 - x0), (v1 - v0) / (u1 - u0)
    assert abs(got / ratio - 1) < 0.15, (ratio, got)
    scale = min(width, height) / 256
    band = ((height - 256 * scale) / 2, (width - 256 * scale) / 2)  # the letterbox's empty margins
    assert v0 >= band[0] - 1 and height - v1 >= band[0] - 1 and u0 >= band[1] - 1 and width - u1 >= band[1] - 1


@pytest.mark.skipif("mannequin_avatar" not in available("avatar"), reason="shipped avatar not present")
def test_a_portrait_avatar_size_letterboxes_a_landscape_person(tmp_path):
    out = tmp_path / "portrait.mp4"
    code, report, err = run_graph(tmp_path, f"""
        nodes:
          - {{name: pose, kind: mannequin, params: {{width: 320, height: 240, frames: 4, motion: dance}}}}
          - {{name: avatar, kind: avatar, params: {{width: 240, height: 400, threads: 1}}}}
          - {{name: sink, kind: mp4, params: {{path: {out}, crf: 10}}}}
        edges: [pose.keypoints -> avatar.in, avatar.out -> sink.in]
    """, timeout=180)
    assert code == 0, err
    with av.open(str(out)) as c:
        shown = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    truth = MannequinSequence("dance", 4, 30, Camera(width=320, height=240), seed=0)
    assert len(shown) == 4
    scale, top = 0.75, (400 - 240 * 0.75) / 2  # 320x240 letterboxed into 240x400: bands above and below
    for image, f in zip(shown, truth):
        assert image.shape == (400, 240, 3)
        person = image.sum(-1) > 60
        (v0, v1, u0, u1), (y0, y1, x0, x1) = _box(person), _box(f.mask)
        assert v0 >= top - 4 and v1 <= 400 - top + 4  # inside the letterboxed picture
        assert abs((v1 - v0) / (u1 - u0) / ((y1 - y0) / (x1 - x0)) - 1) < 0.25  # the person's shape, not stretched
        assert abs((v1 - v0) / ((y1 - y0) * scale) - 1) < 0.25  # at the letterbox's one scale
