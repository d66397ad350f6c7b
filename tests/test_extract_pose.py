"""`python -m launch extract-pose`: a real clip (mannequin renders encoded on the fly) through real MediaPipe."""
from __future__ import annotations

import subprocess
import sys

from avatars.body.pose import load_poses
from launch.command import Exit
from clips import mannequin_clip



def test_extract_pose_writes_a_track_and_reports_detection(tmp_path):
    video, out = tmp_path / "walk.mp4", tmp_path / "walk.npz"
    mannequin_clip(video)
    r = subprocess.run([sys.executable, "-m", "launch", "extract-pose", str(video), "-o", str(out)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "detection rate 100.0%" in r.stdout
    track = load_poses(out)
    assert track.keypoints.shape == (12, 33, 4) and track.detected.all()
    assert track.frame_size == (256, 256)


def test_extract_pose_names_a_missing_video(tmp_path):
    r = subprocess.run([sys.executable, "-m", "launch", "extract-pose", str(tmp_path / "nope.mp4"), "-o",
                        str(tmp_path / "x.npz")], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == Exit.REFUSED and "nope.mp4" in r.stderr and not (tmp_path / "x.npz").exists()
