"""Skeleton shared by pose extraction, the bone rasterizer, the avatar and the mannequin.

Keypoint convention (project-wide)
----------------------------------
A pose is a float32 array ``(33, 4)`` (batched: ``(B, 33, 4)``) indexed by MediaPipe
Pose's 33 landmarks, columns:

* ``x, y``: position in PIXELS of the frame; pixel centres sit at integer coordinates
  (OpenCV convention), x to the right, y down. From MediaPipe: ``x = x_norm * W``.
* ``z``: depth relative to the hip midpoint, in the same pixel units as x and y at the
  subject's distance; larger = farther from the camera. This is MediaPipe's relative
  depth scaled by frame width (``z = z_norm * W``); the mannequin produces exactly it
  (``(Z - Z_hips) * fx / Z_hips`` from camera-space depth Z). One unit for every source
  keeps the bone stack (the avatar's input) identically scaled for real and synthetic
  data. Absolute camera-space metres travel separately (MediaPipe world landmarks,
  mannequin ``joints_cam``).
* ``visibility`` in [0, 1]: how much to trust the joint; consumers threshold it.

Bones and channels
------------------
Textured Neural Avatars draws "each bone, hand and face in separate channels": every
limb and torso bone is its own channel, while the face, each hand and each foot are one
channel each holding several segments. Two virtual joints (shoulder and hip midpoints)
carry the spine and neck, which MediaPipe does not provide.

Parts
-----
``PARTS`` is the body-part set the avatar textures (one texture per part) and the
mannequin is built from, so synthetic ground truth and the model agree part by part.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LANDMARK_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye_inner", "left_eye", "left_eye_outer",
    "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear",
    "mouth_left", "mouth_right",
    "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
    "left_pinky", "right_pinky",
    "left_index", "right_index",
    "left_thumb", "right_thumb",
    "left_hip", "right_hip",
    "left_knee", "right_knee",
    "left_ankle", "right_ankle",
    "left_heel", "right_heel",
    "left_foot_index", "right_foot_index",
)
NUM_LANDMARKS = len(LANDMARK_NAMES)
LM: dict[str, int] = {name: i for i, name in enumerate(LANDMARK_NAMES)}

# Virtual joints appended after the 33 landmarks: (name, the landmarks averaged).
VIRTUAL_JOINTS: tuple[tuple[str, tuple[int, int]], ...] = (
    ("mid_shoulder", (LM["left_shoulder"], LM["right_shoulder"])),
    ("mid_hip", (LM["left_hip"], LM["right_hip"])),
)
JOINT_NAMES: tuple[str, ...] = LANDMARK_NAMES + tuple(n for n, _ in VIRTUAL_JOINTS)
_J: dict[str, int] = {name: i for i, name in enumerate(JOINT_NAMES)}


@dataclass(frozen=True)
class Bone:
    """One drawn segment between two joints (indices into ``JOINT_NAMES``), in a channel."""

    a: int
    b: int
    channel: int


def _segments(*pairs: tuple[str, str]) -> tuple[tuple[int, int], ...]:
    return tuple((_J[a], _J[b]) for a, b in pairs)


# channel name -> the segments drawn in it
_CHANNELS: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = (
    ("spine", _segments(("mid_hip", "mid_shoulder"))),
    ("neck", _segments(("mid_shoulder", "nose"))),
    ("shoulders", _segments(("left_shoulder", "right_shoulder"))),
    ("hips", _segments(("left_hip", "right_hip"))),
    ("left_flank", _segments(("left_shoulder", "left_hip"))),
    ("right_flank", _segments(("right_shoulder", "right_hip"))),
    ("left_upper_arm", _segments(("left_shoulder", "left_elbow"))),
    ("right_upper_arm", _segments(("right_shoulder", "right_elbow"))),
    ("left_forearm", _segments(("left_elbow", "left_wrist"))),
    ("right_forearm", _segments(("right_elbow", "right_wrist"))),
    ("left_thigh", _segments(("left_hip", "left_knee"))),
    ("right_thigh", _segments(("right_hip", "right_knee"))),
    ("left_shin", _segments(("left_knee", "left_ankle"))),
    ("right_shin", _segments(("right_knee", "right_ankle"))),
    ("face", _segments(
        ("nose", "left_eye_inner"), ("left_eye_inner", "left_eye"), ("left_eye", "left_eye_outer"),
        ("left_eye_outer", "left_ear"), ("nose", "right_eye_inner"),
        ("right_eye_inner", "right_eye"), ("right_eye", "right_eye_outer"),
        ("right_eye_outer", "right_ear"), ("mouth_left", "mouth_right"),
    )),
    ("left_hand", _segments(
        ("left_wrist", "left_pinky"), ("left_wrist", "left_index"),
        ("left_wrist", "left_thumb"), ("left_pinky", "left_index"),
    )),
    ("right_hand", _segments(
        ("right_wrist", "right_pinky"), ("right_wrist", "right_index"),
        ("right_wrist", "right_thumb"), ("right_pinky", "right_index"),
    )),
    ("left_foot", _segments(
        ("left_ankle", "left_heel"), ("left_heel", "left_foot_index"),
        ("left_ankle", "left_foot_index"),
    )),
    ("right_foot", _segments(
        ("right_ankle", "right_heel"), ("right_heel", "right_foot_index"),
        ("right_ankle", "right_foot_index"),
    )),
)
CHANNEL_NAMES: tuple[str, ...] = tuple(name for name, _ in _CHANNELS)
NUM_CHANNELS = len(CHANNEL_NAMES)
BONES: tuple[Bone, ...] = tuple(
    Bone(a, b, c) for c, (_, segs) in enumerate(_CHANNELS) for a, b in segs
)

# Body parts: one texture each in the avatar, one primitive each in the mannequin.
PARTS: tuple[str, ...] = (
    "head", "torso", "pelvis",
    "left_upper_arm", "right_upper_arm", "left_forearm", "right_forearm",
    "left_hand", "right_hand",
    "left_thigh", "right_thigh", "left_shin", "right_shin",
    "left_foot", "right_foot",
)
NUM_PARTS = len(PARTS)
PART: dict[str, int] = {name: i for i, name in enumerate(PARTS)}

def with_virtual_joints(keypoints: np.ndarray) -> np.ndarray:
    """Append the virtual joints to ``(..., 33, 4)`` keypoints -> ``(..., len(JOINT_NAMES), 4)``.

    A virtual joint is the mean position of its landmarks with the smaller visibility, so
    the spine and neck disappear as soon as one of their anchors is untrusted.
    """
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if keypoints.shape[-2:] != (NUM_LANDMARKS, 4):
        raise ValueError(f"keypoints must have shape (..., 33, 4), got {keypoints.shape}")
    extra = []
    for _, (i, j) in VIRTUAL_JOINTS:
        pos = 0.5 * (keypoints[..., i, :3] + keypoints[..., j, :3])
        vis = np.minimum(keypoints[..., i, 3:], keypoints[..., j, 3:])
        extra.append(np.concatenate([pos, vis], axis=-1))
    return np.concatenate([keypoints, np.stack(extra, axis=-2)], axis=-2)
