"""Clips the core tests make for themselves: mannequin renders encoded on the fly with real PyAV."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import av
import numpy as np

from avatars.body.mannequin import Camera, MannequinSequence


def mannequin_frames(frames: int, motion: str = "walk", size: int = 256, seed: int = 1) -> MannequinSequence:
    """The (seeded, reproducible) mannequin sequence a clip is made of: its frames carry the ground truth."""
    return MannequinSequence(motion=motion, num_frames=frames, camera=Camera(width=size, height=size), seed=seed)


def mannequin_clip(path: Path, frames: int = 12, motion: str = "walk", size: int = 256, fps: int = 30) -> Path:
    """An H.264 MP4 of the mannequin performing `motion`, one rendered frame per video frame."""
    return encode_clip(path, (np.ascontiguousarray(f.rgb) for f in mannequin_frames(frames, motion, size)), fps=fps)


def encode_clip(path: Path, images: Iterable[np.ndarray], codec: str = "libx264", fps: int = 30) -> Path:
    """`images` (RGB uint8, all one size) encoded with real PyAV, one frame each, pts 0, 1, 2..."""
    with av.open(str(path), "w") as c:
        s = None
        for i, image in enumerate(images):
            if s is None:
                s = c.add_stream(codec, rate=fps)
                s.height, s.width = image.shape[:2]
                s.pix_fmt = "yuv420p"
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path
