"""Pose extraction: real MediaPipe on mannequin renders (exact ground truth) and on real video."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from avatars.body.mannequin import Camera, MannequinSequence
from avatars.body.pose import (GapFiller, OneEuroConfig, OneEuroFilter, PoseConfig, PoseEstimator, PoseFileError,
                          PoseResult, PoseTrack, empty_pose, extract_poses, load_poses, save_poses)
from avatars.body.skeleton import LM

BODY = [LM[f"{s}_{j}"] for s in ("left", "right") for j in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")]


def test_one_euro_smooths_noise_and_follows_motion():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(OneEuroConfig(min_cutoff=1.0, beta=0.0))
    t = np.arange(120) / 30
    noisy = 0.5 + rng.normal(0, 0.01, (120, 3))
    out = np.array([f(x, ti) for x, ti in zip(noisy, t)])
    assert out[30:].std() < 0.4 * noisy[30:].std()
    # a ramp: with speed adaptation (beta) the lag shrinks
    ramp = np.stack([t, t, t], 1)
    lag = {}
    for beta in (0.0, 5.0):
        f = OneEuroFilter(OneEuroConfig(min_cutoff=1.0, beta=beta))
        lag[beta] = ramp[-1, 0] - [f(x, ti) for x, ti in zip(ramp, t)][-1][0]
    assert 0 < lag[5.0] < 0.5 * lag[0.0]
    f.reset()
    np.testing.assert_array_equal(f(np.ones(3) * 7, 0.0), np.ones(3) * 7)  # fresh start after reset
    np.testing.assert_array_equal(f(np.ones(3), 0.0), np.ones(3) * 7)  # repeated timestamp: no update


def _result(pts: float, detected: bool) -> PoseResult:
    kp = np.full((33, 4), pts, np.float32)
    return PoseResult(kp, np.zeros((33, 3), np.float32), detected, pts, (64, 48)) if detected else \
        empty_pose(pts, (64, 48))


def test_gap_filler_hold_and_blank():
    hold = GapFiller("hold", max_hold_s=0.1)
    assert hold(_result(0.0, True)).keypoints[0, 0] == 0.0
    held = hold(_result(0.05, False))
    assert held.held and not held.detected and held.keypoints[0, 3] == 0.0 and held.pts == 0.05
    assert np.array_equal(held.keypoints, _result(0.0, True).keypoints)
    late = hold(_result(0.5, False))  # held too long: blank
    assert not late.held and not late.keypoints[:, 3].any()
    blank = GapFiller("blank")
    blank(_result(0.0, True))
    assert not blank(_result(0.03, False)).keypoints[:, 3].any()
    with pytest.raises(ValueError, match="hold"):
        GapFiller("interpolate")


def _track(t: int = 4) -> PoseTrack:
    rng = np.random.default_rng(1)
    return PoseTrack(rng.normal(size=(t, 33, 4)).astype(np.float32), rng.normal(size=(t, 33, 3)).astype(np.float32),
                     np.array([True, False] * (t // 2)), np.arange(t) / 25.0, (640, 480), 25.0)


def test_pose_file_round_trip_and_clear_errors(tmp_path):
    path = tmp_path / "poses.npz"
    save_poses(path, _track())
    back = load_poses(path)
    for name in ("keypoints", "world", "detected", "pts"):
        np.testing.assert_array_equal(getattr(back, name), getattr(_track(), name))
    assert back.frame_size == (640, 480) and back.fps == 25.0 and back.detection_rate == 0.5

    bad = dict(np.load(path))
    bad["keypoints"] = bad["keypoints"][:, :17]
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(PoseFileError, match=r"bad\.npz.*'keypoints'"):
        load_poses(tmp_path / "bad.npz")
    del bad["pts"]
    np.savez(tmp_path / "missing.npz", **bad)
    with pytest.raises(PoseFileError, match=r"missing\.npz.*pts"):
        load_poses(tmp_path / "missing.npz")
    obj = dict(np.load(path))
    obj["detected"] = np.array([None] * 4, dtype=object)  # would need pickle: refused
    np.savez(tmp_path / "pickled.npz", **obj)
    with pytest.raises(PoseFileError, match=r"pickled\.npz.*'detected'"):
        load_poses(tmp_path / "pickled.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(PoseFileError, match="text.npz"):
        load_poses(tmp_path / "text.npz")
    with pytest.raises(FileNotFoundError):
        load_poses(tmp_path / "nope.npz")


@pytest.fixture(scope="module")
def estimator():
    with PoseEstimator(PoseConfig(segmentation=True), smoothing=None) as est:
        yield est


def test_mediapipe_finds_the_mannequin_where_it_is(estimator):
    """Real MediaPipe on mannequin renders: detected, body joints within a few pixels, left is left."""
    seq = MannequinSequence("walk", num_frames=4, fps=10.0, camera=Camera(width=256, height=256))
    for f in seq:
        r = estimator.process(f.rgb, pts=None)
        assert r.detected and r.keypoints.shape == (33, 4) and r.keypoints.dtype == np.float32
        err = np.linalg.norm(r.keypoints[BODY, :2] - f.joints2d[BODY, :2], axis=1)
        assert np.median(err) < 8.0, err
        swapped = np.linalg.norm(r.keypoints[LM["left_shoulder"], :2] - f.joints2d[LM["right_shoulder"], :2])
        assert err[0] < swapped
        assert r.mask is not None and r.mask.shape == (256, 256)
        assert (r.mask > 0.5)[f.mask].mean() > 0.7  # the person mask covers the body
        assert abs(r.world[LM["left_hip"], 0] - r.world[LM["right_hip"], 0]) < 0.5  # metres, hip-centred


def test_no_person_is_flagged_not_fatal(estimator):
    r = estimator.process(np.full((120, 160, 3), 90, np.uint8), pts=1.0)
    assert not r.detected and not r.keypoints[:, 3].any() and r.frame_size == (160, 120)
    with pytest.raises(ValueError, match="RGB uint8"):
        estimator.process(np.zeros((120, 160, 3), np.float32))
    with pytest.raises(ValueError, match="RGB uint8"):
        estimator.process(np.zeros((120, 160), np.uint8))


def test_extract_poses_on_real_video(media, tmp_path, caplog):
    video = media / "video" / "kinetics_ta_chi_340x256.mp4"
    out = tmp_path / "ta_chi.npz"
    with caplog.at_level(logging.DEBUG, logger="avatars.body.pose"):
        stats = extract_poses(video, out, max_frames=6)
    assert "detected in 6/6 frames" in caplog.text
    assert stats.frames == 6 and stats.detection_rate == 1.0 and stats.pose_ms_per_frame > 0
    track = load_poses(out)
    assert len(track) == 6 and track.frame_size == (340, 256) and abs(track.fps - 29.97) < 0.01
    assert np.all(np.diff(track.pts) > 0)
    kp = track.keypoints[:, BODY]
    assert np.all((kp[..., 0] > 0) & (kp[..., 0] < 340) & (kp[..., 1] > 0) & (kp[..., 1] < 256))


def test_extract_poses_rejects_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="video not found"):
        extract_poses(tmp_path / "missing.mp4", None, progress=False)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 10)
    with pytest.raises(ValueError, match="junk.mp4"):
        extract_poses(junk, None, progress=False)
