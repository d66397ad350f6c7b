"""Procedural motions and random plausible poses for the mannequin; all seeded and reproducible.

A motion is a callable ``t (seconds) -> BodyPose``. ``make_motion(name, seed)`` builds one of
``MOTIONS``; the seed varies amplitudes, tempo and phase a little (a different but
repeatable performance), so the same (name, seed, t) always gives the same pose. "random"
draws an independent plausible pose per timestamp from ``JOINT_LIMITS``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from avatars.body.mannequin.body import JOINT, JOINTS, PELVIS_HEIGHT, BodyPose

Motion = Callable[[float], BodyPose]
TAU = 2 * np.pi

# Plausible (low, high) per joint and angle (rx, ry, rz), left side; the right side mirrors.
_LEFT_LIMITS = {
    "pelvis": ((-0.15, 0.15), (-np.pi, np.pi), (-0.1, 0.1)),
    "spine": ((-0.15, 0.45), (-0.5, 0.5), (-0.25, 0.25)),
    "neck": ((-0.35, 0.45), (-0.8, 0.8), (-0.3, 0.3)),
    "shoulder": ((-2.6, 0.7), (-0.8, 0.8), (0.0, 2.5)),
    "elbow": ((-2.3, 0.0), (-0.3, 0.3), (0.0, 0.0)),
    "wrist": ((-0.6, 0.6), (-0.8, 0.8), (-0.3, 0.3)),
    "hip": ((-1.3, 0.35), (-0.4, 0.4), (-0.1, 0.6)),
    "knee": ((0.0, 1.9), (0.0, 0.0), (0.0, 0.0)),
    "ankle": ((-0.4, 0.5), (0.0, 0.0), (-0.2, 0.2)),
}


def _limits() -> np.ndarray:
    out = np.zeros((len(JOINTS), 3, 2))
    for name, j in JOINT.items():
        side, _, kind = name.partition("_")
        lim = np.array(_LEFT_LIMITS[kind if kind else side])
        if side == "right":  # mirror: negate ry and rz ranges
            lim[1:] = -lim[1:, ::-1]
        out[j] = lim
    return out


JOINT_LIMITS = _limits()


class _Builder:
    """Angles by joint name with left/right mirroring, so motions read like choreography."""

    def __init__(self) -> None:
        self.angles = np.zeros((len(JOINTS), 3))
        self.root = np.array([0.0, PELVIS_HEIGHT, 0.0])

    def set(self, joint: str, rx: float = 0.0, ry: float = 0.0, rz: float = 0.0) -> None:
        self.angles[JOINT[joint]] = (rx, ry, rz)

    def side(self, side: str, joint: str, rx: float = 0.0, ry: float = 0.0, rz: float = 0.0) -> None:
        """Set a left/right joint with left-side signs; the right side is mirrored."""
        s = 1.0 if side == "left" else -1.0
        self.set(f"{side}_{joint}", rx, s * ry, s * rz)

    def pose(self) -> BodyPose:
        return BodyPose(self.angles.copy(), self.root.copy())


def _walk(t: float, k: np.ndarray) -> BodyPose:
    b = _Builder()
    ph = TAU * t * 0.9 * k[0] + k[1]
    for side, s in (("left", 1.0), ("right", -1.0)):
        swing = s * np.sin(ph)
        b.side(side, "hip", rx=-0.45 * k[2] * swing)
        b.side(side, "knee", rx=0.1 + 0.7 * max(s * np.cos(ph), 0.0))  # flexed while swinging forward
        b.side(side, "ankle", rx=-0.15 * swing)
        b.side(side, "shoulder", rx=0.4 * k[2] * swing, rz=0.12)
        b.side(side, "elbow", rx=-0.35 - 0.2 * max(-swing, 0))
    b.set("spine", rx=0.05, ry=0.12 * np.sin(ph))
    b.root[1] += 0.02 * np.cos(2 * ph)
    return b.pose()


def _dance(t: float, k: np.ndarray) -> BodyPose:
    b = _Builder()
    ph = TAU * t * 0.6 * k[0] + k[1]
    b.set("pelvis", ry=0.5 * np.sin(ph * 0.5), rz=0.08 * np.sin(ph))
    b.set("spine", rx=0.1, ry=0.3 * np.sin(ph), rz=0.15 * np.sin(ph + 1))
    b.set("neck", rx=0.1 * np.sin(2 * ph), rz=-0.15 * np.sin(ph))
    b.side("left", "shoulder", rx=-1.2 - 0.8 * np.sin(ph), rz=0.9 + 0.6 * k[2] * np.sin(ph + 0.5))
    b.side("right", "shoulder", rx=-0.6 + 0.8 * np.sin(ph), rz=1.0 + 0.5 * np.cos(ph))
    b.side("left", "elbow", rx=-1.0 - 0.6 * np.sin(2 * ph))
    b.side("right", "elbow", rx=-0.6 - 0.6 * np.cos(ph))
    for side, s in (("left", 1.0), ("right", -1.0)):
        bend = 0.25 + 0.25 * np.sin(2 * ph + (0 if s > 0 else np.pi))
        b.side(side, "hip", rx=-bend, rz=0.15)
        b.side(side, "knee", rx=2 * bend)
        b.side(side, "ankle", rx=-bend * 0.8)
    b.root[1] -= 0.05 * (1 - np.cos(2 * ph)) / 2
    return b.pose()


def _arm_wave(t: float, k: np.ndarray) -> BodyPose:
    b = _Builder()
    ph = TAU * t * 1.2 * k[0] + k[1]
    b.side("left", "shoulder", rz=2.3 * k[2] + 0.2 * np.sin(ph))
    b.side("left", "elbow", rx=-0.3, rz=0.0)
    b.side("left", "wrist", rz=0.4 * np.sin(2 * ph))
    b.side("right", "shoulder", rx=-0.3, rz=1.2 + 0.9 * np.sin(ph + np.pi / 2))
    b.side("right", "elbow", rx=-0.9 - 0.6 * np.sin(ph))
    b.set("neck", ry=0.2 * np.sin(0.5 * ph))
    for side in ("left", "right"):
        b.side(side, "hip", rz=0.06)
    return b.pose()


def _turn_around(t: float, k: np.ndarray) -> BodyPose:
    """A-pose turning a full circle every 6 s: every side of every texture is seen."""
    b = _Builder()
    b.set("pelvis", ry=TAU * t / 6.0 * k[0] + k[1])
    for side in ("left", "right"):
        b.side(side, "shoulder", rz=0.5 * k[2])
        b.side(side, "elbow", rx=-0.15)
        b.side(side, "hip", rz=0.1)
    return b.pose()


def random_pose(rng: np.random.Generator, spread: float = 0.8) -> BodyPose:
    """A pose drawn uniformly within ``spread`` of each joint's plausible range (around its middle)."""
    lo, hi = JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1]
    mid, half = (lo + hi) / 2, (hi - lo) / 2 * spread
    angles = mid + half * rng.uniform(-1.0, 1.0, size=mid.shape)
    return BodyPose(angles)


_PROCEDURAL = {"walk": _walk, "dance": _dance, "arm_wave": _arm_wave, "turn_around": _turn_around}
MOTIONS: tuple[str, ...] = (*_PROCEDURAL, "random")


def make_motion(name: str, seed: int = 0) -> Motion:
    """The motion ``name`` (one of ``MOTIONS``), varied reproducibly by ``seed``."""
    if name == "random":
        return lambda t: random_pose(np.random.default_rng([seed, int(round(t * 1e6))]))
    if name not in _PROCEDURAL:
        raise ValueError(f"unknown motion {name!r}; choose from {', '.join(MOTIONS)}")
    rng = np.random.default_rng(seed)
    # tempo factor, phase, amplitude factor; seed 0 is the canonical performance
    k = np.array([1.0, 0.0, 1.0]) if seed == 0 else np.array(
        [rng.uniform(0.85, 1.15), rng.uniform(0, TAU), rng.uniform(0.85, 1.1)])
    fn = _PROCEDURAL[name]
    return lambda t: fn(t, k)
