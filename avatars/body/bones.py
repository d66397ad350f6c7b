"""Bone-stack rasterizer: the avatar's input (Textured Neural Avatars, section 6.3.2).

Each channel of ``CHANNEL_NAMES`` holds its bones drawn on the image plane; a pixel is on
a bone when its centre lies within ``radius`` of the segment between the two projected
joints (a 2D capsule, rounded ends). On the bone the value is interpolated linearly
between the two joints' values along the segment (the foot of the perpendicular), zero
elsewhere.

Channel value. A joint's value is ``clip(1 - z / (depth_unit * max(H, W)), *value_range)``
where z is the keypoint depth (relative to the hip midpoint, pixels, larger = farther; see
``avatars.body.skeleton``). So hip-depth joints read 1.0, nearer joints more, farther less, the
values stay O(1) at any frame size (well scaled for a network), they never reach the
background's 0, and - the affine map preserving linearity - the value is still exactly
linear in depth between two joints. Where bones of one channel overlap, the nearer wins
(the larger value), i.e. a z-buffer. ``joint_values`` exposes the per-joint values so
tests can check "exact depth at the joint ends".

Two implementations with the same arithmetic (float32, same operation order, so equal
to float32 rounding; tests hold them to 1e-6):

* ``rasterize_bones``: numpy, one pose, works only inside each bone's bounding box - the
  streaming path (well under a millisecond per frame at 256x256).
* ``rasterize_bones_torch``: batched torch over the full grid on any device - the training
  path.

Joints with visibility below ``visibility_threshold``, or non-finite coordinates, hide
their bones. Joints off the image are fine: the segment is drawn where it crosses the frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from avatars.body.skeleton import BONES, NUM_CHANNELS, NUM_LANDMARKS, VIRTUAL_JOINTS, with_virtual_joints

_BONE_A = np.array([b.a for b in BONES])
_BONE_B = np.array([b.b for b in BONES])
_BONE_CHANNEL = np.array([b.channel for b in BONES])


@dataclass(frozen=True)
class BoneStyle:
    """How bones are drawn; every length is relative to the frame so any resolution matches.

    thickness: bone width as a fraction of min(H, W) (radius = thickness * min(H, W) / 2).
    depth_unit: depth change (fraction of max(H, W)) that moves the value by 1.
    value_range: clip of the per-joint value; the lower bound keeps bones distinct from 0.
    visibility_threshold: joints below it are treated as missing.
    """

    thickness: float = 0.02
    depth_unit: float = 0.5
    value_range: tuple[float, float] = (0.1, 2.0)
    visibility_threshold: float = 0.5

    def radius(self, height: int, width: int) -> float:
        return 0.5 * self.thickness * min(height, width)


def joint_values(keypoints: np.ndarray, height: int, width: int, style: BoneStyle = BoneStyle()) -> np.ndarray:
    """Channel value of every joint (33 landmarks + virtual joints) for ``(..., 33, 4)`` keypoints."""
    z = with_virtual_joints(keypoints)[..., 2]
    lo, hi = style.value_range
    return np.clip(np.float32(1.0) - z / np.float32(style.depth_unit * max(height, width)), lo, hi).astype(np.float32)


def _clip_segments(ax, ay, bx, by, va, vb, box: tuple[float, float, float, float], xp):
    """Liang-Barsky clip of segments (float64 arrays of numpy or torch, ``xp`` the module) to ``box``.

    ``box`` = (xmin, xmax, ymin, ymax) extends the pixel grid by more than the radius, so
    the clipped-off pieces and their end caps could not have touched a pixel; clipping
    only keeps float32 exact for joints far off the image. End values are re-interpolated
    (the value is linear along the bone). Returns the clipped (ax, ay, bx, by, va, vb, keep).
    """
    xmin, xmax, ymin, ymax = box
    dx, dy = bx - ax, by - ay
    t0, t1 = xp.zeros_like(ax), xp.ones_like(ax)
    reject = xp.zeros_like(ax) > 0
    for p, q in ((-dx, ax - xmin), (dx, xmax - ax), (-dy, ay - ymin), (dy, ymax - ay)):
        r = q / xp.where(p == 0, xp.ones_like(p), p)
        t0 = xp.where(p < 0, xp.maximum(t0, r), t0)
        t1 = xp.where(p > 0, xp.minimum(t1, r), t1)
        reject = reject | ((p == 0) & (q < 0))
    keep = ~reject & (t0 <= t1)
    dv = vb - va
    ax, ay, va, bx, by, vb = (xp.where(t0 > 0, ax + t0 * dx, ax), xp.where(t0 > 0, ay + t0 * dy, ay),
                              xp.where(t0 > 0, va + t0 * dv, va), xp.where(t1 < 1, ax + t1 * dx, bx),
                              xp.where(t1 < 1, ay + t1 * dy, by), xp.where(t1 < 1, va + t1 * dv, vb))
    return ax, ay, bx, by, va, vb, keep


def _box(height: int, width: int, radius: float) -> tuple[float, float, float, float]:
    pad = radius + 2.0
    return -pad, width - 1 + pad, -pad, height - 1 + pad


def _check(keypoints_shape: tuple[int, ...], batched: bool) -> None:
    want = "(B, 33, 4)" if batched else "(33, 4)"
    ok = len(keypoints_shape) == (3 if batched else 2) and tuple(keypoints_shape[-2:]) == (NUM_LANDMARKS, 4)
    if not ok:
        raise ValueError(f"keypoints must have shape {want}, got {tuple(keypoints_shape)}")


def rasterize_bones(keypoints: np.ndarray, height: int, width: int, style: BoneStyle = BoneStyle()) -> np.ndarray:
    """Bone stack ``(NUM_CHANNELS, H, W)`` float32 of one pose ``(33, 4)`` (streaming path)."""
    keypoints = np.asarray(keypoints, dtype=np.float32)
    _check(keypoints.shape, batched=False)
    joints = with_virtual_joints(keypoints)
    values = joint_values(keypoints, height, width, style)
    ok = np.isfinite(joints[:, :3]).all(axis=1) & (joints[:, 3] >= style.visibility_threshold)
    radius = np.float32(style.radius(height, width))
    r2 = radius * radius
    j = joints.astype(np.float64)
    v = values.astype(np.float64)
    ax, ay, bx, by, va, vb, keep = (np.asarray(x, np.float32) for x in _clip_segments(
        j[_BONE_A, 0], j[_BONE_A, 1], j[_BONE_B, 0], j[_BONE_B, 1], v[_BONE_A], v[_BONE_B],
        _box(height, width, float(radius)), np))
    keep = keep.astype(bool) & ok[_BONE_A] & ok[_BONE_B]
    out = np.zeros((NUM_CHANNELS, height, width), dtype=np.float32)
    for i in np.flatnonzero(keep):
        dx, dy = bx[i] - ax[i], by[i] - ay[i]
        x0 = max(int(np.floor(min(ax[i], bx[i]) - radius)), 0)
        x1 = min(int(np.ceil(max(ax[i], bx[i]) + radius)), width - 1)
        y0 = max(int(np.floor(min(ay[i], by[i]) - radius)), 0)
        y1 = min(int(np.ceil(max(ay[i], by[i]) + radius)), height - 1)
        if x0 > x1 or y0 > y1:
            continue
        px = np.arange(x0, x1 + 1, dtype=np.float32)[None, :] - ax[i]
        py = np.arange(y0, y1 + 1, dtype=np.float32)[:, None] - ay[i]
        length2 = dx * dx + dy * dy
        t = (px * dx + py * dy) / length2 if length2 > 0 else np.zeros_like(px * py)
        t = np.clip(t, np.float32(0), np.float32(1))
        ex, ey = px - t * dx, py - t * dy
        value = va[i] + t * (vb[i] - va[i])
        value = np.where(ex * ex + ey * ey <= r2, value, np.float32(0))
        region = out[_BONE_CHANNEL[i], y0:y1 + 1, x0:x1 + 1]
        np.maximum(region, value, out=region)
    return out


def rasterize_bones_torch(keypoints: torch.Tensor, height: int, width: int, style: BoneStyle = BoneStyle()) -> torch.Tensor:
    """Bone stacks ``(B, NUM_CHANNELS, H, W)`` float32 of poses ``(B, 33, 4)``, on their device (training path)."""
    _check(tuple(keypoints.shape), batched=True)
    kp = keypoints.to(torch.float32)
    extra = []
    for _, (i, j) in VIRTUAL_JOINTS:
        pos = 0.5 * (kp[:, i, :3] + kp[:, j, :3])
        extra.append(torch.cat([pos, torch.minimum(kp[:, i, 3:], kp[:, j, 3:])], dim=-1))
    joints = torch.cat([kp, torch.stack(extra, dim=1)], dim=1)
    lo, hi = style.value_range
    values = (1.0 - joints[..., 2] / np.float32(style.depth_unit * max(height, width))).clamp(lo, hi)
    ok = torch.isfinite(joints[..., :3]).all(dim=-1) & (joints[..., 3] >= style.visibility_threshold)
    radius = np.float32(style.radius(height, width))
    r2 = radius * radius
    j = joints.to(torch.float64)
    v = values.to(torch.float64)
    a_idx, b_idx = torch.as_tensor(_BONE_A, device=kp.device), torch.as_tensor(_BONE_B, device=kp.device)
    ax, ay, bx, by, va, vb, keep = _clip_segments(
        j[:, a_idx, 0], j[:, a_idx, 1], j[:, b_idx, 0], j[:, b_idx, 1], v[:, a_idx], v[:, b_idx],
        _box(height, width, float(radius)), torch)
    ax, ay, bx, by, va, vb = (x.to(torch.float32) for x in (ax, ay, bx, by, va, vb))
    drawn_bone = keep & ok[:, a_idx] & ok[:, b_idx]  # (B, bones)
    device = keypoints.device
    xs = torch.arange(width, dtype=torch.float32, device=device).view(1, 1, width)
    ys = torch.arange(height, dtype=torch.float32, device=device).view(1, height, 1)
    out = torch.zeros(kp.shape[0], NUM_CHANNELS, height, width, dtype=torch.float32, device=device)
    for i, channel in enumerate(_BONE_CHANNEL):
        x0, y0 = ax[:, i].view(-1, 1, 1), ay[:, i].view(-1, 1, 1)
        dx, dy = bx[:, i].view(-1, 1, 1) - x0, by[:, i].view(-1, 1, 1) - y0
        px, py = xs - x0, ys - y0
        length2 = dx * dx + dy * dy
        t = torch.where(length2 > 0, (px * dx + py * dy) / length2.clamp_min(torch.finfo(torch.float32).tiny), 0.0)
        t = t.clamp(0.0, 1.0)
        ex, ey = px - t * dx, py - t * dy
        v0, v1 = va[:, i].view(-1, 1, 1), vb[:, i].view(-1, 1, 1)
        value = v0 + t * (v1 - v0)
        drawn = (ex * ex + ey * ey <= r2) & drawn_bone[:, i].view(-1, 1, 1)
        out[:, channel] = torch.maximum(out[:, channel], torch.where(drawn, value, 0.0))
    return out
