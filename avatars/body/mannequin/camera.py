"""Pinhole camera placed anywhere (look-at), for rendering the mannequin from novel views.

Camera frame follows OpenCV: x right, y down, z forward (depth, metres). Pixel centres
sit at integer coordinates and the principal point is the image centre, matching the
keypoint convention of ``avatars.body.skeleton``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Camera:
    """Perspective camera: image size, vertical field of view, and a look-at placement (world metres)."""

    width: int = 256
    height: int = 256
    fov_y_deg: float = 40.0
    position: tuple[float, float, float] = (0.0, 1.0, 3.2)
    target: tuple[float, float, float] = (0.0, 0.85, 0.0)
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    near: float = 0.05

    @classmethod
    def orbit(cls, angle_deg: float, distance: float = 3.2, elevation: float = 1.0,
              target: tuple[float, float, float] = (0.0, 0.85, 0.0), **kw) -> "Camera":
        """A camera on a circle around ``target`` at height ``elevation`` (metres); 0 deg = in front of a
        subject facing +z, 90 = at its left. Other fields (width, height, fov_y_deg, ...) pass through."""
        a = np.radians(angle_deg)
        pos = (target[0] + distance * np.sin(a), elevation, target[2] + distance * np.cos(a))
        return cls(position=tuple(float(v) for v in pos), target=target, **kw)

    @cached_property
    def focal(self) -> float:
        """Focal length in pixels (square pixels)."""
        return 0.5 * self.height / np.tan(np.radians(self.fov_y_deg) / 2)

    @property
    def principal_point(self) -> tuple[float, float]:
        return (self.width - 1) / 2, (self.height - 1) / 2

    @cached_property
    def rotation(self) -> np.ndarray:
        """World-to-camera rotation (rows: camera x, y, z axes in world coordinates)."""
        forward = np.subtract(self.target, self.position).astype(np.float64)
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, self.up)
        norm = np.linalg.norm(right)
        if norm < 1e-9:
            raise ValueError(f"camera 'up' {self.up} is parallel to the viewing direction")
        right /= norm
        return np.stack([right, np.cross(forward, right), forward])

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points ``(..., 3)`` -> camera-space points (metres; z = depth)."""
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.position)) @ self.rotation.T

    def to_world(self, points_cam: np.ndarray) -> np.ndarray:
        """Camera-space points ``(..., 3)`` -> world points."""
        return np.asarray(points_cam, dtype=np.float64) @ self.rotation + np.asarray(self.position)

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Camera-space points ``(..., 3)`` -> pixel coordinates ``(..., 2)``."""
        cx, cy = self.principal_point
        z = points_cam[..., 2]
        return np.stack([self.focal * points_cam[..., 0] / z + cx, self.focal * points_cam[..., 1] / z + cy], -1)

    def unproject(self, pixels: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Pixels ``(..., 2)`` at camera depth ``(...)`` -> camera-space points ``(..., 3)``."""
        cx, cy = self.principal_point
        z = np.asarray(depth, dtype=np.float64)
        return np.stack([(pixels[..., 0] - cx) * z / self.focal, (pixels[..., 1] - cy) * z / self.focal, z], -1)
