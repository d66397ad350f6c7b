"""The person-centred crop the avatar works in: same scale for every frame, video and camera.

Textured Neural Avatars does not generalise to a person rendered at a scale far from the
training set's (thesis section 6.5; the authors suggest rescaling before rendering and
cropping/padding after). So the avatar never sees raw frames: every frame, for training and
at run time, is cut to a square of ``torsos`` torso lengths centred just below the hip
midpoint and resampled to ``size`` pixels. The torso length is measured in 3D (x, y and the
keypoint depth z, all in pixels, see ``avatars.body.skeleton``) so turning sideways does not
shrink it, and bending changes it little. The map frame -> crop is a similarity (scale and
shift) with pixel centres at integer coordinates in both, so keypoints, images and the
paste-back all agree exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from avatars.body.skeleton import LM

_TORSO = (LM["left_shoulder"], LM["right_shoulder"], LM["left_hip"], LM["right_hip"])


@dataclass(frozen=True)
class CropConfig:
    """size: side of the model's square input and output (pixels).
    torsos: crop side in torso lengths (5 holds a standing person with raised arms).
    centre_offset: crop centre below the hip midpoint, in torso lengths.
    min_visibility: shoulders and hips need this visibility, else there is no person.
    """

    size: int = 256
    torsos: float = 5.0
    centre_offset: float = 0.2
    min_visibility: float = 0.5


@dataclass(frozen=True)
class Crop:
    """A square of side ``side`` frame pixels centred on (cx, cy) (frame pixel coordinates)."""

    cx: float
    cy: float
    side: float

    def matrix(self, size: int) -> np.ndarray:
        """2x3 affine frame -> crop of ``size`` pixels (pixel centres at integers in both)."""
        a = size / self.side
        return np.array([[a, 0.0, a * (self.side / 2 - self.cx) - 0.5],
                         [0.0, a, a * (self.side / 2 - self.cy) - 0.5]], dtype=np.float64)

    def keypoints(self, keypoints: np.ndarray, size: int) -> np.ndarray:
        """Frame keypoints ``(..., 33, 4)`` -> crop keypoints (x, y and depth z all scaled)."""
        m = self.matrix(size)
        out = np.array(keypoints, dtype=np.float32, copy=True)
        out[..., 0] = keypoints[..., 0] * m[0, 0] + m[0, 2]
        out[..., 1] = keypoints[..., 1] * m[1, 1] + m[1, 2]
        out[..., 2] = keypoints[..., 2] * m[0, 0]
        return out

    def cut(self, image: np.ndarray, size: int, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
        """The crop of a frame ``(H, W[, C])``, zero outside the frame.

        INTER_AREA is only honoured by cv2.resize, so a downscale goes through an integer-aligned
        resize when the crop is much larger than ``size`` (anti-aliasing), else a direct warp.
        """
        scale = self.side / size
        if interpolation == cv2.INTER_AREA and scale > 1.5:
            k = int(scale)
            small = cv2.resize(image, (max(image.shape[1] // k, 1), max(image.shape[0] // k, 1)),
                               interpolation=cv2.INTER_AREA)
            # the k x k block average puts small pixel j's centre at frame (j + 0.5) k - 0.5
            inner = Crop((self.cx + 0.5) / k - 0.5, (self.cy + 0.5) / k - 0.5, self.side / k)
            return inner.cut(small, size, cv2.INTER_LINEAR)
        flags = cv2.INTER_LINEAR if interpolation == cv2.INTER_AREA else interpolation
        return cv2.warpAffine(image, self.matrix(size), (size, size), flags=flags,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def paste(self, crop: np.ndarray, height: int, width: int) -> np.ndarray:
        """Inverse of ``cut``: a ``(size, size[, C])`` crop placed back into a frame, zero elsewhere."""
        m = self.matrix(crop.shape[0])
        return cv2.warpAffine(crop, m, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def torso_length(keypoints: np.ndarray, min_visibility: float = 0.5) -> float | None:
    """3D distance shoulder midpoint -> hip midpoint (pixels); None without a visible torso."""
    kp = np.asarray(keypoints, dtype=np.float64)
    torso = kp[list(_TORSO)]
    if not (np.isfinite(torso[:, :3]).all() and (torso[:, 3] >= min_visibility).all()):
        return None
    length = float(np.linalg.norm(torso[:2, :3].mean(0) - torso[2:, :3].mean(0)))
    return length if length > 1e-3 else None


def person_crop(keypoints: np.ndarray, cfg: CropConfig = CropConfig(), torso: float | None = None) -> Crop | None:
    """The crop around the person in ``keypoints`` (33, 4); None where no torso is visible.

    ``torso`` overrides the measured torso length (a per-video median or a running average
    keeps the scale steady where single-frame estimates jitter).
    """
    measured = torso_length(keypoints, cfg.min_visibility)
    if measured is None:
        return None
    t = torso if torso is not None else measured
    hip = np.asarray(keypoints, dtype=np.float64)[[LM["left_hip"], LM["right_hip"]], :2].mean(0)
    return Crop(float(hip[0]), float(hip[1] + cfg.centre_offset * t), float(cfg.torsos * t))
