"""Mannequin: its RGB, mask, part, UV, depth and joints are mutually exact (checked independently)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avatars.body.mannequin import (MOTIONS, BodyPose, Camera, Mannequin, MannequinConfig, MannequinSequence,
                               make_motion, pose_body, sample_texture)
from avatars.body.mannequin.motions import JOINT_LIMITS
from avatars.body.mannequin.textures import make_texture, uv_from_local
from avatars.body.skeleton import LM, PART, PARTS

MANNEQUIN = Mannequin()


@pytest.fixture(scope="module")
def frames():
    """A few frames of every motion from assorted cameras (front, side, behind, above)."""
    cams = [Camera(), Camera.orbit(70, width=160, height=200), Camera.orbit(180, fov_y_deg=55, distance=2.5),
            Camera(position=(1.0, 2.8, 2.0), target=(0.0, 0.9, 0.0))]
    return [MANNEQUIN.render(make_motion(m, seed=3)(0.37 * i), cams[i % len(cams)])
            for i, m in enumerate(MOTIONS * 2)]


def test_texture_sampled_at_rendered_uv_reproduces_rgb(frames):
    for f in frames:
        m = f.mask
        colour = sample_texture(MANNEQUIN.textures, f.part[m].astype(np.int64), f.uv[m])
        np.testing.assert_array_equal(np.rint(colour).astype(np.uint8), f.rgb[m])
        assert np.all(f.rgb[~m] == 0)


def test_sampler_is_torch_grid_sample(frames):
    """The avatar samples textures with grid_sample; the mannequin's RGB is exactly that lookup."""
    f = frames[0]
    tex = torch.from_numpy(MANNEQUIN.textures).permute(0, 3, 1, 2).float()  # (P, 3, T, T)
    got = np.zeros((*f.mask.shape, 3), np.float32)
    for k in range(len(PARTS)):
        sel = f.part == k
        if not sel.any():
            continue
        grid = torch.from_numpy(f.uv[sel] * 2 - 1).view(1, 1, -1, 2)
        out = torch.nn.functional.grid_sample(tex[k:k + 1], grid, mode="bilinear", padding_mode="border",
                                              align_corners=False)
        got[sel] = out[0, :, 0].T.numpy()
    np.testing.assert_allclose(got[f.mask], f.rgb[f.mask].astype(np.float32), atol=0.5 + 1e-3)


def _hits(frame, rows, cols):
    """Independent full ray/ellipsoid intersection (float64, no culling): nearest depth and part per pixel."""
    cam, body = frame.camera, pose_body(frame.pose)
    cx, cy = cam.principal_point
    d = np.stack([(cols - cx) / cam.focal, (rows - cy) / cam.focal, np.ones(len(rows))], -1)  # camera-space rays
    best, part = np.full(len(rows), np.inf), np.full(len(rows), -1)
    for k in range(len(PARTS)):
        c = cam.to_camera(body.part_centres[k])
        m = (cam.rotation @ body.part_rotations[k]).T / body.part_radii[k][:, None]
        o, dd = -m @ c, d @ m.T
        a, b, cc = (dd * dd).sum(1), 2 * dd @ o, o @ o - 1
        disc = b * b - 4 * a * cc
        t = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
        closer = (t > cam.near) & (t < best)
        best[closer], part[closer] = t[closer], k
    return best, part


def test_mask_is_the_union_of_parts_and_zbuffer_is_exact(frames):
    for f in frames[:5]:
        h, w = f.mask.shape
        rows, cols = np.divmod(np.arange(h * w), w)
        depth, part = _hits(f, rows.astype(float), cols.astype(float))
        hit = np.isfinite(depth).reshape(h, w)
        # mask == union of every part's silhouette (float32 vs float64 may differ on a grazing ray)
        assert (f.mask != hit).sum() <= 2
        hit &= f.mask
        np.testing.assert_array_equal(f.mask, f.part >= 0)
        np.testing.assert_allclose(f.depth[hit], depth.reshape(h, w)[hit], atol=2e-3)  # float32, grazing rays
        agree = (f.part == part.reshape(h, w))[hit]
        assert agree.mean() > 0.999  # only exact depth ties between overlapping parts may differ
        assert np.all(np.isinf(f.depth[~f.mask]))


def test_uv_is_the_surface_coordinate_of_the_visible_point(frames):
    for f in frames[:4]:
        cam, body = f.camera, pose_body(f.pose)
        rows, cols = np.nonzero(f.mask)
        world = cam.to_world(cam.unproject(np.stack([cols, rows], -1).astype(float), f.depth[f.mask]))
        k = f.part[f.mask].astype(int)
        q = np.einsum("nji,nj->ni", body.part_rotations[k], world - body.part_centres[k]) / body.part_radii[k]
        err = np.abs(np.linalg.norm(q, axis=1) - 1)  # on the named part's surface (float32; grazing rays worst)
        assert err.max() < 5e-3 and np.median(err) < 1e-4
        du = np.abs(uv_from_local(q) - f.uv[f.mask])
        du[:, 0] = np.minimum(du[:, 0], 1 - du[:, 0])  # u wraps at the seam
        assert np.percentile(du, 99.9) < 2e-3


def test_projected_joints_land_on_the_body(frames):
    for f in frames:
        h, w = f.mask.shape
        near = np.zeros_like(f.mask)  # mask dilated by one pixel (joints just inside the surface)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                near |= np.roll(np.roll(f.mask, dy, 0), dx, 1)
        x, y = np.rint(f.joints2d[:, 0]).astype(int), np.rint(f.joints2d[:, 1]).astype(int)
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        assert inside.sum() >= 30
        assert near[y[inside], x[inside]].all()


def test_cameras_agree_on_3d_joints_and_depth_convention():
    pose = make_motion("dance", seed=1)(1.3)
    a = MANNEQUIN.render(pose, Camera())
    b = MANNEQUIN.render(pose, Camera.orbit(120, distance=4.0, elevation=2.0, width=320, fov_y_deg=30))
    for f in (a, b):
        cam = f.camera
        world = cam.to_world(cam.unproject(f.joints2d[:, :2].astype(float), f.joints_cam[:, 2]))
        np.testing.assert_allclose(world, f.joints3d, atol=1e-4)
        z_hips = f.joints_cam[[LM["left_hip"], LM["right_hip"]], 2].mean()
        np.testing.assert_allclose(f.joints2d[:, 2], (f.joints_cam[:, 2] - z_hips) * cam.focal / z_hips, rtol=1e-5,
                                   atol=1e-3)
    np.testing.assert_allclose(a.joints3d, b.joints3d)


def test_front_view_is_not_mirrored():
    f = MANNEQUIN.render(BodyPose(), Camera())
    left, right = f.joints2d[LM["left_shoulder"], 0], f.joints2d[LM["right_shoulder"], 0]
    assert left > right  # facing the camera: the subject's left is on the image's right
    hand = f.joints2d[LM["left_wrist"], :2].round().astype(int)
    assert PARTS[f.part[hand[1], hand[0]]] in ("left_forearm", "left_hand")
    rows, cols = np.nonzero(f.part == PART["torso"])  # texture reads left to right, top to bottom
    uv = f.uv[rows, cols]
    assert np.corrcoef(cols, uv[:, 0])[0, 1] > 0.9 and np.corrcoef(rows, uv[:, 1])[0, 1] > 0.9
    back = MANNEQUIN.render(BodyPose(), Camera.orbit(180))
    assert back.joints2d[LM["left_shoulder"], 0] < back.joints2d[LM["right_shoulder"], 0]


def test_textures_are_asymmetric_and_distinct():
    for p in PARTS:
        t = make_texture(p)
        assert not np.array_equal(t, t[:, ::-1]) and not np.array_equal(t, t[::-1])
    assert not np.array_equal(make_texture("left_thigh"), make_texture("right_thigh"))
    assert len({MANNEQUIN.textures[k].tobytes() for k in range(len(PARTS))}) == len(PARTS)


def test_sequences_are_seeded_and_reproducible():
    a = MannequinSequence("random", num_frames=3, seed=5)
    b = MannequinSequence("random", num_frames=3, seed=5, mannequin=a.mannequin)
    c = MannequinSequence("random", num_frames=3, seed=6, mannequin=a.mannequin)
    for fa, fb, fc in zip(a, b, c):
        np.testing.assert_array_equal(fa.rgb, fb.rgb)
        assert not np.array_equal(fa.joints3d, fc.joints3d)
    for m in MOTIONS:
        motion = make_motion(m, seed=2)
        assert not np.allclose(motion(0.0).angles, motion(0.5).angles)  # it moves
        np.testing.assert_array_equal(motion(0.25).angles, make_motion(m, seed=2)(0.25).angles)
    poses = np.stack([make_motion("random", seed=9)(i / 30).angles for i in range(50)])
    assert np.all(poses >= JOINT_LIMITS[..., 0] - 1e-9) and np.all(poses <= JOINT_LIMITS[..., 1] + 1e-9)
    with pytest.raises(ValueError, match="unknown motion"):
        make_motion("moonwalk")
    with pytest.raises(IndexError):
        a[3]


def test_orbiting_camera_and_turn_around_show_every_side():
    seq = MannequinSequence("walk", num_frames=90, orbit_deg_per_s=120.0)
    assert np.allclose(seq.camera_at(45).position, Camera.orbit(180).position, atol=1e-9)
    turn = MannequinSequence("turn_around", num_frames=180)
    front = turn[0].uv[turn[0].part == PART["torso"]][:, 0]
    back = turn[90].uv[turn[90].part == PART["torso"]][:, 0]
    assert abs(np.median(front) - 0.5) < 0.1  # the torso's front faces the camera ...
    assert np.median(np.minimum(back, 1 - back)) < 0.1  # ... and half a turn later its back (seam at u = 0 = 1)


def test_shading_changes_only_brightness():
    pose = make_motion("walk")(0.2)
    flat = MANNEQUIN.render(pose, Camera())
    shaded = Mannequin(MannequinConfig(shading=0.6, background=(10, 20, 30))).render(pose, Camera())
    np.testing.assert_array_equal(flat.mask, shaded.mask)
    m = flat.mask
    assert np.all(shaded.rgb[m].astype(int) <= flat.rgb[m].astype(int) + 1)
    assert shaded.rgb[m].mean() < flat.rgb[m].mean()
    assert np.all(shaded.rgb[~m] == (10, 20, 30))
