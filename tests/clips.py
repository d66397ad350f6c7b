"""Clips the core tests make for themselves: mannequin renders encoded on the fly with real PyAV."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from avatars.body.mannequin import Camera, MannequinSequence


def mannequin_frames(frames: int, motion: str = "walk", size: int = 256, seed: int = 1) -> MannequinSequence:
    """The (seeded, reproducible) mannequin sequence a clip is made of: its frames carry the ground truth."""
    return MannequinSequence(motion=motion, num_frames=frames, camera=Camera(width=size, height=size), seed=seed)


def mannequin_clip(path: Path, frames: int = 12, motion: str = "walk", size: int = 256, fps: int = 30) -> Path:
    """An H.264 MP4 of the mannequin performing `motion`, one rendered frame per video frame."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        for f in mannequin_frames(frames, motion, size):
            for packet in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f.rgb), format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path
