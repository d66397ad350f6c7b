"""graphs/telepresence.yaml as shipped, run as two hosts (two supervisors) over CurveZMQ on loopback.

The camera is swapped for a live-paced, looping video of the mannequin (the recipe the graph file gives)
and the browser preview for a file, so the test can see what a viewer would have seen; everything else,
the real MediaPipe on the laptop side and the shipped avatar and style on the render side, is the
graph's own. A live job: both hosts run for a fixed time (`--for`), like a call that is hung up.
"""
from __future__ import annotations

import socket
import time

import av
import numpy as np
import pytest
import yaml

from avatars.core.weights import available
from clips import mannequin_clip, mannequin_frames
from test_runtime import REPO, _finish, _free_port, _start, make_keys

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
    assert set(report["nodes"]) == {"avatar", "style", "composite", "preview"}
    assert set(laptop_rep["nodes"]) == {"camera", "pose"}
    assert laptop_rep["nodes"]["pose"]["extra"]["detected"] >= 0.9 * laptop_rep["nodes"]["pose"]["frames_in"]

    avatar = report["nodes"]["avatar"]
    received = avatar["frames_in"] + avatar["drops"]
    assert avatar["rejected"] == 0 and avatar["frames_in"] >= 10, (report, laptop_rep, err, laptop_err)
    assert 0 < avatar["net_bytes_in"] / received < 1024, avatar  # keypoints and a header, no pixels
    assert report["nodes"]["preview"]["latency"]["p50_ms"] is not None

    truth = list(mannequin_frames(FRAMES, "dance"))
    with av.open(str(out)) as c:
        shown = [(round(float(f.pts * f.time_base) * FPS), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    assert len(shown) == report["nodes"]["preview"]["frames_in"] >= 10
    indices = [i for i, _ in shown]
    assert indices == sorted(set(indices))  # newest wins: never back in time
    for i, image in shown:
        body = truth[i % FRAMES].mask  # the clip loops
        person = np.abs(image.astype(int) - [236, 228, 210]).sum(-1) > 60  # not the plain background
        person[:40] = False  # the fps/latency overlay
        assert person[body].mean() > 0.5 and person[~body].mean() < 0.1, i  # drawn where the person is
