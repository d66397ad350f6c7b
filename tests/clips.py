"""Clips the core tests make for themselves: mannequin renders encoded on the fly with real PyAV."""
from __future__ import annotations

from pathlib import Path
import numpy as np

from avatars.body.mannequin import Camera, MannequinSequence
from stream.media import write_video


def mannequin_frames(frames: int, motion: str = "walk", size: int = 256, seed: int = 1) -> MannequinSequence:
    """The (seeded, reproducible) mannequin sequence a clip is made of: its frames carry the ground truth."""
    return MannequinSequence(motion=motion, num_frames=frames, camera=Camera(width=size, height=size), seed=seed)


def mannequin_clip(path: Path, frames: int = 12, motion: str = "walk", size: int = 256, fps: int = 30) -> Path:
    """An H.264 MP4 of the mannequin performing `motion`, one rendered frame per video frame."""
    return write_video(path, (np.ascontiguousarray(f.rgb) for f in mannequin_frames(frames, motion, size)), fps=fps)
