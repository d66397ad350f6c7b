"""The mannequin's body: a kinematic tree, its 33 MediaPipe-like landmarks, and its parts.

World frame: metres, y up, the subject faces +z at rest, the subject's left is +x
(right-handed). Rest pose: standing, arms hanging, palms facing the thighs.

A pose is one Euler triple per joint of ``JOINTS`` (radians, local rotation
``Rz(rz) @ Rx(rx) @ Ry(ry)``: twist about the bone, then flexion, then abduction) plus the
root position. Sign conventions, used by ``motions``: positive ``rx`` bends a hanging
limb backwards (knee flexion > 0; hip, shoulder and elbow forward flexion < 0) and tips
spine/neck forward; on the left side positive ``rz`` abducts (moves the limb out to +x),
on the right side negative ``rz`` does; ``ry`` of the pelvis turns the whole body.

Every part of ``avatars.body.skeleton.PARTS`` is one ellipsoid attached rigidly to a joint's
frame; the landmarks are attached the same way (joints themselves, face points on the head
surface, hand and foot points on the hand/foot), so landmarks, parts and surface
coordinates all move consistently under any pose.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from avatars.body.skeleton import LM, NUM_LANDMARKS, PARTS

# joint name -> (parent, offset from the parent joint in the parent's frame at rest)
_TREE: dict[str, tuple[str | None, tuple[float, float, float]]] = {
    "pelvis": (None, (0.0, 0.0, 0.0)),
    "spine": ("pelvis", (0.0, 0.10, 0.0)),
    "neck": ("spine", (0.0, 0.40, 0.0)),
    "left_shoulder": ("spine", (0.18, 0.34, 0.0)),
    "left_elbow": ("left_shoulder", (0.0, -0.29, 0.0)),
    "left_wrist": ("left_elbow", (0.0, -0.26, 0.0)),
    "right_shoulder": ("spine", (-0.18, 0.34, 0.0)),
    "right_elbow": ("right_shoulder", (0.0, -0.29, 0.0)),
    "right_wrist": ("right_elbow", (0.0, -0.26, 0.0)),
    "left_hip": ("pelvis", (0.10, -0.02, 0.0)),
    "left_knee": ("left_hip", (0.0, -0.43, 0.0)),
    "left_ankle": ("left_knee", (0.0, -0.42, 0.0)),
    "right_hip": ("pelvis", (-0.10, -0.02, 0.0)),
    "right_knee": ("right_hip", (0.0, -0.43, 0.0)),
    "right_ankle": ("right_knee", (0.0, -0.42, 0.0)),
}
JOINTS: tuple[str, ...] = tuple(_TREE)
JOINT: dict[str, int] = {name: i for i, name in enumerate(JOINTS)}
_PARENT = [JOINT[p] if p is not None else -1 for p, _ in _TREE.values()]
_OFFSET = np.array([o for _, o in _TREE.values()], dtype=np.float64)
PELVIS_HEIGHT = 0.95

# part -> (joint whose frame carries it, centre in that frame, semi-axes)
_PART_SHAPES: dict[str, tuple[str, tuple[float, float, float], tuple[float, float, float]]] = {
    "head": ("neck", (0.0, 0.15, 0.01), (0.085, 0.11, 0.095)),
    "torso": ("spine", (0.0, 0.22, 0.0), (0.17, 0.27, 0.11)),
    "pelvis": ("pelvis", (0.0, -0.02, 0.0), (0.16, 0.13, 0.10)),
    "left_upper_arm": ("left_shoulder", (0.0, -0.145, 0.0), (0.05, 0.185, 0.05)),
    "right_upper_arm": ("right_shoulder", (0.0, -0.145, 0.0), (0.05, 0.185, 0.05)),
    "left_forearm": ("left_elbow", (0.0, -0.13, 0.0), (0.042, 0.16, 0.042)),
    "right_forearm": ("right_elbow", (0.0, -0.13, 0.0), (0.042, 0.16, 0.042)),
    "left_hand": ("left_wrist", (0.0, -0.08, 0.0), (0.024, 0.09, 0.045)),
    "right_hand": ("right_wrist", (0.0, -0.08, 0.0), (0.024, 0.09, 0.045)),
    "left_thigh": ("left_hip", (0.0, -0.215, 0.0), (0.075, 0.265, 0.075)),
    "right_thigh": ("right_hip", (0.0, -0.215, 0.0), (0.075, 0.265, 0.075)),
    "left_shin": ("left_knee", (0.0, -0.21, 0.0), (0.055, 0.25, 0.055)),
    "right_shin": ("right_knee", (0.0, -0.21, 0.0), (0.055, 0.25, 0.055)),
    "left_foot": ("left_ankle", (0.0, -0.05, 0.05), (0.045, 0.04, 0.12)),
    "right_foot": ("right_ankle", (0.0, -0.05, 0.05), (0.045, 0.04, 0.12)),
}
if tuple(_PART_SHAPES) != PARTS:
    raise RuntimeError("mannequin parts must follow avatars.body.skeleton.PARTS, in order")
_PART_JOINT = np.array([JOINT[j] for j, _, _ in _PART_SHAPES.values()])
_PART_CENTRE = np.array([c for _, c, _ in _PART_SHAPES.values()], dtype=np.float64)
PART_RADII = np.array([r for _, _, r in _PART_SHAPES.values()], dtype=np.float64)


def _on_head(azimuth: float, elevation: float) -> tuple[float, float, float]:
    """A point just inside the head surface; azimuth from the front (+z) towards the left (+x)."""
    _, (cx, cy, cz), (rx, ry, rz) = _PART_SHAPES["head"]
    k = 0.97
    return (cx + k * rx * np.sin(azimuth) * np.cos(elevation), cy + k * ry * np.sin(elevation),
            cz + k * rz * np.cos(azimuth) * np.cos(elevation))


def _face() -> dict[str, tuple[float, float, float]]:
    out = {"nose": _on_head(0.0, -0.10)}
    for side, s in (("left", 1.0), ("right", -1.0)):
        out[f"{side}_eye_inner"] = _on_head(s * 0.18, 0.20)
        out[f"{side}_eye"] = _on_head(s * 0.34, 0.22)
        out[f"{side}_eye_outer"] = _on_head(s * 0.50, 0.20)
        out[f"{side}_ear"] = _on_head(s * 1.50, 0.08)
        out[f"mouth_{side}"] = _on_head(s * 0.28, -0.45)
    return out


def _landmark_table() -> tuple[np.ndarray, np.ndarray]:
    """For each of the 33 landmarks: the joint it rides on and its offset in that frame."""
    joint = np.zeros(NUM_LANDMARKS, dtype=np.int64)
    offset = np.zeros((NUM_LANDMARKS, 3), dtype=np.float64)
    for name, xyz in _face().items():
        joint[LM[name]], offset[LM[name]] = JOINT["neck"], xyz
    for side in ("left", "right"):
        for j in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle"):
            joint[LM[f"{side}_{j}"]] = JOINT[f"{side}_{j}"]
        for name, xyz in (("pinky", (0.0, -0.085, -0.028)), ("index", (0.0, -0.095, 0.022)),
                          ("thumb", (0.0, -0.05, 0.04))):
            joint[LM[f"{side}_{name}"]], offset[LM[f"{side}_{name}"]] = JOINT[f"{side}_wrist"], xyz
        for name, xyz in (("heel", (0.0, -0.06, -0.05)), ("foot_index", (0.0, -0.07, 0.15))):
            joint[LM[f"{side}_{name}"]], offset[LM[f"{side}_{name}"]] = JOINT[f"{side}_ankle"], xyz
    return joint, offset


_LANDMARK_JOINT, _LANDMARK_OFFSET = _landmark_table()


@dataclass
class BodyPose:
    """Joint angles ``(len(JOINTS), 3)`` (rx, ry, rz radians) and the pelvis position (metres)."""

    angles: np.ndarray = field(default_factory=lambda: np.zeros((len(JOINTS), 3)))
    root: np.ndarray = field(default_factory=lambda: np.array([0.0, PELVIS_HEIGHT, 0.0]))

    def __post_init__(self) -> None:
        self.angles = np.asarray(self.angles, dtype=np.float64)
        self.root = np.asarray(self.root, dtype=np.float64)
        if self.angles.shape != (len(JOINTS), 3) or self.root.shape != (3,):
            raise ValueError(f"BodyPose needs angles {(len(JOINTS), 3)} and root (3,), "
                             f"got {self.angles.shape} and {self.root.shape}")


def euler_to_matrix(angles: np.ndarray) -> np.ndarray:
    """``(..., 3)`` (rx, ry, rz) -> ``(..., 3, 3)`` rotation ``Rz @ Rx @ Ry``."""
    cx, cy, cz = np.cos(angles[..., 0]), np.cos(angles[..., 1]), np.cos(angles[..., 2])
    sx, sy, sz = np.sin(angles[..., 0]), np.sin(angles[..., 1]), np.sin(angles[..., 2])
    one, zero = np.ones_like(cx), np.zeros_like(cx)
    rx = np.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(*cx.shape, 3, 3)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(*cx.shape, 3, 3)
    rz = np.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(*cx.shape, 3, 3)
    return rz @ rx @ ry


@dataclass(frozen=True)
class Posed:
    """A body in world space: joints, the 33 landmarks, and each part's ellipsoid frame."""

    joint_positions: np.ndarray  # (len(JOINTS), 3)
    joint_rotations: np.ndarray  # (len(JOINTS), 3, 3) global frames
    landmarks: np.ndarray  # (33, 3)
    part_centres: np.ndarray  # (P, 3)
    part_rotations: np.ndarray  # (P, 3, 3) columns = the part's local axes in world space
    part_radii: np.ndarray  # (P, 3) semi-axes along those local axes


def pose_body(pose: BodyPose) -> Posed:
    """Forward kinematics: place joints, landmarks and parts for ``pose``."""
    local = euler_to_matrix(pose.angles)
    rot = np.zeros_like(local)
    pos = np.zeros((len(JOINTS), 3))
    for j, parent in enumerate(_PARENT):  # parents precede children in _TREE
        if parent < 0:
            rot[j], pos[j] = local[j], pose.root
        else:
            rot[j] = rot[parent] @ local[j]
            pos[j] = pos[parent] + rot[parent] @ _OFFSET[j]
    landmarks = pos[_LANDMARK_JOINT] + np.einsum("nij,nj->ni", rot[_LANDMARK_JOINT], _LANDMARK_OFFSET)
    centres = pos[_PART_JOINT] + np.einsum("nij,nj->ni", rot[_PART_JOINT], _PART_CENTRE)
    return Posed(pos, rot, landmarks, centres, rot[_PART_JOINT], PART_RADII)
