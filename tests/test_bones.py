"""Bone rasterizer: exact depth at joint ends, linear in between, zero off the bone; both paths agree."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avatars.body.bones import BoneStyle, joint_values, rasterize_bones, rasterize_bones_torch
from avatars.body.mannequin import Camera, MannequinSequence
from avatars.body.skeleton import BONES, CHANNEL_NAMES, JOINT_NAMES, LM, NUM_CHANNELS, PARTS

H, W = 120, 200
STYLE = BoneStyle()
CH = {name: i for i, name in enumerate(CHANNEL_NAMES)}


def arm_pose(shoulder=(50.0, 60.0, -20.0), elbow=(150.0, 60.0, 40.0)) -> np.ndarray:
    """Only the left shoulder and elbow are visible: only the left upper arm is drawn."""
    kp = np.zeros((33, 4), np.float32)
    kp[LM["left_shoulder"]] = (*shoulder, 1.0)
    kp[LM["left_elbow"]] = (*elbow, 1.0)
    return kp


def expected_value(z: float, style: BoneStyle = STYLE) -> float:
    lo, hi = style.value_range
    return float(np.clip(1 - z / (style.depth_unit * max(H, W)), lo, hi))


def test_skeleton_tables_are_consistent():
    assert len(JOINT_NAMES) == 35 and len(set(CHANNEL_NAMES)) == NUM_CHANNELS
    assert {b.channel for b in BONES} == set(range(NUM_CHANNELS))  # no empty channel
    for own in ("face", "left_hand", "right_hand", "left_foot", "right_foot"):
        assert own in CHANNEL_NAMES
    assert len(PARTS) == len(set(PARTS))


def test_exact_depth_at_joint_ends_and_linear_between():
    out = rasterize_bones(arm_pose(), H, W)
    arm = out[CH["left_upper_arm"]]
    va, vb = expected_value(-20.0), expected_value(40.0)
    assert arm[60, 50] == pytest.approx(va, abs=1e-6)
    assert arm[60, 150] == pytest.approx(vb, abs=1e-6)
    xs = np.arange(50, 151)
    np.testing.assert_allclose(arm[60, 50:151], va + (xs - 50) / 100 * (vb - va), atol=1e-6)
    # across the bone the value is constant (it depends on the position along it only)
    r = STYLE.radius(H, W)
    for dy in range(1, int(np.floor(r)) + 1):
        np.testing.assert_allclose(arm[60 + dy, 50:151], arm[60, 50:151], atol=1e-6)
    np.testing.assert_allclose(joint_values(arm_pose(), H, W)[[LM["left_shoulder"], LM["left_elbow"]]], [va, vb],
                               atol=1e-6)
    # nearer = larger value
    assert va > 1.0 > vb


def test_zero_off_the_bone_and_in_other_channels():
    out = rasterize_bones(arm_pose((30.0, 20.0, 0.0), (170.0, 100.0, 10.0)), H, W)
    arm = out[CH["left_upper_arm"]]
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    a, b = np.array([30.0, 20.0]), np.array([170.0, 100.0])
    d = b - a
    t = np.clip(((xs - a[0]) * d[0] + (ys - a[1]) * d[1]) / (d @ d), 0, 1)
    dist = np.hypot(xs - (a[0] + t * d[0]), ys - (a[1] + t * d[1]))
    r = STYLE.radius(H, W)
    assert np.all(arm[dist > r + 1e-3] == 0)
    inside = dist < r - 1e-3
    want = expected_value(0.0) + t * (expected_value(10.0) - expected_value(0.0))
    np.testing.assert_allclose(arm[inside], want[inside], atol=1e-5)
    assert inside.sum() > 100
    others = np.delete(out, CH["left_upper_arm"], axis=0)
    assert not others.any()


def test_shifting_the_pose_shifts_the_maps():
    kp = MannequinSequence("walk", num_frames=1, camera=Camera(width=W, height=H))[0].joints2d
    base = rasterize_bones(kp, H, W)
    moved = kp.copy()
    moved[:, 0] += 7
    moved[:, 1] -= 3
    shifted = rasterize_bones(moved, H, W)
    np.testing.assert_allclose(shifted[:, 10:-10, 17:-10], base[:, 13:-7, 10:-17], atol=1e-5)
    assert base.any()


def test_joints_off_image_are_clipped_not_dropped():
    out = rasterize_bones(arm_pose((-100.0, 60.0, 0.0), (100.0, 60.0, 50.0)), H, W)[CH["left_upper_arm"]]
    xs = np.arange(0, 101)
    want = expected_value(0.0) + (xs + 100) / 200 * (expected_value(50.0) - expected_value(0.0))
    np.testing.assert_allclose(out[60, 0:101], want, atol=1e-6)
    assert not out[:, 105:].any()
    # wholly off-image, absurdly far, and non-finite joints draw nothing and do not crash
    assert not rasterize_bones(arm_pose((-500.0, -500.0, 0.0), (-300.0, -900.0, 0.0)), H, W).any()
    far = rasterize_bones(arm_pose((-1e9, 60.0, 0.0), (1e9, 60.0, 0.0)), H, W)[CH["left_upper_arm"]]
    assert far[60].all() and not far[:50].any()
    assert not rasterize_bones(arm_pose((np.nan, 60.0, 0.0)), H, W).any()


def test_invisible_joints_hide_their_bones():
    kp = MannequinSequence("dance", num_frames=1, camera=Camera(width=W, height=H))[0].joints2d
    full = rasterize_bones(kp, H, W)
    kp[LM["left_elbow"], 3] = STYLE.visibility_threshold - 0.01
    out = rasterize_bones(kp, H, W)
    for name in ("left_upper_arm", "left_forearm"):
        assert full[CH[name]].any() and not out[CH[name]].any()
    kept = [c for c in range(NUM_CHANNELS) if CHANNEL_NAMES[c] not in ("left_upper_arm", "left_forearm")]
    np.testing.assert_array_equal(out[kept], full[kept])
    # a hidden shoulder also hides the spine and neck (their virtual joint is untrusted)
    kp[LM["left_shoulder"], 3] = 0.0
    out = rasterize_bones(kp, H, W)
    assert not out[CH["spine"]].any() and not out[CH["neck"]].any() and out[CH["hips"]].any()


def test_nearer_bone_wins_inside_a_channel():
    kp = np.zeros((33, 4), np.float32)
    kp[LM["left_wrist"]] = (100, 20, 0, 1)
    kp[LM["left_index"]] = (100, 100, -60, 1)  # near
    kp[LM["left_pinky"]] = (60, 60, 60, 1)  # far: the pinky-index segment crosses wrist-index
    hand = rasterize_bones(kp, H, W)[CH["left_hand"]]
    t_near = (60 - 20) / 80
    near = expected_value(0.0) + t_near * (expected_value(-60.0) - expected_value(0.0))
    assert hand[60, 100] == pytest.approx(max(near, hand[60, 100]), abs=1e-6)
    assert hand[60, 100] == pytest.approx(near, abs=1e-6)


def test_torch_batch_matches_fast_path_and_is_deterministic():
    rng = np.random.default_rng(0)
    kp = np.zeros((5, 33, 4), np.float32)
    kp[..., 0] = rng.uniform(-40, W + 40, (5, 33))
    kp[..., 1] = rng.uniform(-40, H + 40, (5, 33))
    kp[..., 2] = rng.normal(0, 60, (5, 33))
    kp[..., 3] = rng.uniform(0, 1, (5, 33))
    kp[0, 3, 0] = np.nan
    fast = np.stack([rasterize_bones(k, H, W) for k in kp])
    batched = rasterize_bones_torch(torch.from_numpy(kp), H, W).numpy()
    assert batched.shape == (5, NUM_CHANNELS, H, W) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, fast, atol=1e-6)
    np.testing.assert_array_equal(batched > 0, fast > 0)
    np.testing.assert_array_equal(rasterize_bones(kp[1], H, W), fast[1])
    assert fast.any()


@pytest.mark.parametrize("size,thickness", [((H, W), 0.02), ((2 * H, 2 * W), 0.02), ((H, W), 0.06)])
def test_thickness_is_relative_to_the_frame(size, thickness):
    h, w = size
    style = BoneStyle(thickness=thickness)
    kp = arm_pose((w / 4, h / 2, -0.1 * w), (3 * w / 4, h / 2, 0.2 * w))
    arm = rasterize_bones(kp, h, w, style)[CH["left_upper_arm"]]
    radius = thickness * min(h, w) / 2
    assert (arm[:, w // 2] > 0).sum() == 2 * int(np.floor(radius)) + 1
    # values depend on depth relative to the frame size, not on the resolution
    values = joint_values(kp, h, w, style)
    assert values[LM["left_shoulder"]] == pytest.approx(1 + 0.1 / style.depth_unit, abs=1e-6)
    assert values[LM["left_elbow"]] == pytest.approx(1 - 0.2 / style.depth_unit, abs=1e-6)
    assert arm[h // 2, w // 2] == pytest.approx(0.5 * (values[LM["left_shoulder"]] + values[LM["left_elbow"]]), abs=1e-6)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"\(33, 4\)"):
        rasterize_bones(np.zeros((17, 3)), H, W)
    with pytest.raises(ValueError, match=r"\(B, 33, 4\)"):
        rasterize_bones_torch(torch.zeros(33, 4), H, W)
