"""make-avatar as a user runs it: a real clip in, an avatar out that the graphs find by name (real
MediaPipe, real training, a real graph check); clips that cannot give an avatar refused before training."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from stream.media import write_video

CLIP = "mmhuman3d_single_person_demo.mp4"   # 40 frames, one person, 1080x1920


def launch(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {"NEURAL_STREAM_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "launch", *argv], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)


def test_a_clip_becomes_an_avatar_the_graphs_find_by_name(media, tmp_path):
    clip = media / "video" / CLIP
    r = launch(tmp_path, "make-avatar", str(clip), "-o", "me", "--minutes", "0.4", "--threads", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    avatar = tmp_path / "home" / "avatar" / "me.safetensors"
    record = json.loads(avatar.with_suffix(".json").read_text())
    assert record["kind"] == "textured" and record["source"] == CLIP and record["step"] > 0
    assert record["scores"]["parts_used"] >= 12 and 0 < record["scores"]["ssim_person"] < 1
    assert "[4/4]" in r.stdout and f"avatar    {avatar}" in r.stdout and "--set avatar.model=me" in r.stdout
    # the name works where a shipped one does: the graph check (a node process resolves it the same way)
    r = launch(tmp_path, "validate", "demo", "--set", "avatar.model=me")
    assert r.returncode == 0, r.stderr
    # again: refused without --overwrite, nothing touched
    stamp = avatar.stat().st_mtime_ns
    r = launch(tmp_path, "make-avatar", str(clip), "-o", "me", "--minutes", "0.1")
    assert r.returncode == 2 and "exists" in r.stderr and "--overwrite" in r.stderr and avatar.stat().st_mtime_ns == stamp


def test_clips_without_a_person_or_too_short_are_refused_before_training(media, tmp_path):
    g = np.random.default_rng(0)
    empty = write_video(tmp_path / "empty.mp4", [g.integers(0, 255, (128, 128, 3), np.uint8)] * 8)
    r = launch(tmp_path, "make-avatar", str(empty), "-o", "nobody", "--quiet")
    assert r.returncode == 2 and "no frame with a visible person" in r.stderr
    import av

    with av.open(str(media / "video" / CLIP)) as c:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(12), c.decode(video=0))]
    short = write_video(tmp_path / "short.mp4", frames)
    r = launch(tmp_path, "make-avatar", str(short), "-o", "short", "--quiet")
    assert r.returncode == 2 and "only 12 frames with a person" in r.stderr and "longer clip" in r.stderr
    assert not list((tmp_path / "home" / "avatar").glob("*.safetensors"))
    r = launch(tmp_path, "make-avatar", str(short), "-o", "mannequin_avatar")
    assert r.returncode == 2 and "shipped avatar's name" in r.stderr


def test_two_people_are_told_apart_from_one():
    from launch.make_avatar import _two_people

    one = np.zeros((4, 64, 64), np.uint8)
    one[:, 10:50, 20:40] = 255
    two = one.copy()
    two[:, 10:50, 45:60] = 255
    assert _two_people(one) == 0 and _two_people(two) == 1
