"""The browser preview, seen by a real browser: headless Chromium screenshots of the page must show
the live picture, and two screenshots a moment apart must differ (the picture moves); and the
glass-to-glass figures it records for what it served to a viewer reading /stream.mjpg."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream.nodes.preview import mjpeg_frames

CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def screenshot(url: str, path: Path, profile: Path) -> np.ndarray:
    shutil.rmtree(profile, ignore_errors=True)
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                    "--hide-scrollbars", "--window-size=640,360", "--virtual-time-budget=1000",
                    f"--screenshot={path}", url], check=True, capture_output=True, timeout=60)
    image = cv2.imread(str(path))
    assert image is not None, f"chromium wrote no screenshot at {path}"
    return image


@pytest.fixture
def preview(tmp_path: Path):
    """The shipped preview graph running (endless live test pattern) on a free port; its URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "launch", "run", "preview", "--quiet",
                             "--set", f"preview.port={port}", "--for", "60"], cwd=tmp_path)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "frame.jpg", timeout=5).read()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(30)


def test_frame_endpoint_serves_jpeg(preview: str) -> None:
    with urllib.request.urlopen(preview + "frame.jpg", timeout=5) as response:
        assert response.headers["Content-Type"] == "image/jpeg"
        image = cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (360, 640, 3)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (apt-get install chromium)")
def test_page_shows_the_live_picture_in_chromium(preview: str, tmp_path: Path) -> None:
    first = screenshot(preview, tmp_path / "a.png", tmp_path / "profile")
    time.sleep(1.0)
    second = screenshot(preview, tmp_path / "b.png", tmp_path / "profile")
    assert first.shape == (360, 640, 3)
    assert first.std() > 30  # the colourful test pattern, not a blank page
    assert np.abs(first.astype(int) - second.astype(int)).mean() > 5  # the picture changed


def test_preview_records_the_age_of_each_frame_it_serves(tmp_path: Path) -> None:
    """A viewer reads /stream.mjpg over loopback; the report then counts what was served to it and how old
    (capture to served) those frames were."""
    port, report = free_port(), tmp_path / "report.json"
    proc = subprocess.Popen([sys.executable, "-m", "launch", "run", "preview", "--quiet", "--set", f"preview.port={port}",
                             "--for", "8", "--report", str(report)], cwd=tmp_path)
    deadline, got = time.monotonic() + 30, []
    while not got:
        try:
            for jpeg in mjpeg_frames(f"http://127.0.0.1:{port}/stream.mjpg", timeout=5):
                got.append(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))
                if len(got) == 20:
                    break
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, "the preview never served"
            time.sleep(0.2)
    assert proc.wait(60) == 0
    preview = json.loads(report.read_text())["nodes"]["preview"]
    assert all(image.shape == (360, 640, 3) for image in got)
    # every frame read was counted, none twice (one viewer gets each encoded frame at most once)
    assert len(got) <= preview["extra"]["served"] <= preview["frames_in"]
    ages = preview["extra"]["glass_to_glass"]
    assert 0 < ages["p50_ms"] <= ages["p99_ms"] < 5000, ages


def test_a_viewer_streaming_when_the_run_ends_is_let_go(tmp_path: Path) -> None:
    """The preview's close() ends every /stream.mjpg it is writing (a viewer's stream ends with the run, the
    server shut down, no close() failure in the log)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "launch", "run", "preview", "--quiet", "--set", f"preview.port={port}",
                             "--for", "6"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline, frames = time.monotonic() + 30, 0
    while not frames:
        try:
            for _ in mjpeg_frames(f"http://127.0.0.1:{port}/stream.mjpg", timeout=20):
                frames += 1   # until the stream ends: the run's end, not a read timeout (that raises)
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, "the preview never served"
            time.sleep(0.2)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "close() failed" not in err, err
