"""Per-part procedural textures and the texture sampler shared with the avatar.

Surface coordinates: each part is an ellipsoid; a surface point with unit-sphere local
coordinates q (``body``'s part frame divided by the semi-axes) has
``u = atan2(q_x, q_z) / 2pi + 1/2`` (0.5 = the part's front, the seam at its back, u grows
towards the subject's left) and ``v = arccos(q_y) / pi`` (0 = the part's top end at rest).
Texture rows follow v and columns follow u, so seen from the front a texture appears
unmirrored (its text reads left to right).

Textures carry asymmetric detail - the part's name in letters, bands whose width grows
with v, a brightness ramp along u, an arrow on one side - so a swapped part, a mirrored u
or a flipped v is visible at a glance and measurable. The head has a face whose eyes,
nose and mouth sit where the face landmarks are.

``sample_texture`` is bilinear with border clamping and texel centres at (i + 0.5) / T:
exactly ``torch.nn.functional.grid_sample(..., mode="bilinear", padding_mode="border",
align_corners=False)`` with ``grid = 2 * uv - 1``, the avatar's sampler.
"""
from __future__ import annotations

import cv2
import numpy as np

from avatars.body.skeleton import PARTS

_SKIN = (222, 170, 138)
_SHIRT = (46, 96, 178)
_TROUSERS = (112, 84, 60)
_SHOES = (40, 40, 44)
_HAIR = (52, 34, 24)
_COLOURS = {
    "head": _SKIN, "torso": _SHIRT, "pelvis": _TROUSERS,
    "upper_arm": _SHIRT, "forearm": _SKIN, "hand": _SKIN,
    "thigh": _TROUSERS, "shin": _TROUSERS, "foot": _SHOES,
}
_LABELS = {
    "head": "H", "torso": "T", "pelvis": "P", "upper_arm": "UA", "forearm": "FA",
    "hand": "HD", "thigh": "TH", "shin": "SH", "foot": "FT",
}


def _split(part: str) -> tuple[str, str]:
    """'left_upper_arm' -> ('L', 'upper_arm'); 'torso' -> ('', 'torso')."""
    for side in ("left", "right"):
        if part.startswith(side + "_"):
            return side[0].upper(), part[len(side) + 1:]
    return "", part


def _uv_px(size: int, u: float, v: float) -> tuple[int, int]:
    return int(round(u * size - 0.5)), int(round(v * size - 0.5))


def _draw_face(tex: np.ndarray) -> None:
    """Hair at the top and back, and a face whose features sit at the face landmarks' (u, v)."""
    size = tex.shape[0]
    u = (np.arange(size) + 0.5) / size
    v = (np.arange(size) + 0.5) / size
    hair = (v[:, None] < 0.24) | ((np.abs(u[None, :] - 0.5) > 0.2) & (v[:, None] < 0.62))
    tex[hair] = _HAIR
    r = max(size // 40, 1)
    for side in (1, -1):  # eye: azimuth 0.34 rad, elevation 0.22 rad (see body._face)
        eye = _uv_px(size, 0.5 + side * 0.34 / (2 * np.pi), 0.5 - 0.22 / np.pi)
        cv2.ellipse(tex, eye, (2 * r, r), 0, 0, 360, (250, 250, 250), -1, cv2.LINE_AA)
        cv2.circle(tex, eye, r, (40, 30, 30), -1, cv2.LINE_AA)
        brow = (eye[0], eye[1] - 3 * r)
        cv2.line(tex, (brow[0] - 2 * r, brow[1]), (brow[0] + 2 * r, brow[1]), _HAIR, r, cv2.LINE_AA)
    nose = _uv_px(size, 0.5, 0.5 + 0.10 / np.pi)
    cv2.circle(tex, nose, r, (190, 130, 105), -1, cv2.LINE_AA)
    mouth = [_uv_px(size, 0.5 + s * 0.28 / (2 * np.pi), 0.5 + 0.45 / np.pi) for s in (-1, 1)]
    cv2.line(tex, mouth[0], mouth[1], (150, 50, 50), r + 1, cv2.LINE_AA)
    cv2.circle(tex, _uv_px(size, 0.5 + 0.5 / (2 * np.pi), 0.62), r, (120, 70, 50), -1)  # mole, left cheek


def make_texture(part: str, size: int = 128) -> np.ndarray:
    """The procedural texture ``(size, size, 3)`` uint8 of one part."""
    side, kind = _split(part)
    base = np.array(_COLOURS[kind], dtype=np.float32)
    if side == "R":
        base = base * np.float32(0.85) + np.float32(20.0)
    u = (np.arange(size, dtype=np.float32) + 0.5) / size
    v = (np.arange(size, dtype=np.float32) + 0.5) / size
    ramp = 0.8 + 0.4 * u[None, :, None]
    # bands whose width grows with v: phase = 6 v^2 cycles
    band = np.where(np.sin(2 * np.pi * 6 * v ** 2) > 0.8, 0.75, 1.0)[:, None, None]
    tex = np.clip(base * ramp * band, 0, 255).astype(np.uint8)
    tex = np.broadcast_to(tex, (size, size, 3)).copy()
    if kind == "head":
        _draw_face(tex)
        return tex
    scale = size / 128
    label = side + _LABELS[kind]
    (w, h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.9 * scale, max(int(2 * scale), 1))
    ink = (250, 250, 250) if base.mean() < 140 else (20, 20, 20)
    cv2.putText(tex, label, (size // 2 - w // 2, size // 2 + h // 2), cv2.FONT_HERSHEY_SIMPLEX,
                0.9 * scale, ink, max(int(2 * scale), 1), cv2.LINE_AA)
    # an arrow on the left flank (u = 0.75) pointing to the part's top end
    x = int(0.75 * size)
    cv2.arrowedLine(tex, (x, int(0.8 * size)), (x, int(0.2 * size)), ink, max(int(2 * scale), 1),
                    cv2.LINE_AA, tipLength=0.25)
    return tex


def make_textures(size: int = 128) -> np.ndarray:
    """Textures of all ``PARTS``, ``(P, size, size, 3)`` uint8."""
    return np.stack([make_texture(p, size) for p in PARTS])


def uv_from_local(q: np.ndarray) -> np.ndarray:
    """Unit-sphere local points ``(..., 3)`` -> surface coordinates ``(..., 2)`` in [0, 1]."""
    u = np.arctan2(q[..., 0], q[..., 2]) * np.float32(0.5 / np.pi) + np.float32(0.5)
    v = np.arccos(np.clip(q[..., 1], -1, 1)) * np.float32(1 / np.pi)
    return np.stack([u, v], -1).astype(np.float32)


def sample_texture(textures: np.ndarray, part: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of ``textures (P, T, T, C)`` at ``part (N,)``, ``uv (N, 2)`` -> ``(N, C)`` float32."""
    size_y, size_x = textures.shape[1:3]
    x = np.clip(uv[:, 0].astype(np.float32) * size_x - 0.5, 0, size_x - 1)
    y = np.clip(uv[:, 1].astype(np.float32) * size_y - 0.5, 0, size_y - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, size_x - 1), np.minimum(y0 + 1, size_y - 1)
    wx, wy = (x - x0)[:, None], (y - y0)[:, None]
    t = textures.astype(np.float32, copy=False)
    top = t[part, y0, x0] * (1 - wx) + t[part, y0, x1] * wx
    bottom = t[part, y1, x0] * (1 - wx) + t[part, y1, x1] * wx
    return top * (1 - wy) + bottom * wy
