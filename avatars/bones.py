"""Bone-stack rasterizer: the avatar's input (Textured Neural Avatars, section 6.3.2).

Each channel of ``CHANNEL_NAMES`` holds its bones drawn on the image plane; a pixel is on
a bone when its centre lies within ``radius`` of the segment between the two projected
joints (a 2D capsule, rounded ends). On the bone the value is interpolated linearly
between the two joints' values along the segment (the foot of the perpendicular), zero
elsewhere.

Channel value. A joint's value is ``clip(1 - z / (depth_unit * max(H, W)), *value_range)``
where z is the keypoint depth (relative to the hip midpoint, pixels, larger = farther; see
``avatars.skeleton``). So hip-depth joints read 1.0, nearer joints more, farther less, the
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

from avatars.skeleton import BONES, NUM_CHANNELS, NUM_LANDMARKS, VIRTUAL_JOINTS, with_virtual_joints

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
    out = np.zeros((NUM_CHANNELS, height, width), dtype=np.float32)
    for a, b, channel in zip(_BONE_A, _BONE_B, _BONE_CHANNEL):
        if not (ok[a] and ok[b]):
            continue
        ax, ay = joints[a, 0], joints[a, 1]
        dx, dy = joints[b, 0] - ax, joints[b, 1] - ay
        x0 = max(int(np.floor(min(ax, ax + dx) - radius)), 0)
        x1 = min(int(np.ceil(max(ax, ax + dx) + radius)), width - 1)
        y0 = max(int(np.floor(min(ay, ay + dy) - radius)), 0)
        y1 = min(int(np.ceil(max(ay, ay + dy) + radius)), height - 1)
        if x0 > x1 or y0 > y1:
            continue
        px = np.arange(x0, x1 + 1, dtype=np.float32)[None, :] - ax
        py = np.arange(y0, y1 + 1, dtype=np.float32)[:, None] - ay
        length2 = dx * dx + dy * dy
        t = (px * dx + py * dy) / length2 if length2 > 0 else np.zeros_like(px * py)
        t = np.clip(t, np.float32(0), np.float32(1))
        ex, ey = px - t * dx, py - t * dy
        value = values[a] + t * (values[b] - values[a])
        value = np.where(ex * ex + ey * ey <= r2, value, np.float32(0))
        region = out[channel, y0:y1 + 1, x0:x1 + 1]
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
    r2 = np.float32(style.radius(height, width)) ** 2
    device = keypoints.device
    xs = torch.arange(width, dtype=torch.float32, device=device).view(1, 1, width)
    ys = torch.arange(height, dtype=torch.float32, device=device).view(1, height, 1)
    batch = kp.shape[0]
    out = torch.zeros(batch, NUM_CHANNELS, height, width, dtype=torch.float32, device=device)
    for a, b, channel in zip(_BONE_A, _BONE_B, _BONE_CHANNEL):
        ax, ay = joints[:, a, 0].view(-1, 1, 1), joints[:, a, 1].view(-1, 1, 1)
        dx, dy = joints[:, b, 0].view(-1, 1, 1) - ax, joints[:, b, 1].view(-1, 1, 1) - ay
        px, py = xs - ax, ys - ay
        length2 = dx * dx + dy * dy
        t = torch.where(length2 > 0, (px * dx + py * dy) / length2.clamp_min(torch.finfo(torch.float32).tiny), 0.0)
        t = t.clamp(0.0, 1.0)
        ex, ey = px - t * dx, py - t * dy
        va, vb = values[:, a].view(-1, 1, 1), values[:, b].view(-1, 1, 1)
        value = va + t * (vb - va)
        drawn = (ex * ex + ey * ey <= r2) & (ok[:, a] & ok[:, b]).view(-1, 1, 1)
        out[:, channel] = torch.maximum(out[:, channel], torch.where(drawn, value, 0.0))
    return out
