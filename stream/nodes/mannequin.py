"""A camera-free source: the synthetic mannequin, rendered live, with its exact keypoints."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Literal

import numpy as np

from stream.message import Message
from stream.node import Port, Source
from stream.keypoints import keypoint_message
from stream.pacing import Pacer
from stream.params import param


class MannequinSource(Source):
    """Renders a procedural motion of the mannequin; emits RGB + mask and the ground-truth keypoints."""

    outputs = {
        "video": Port("video", doc="image (H,W,3) uint8 and mask (H,W) float32"),
        "keypoints": Port("keypoints", required=False, doc="ground-truth keypoints of the same frame"),
    }

    @dataclass
    class Params:
        width: int = param(256, "frame width")
        height: int = param(256, "frame height")
        motion: Literal["walk", "dance", "arm_wave", "turn_around", "random"] = param("walk", "procedural motion")
        frames: int = param(300, "frames to emit; 0 = endless")
        fps: float = param(30.0, "frame rate of the motion (and pacing when realtime)")
        orbit_deg_per_s: float = param(0.0, "camera orbit speed around the subject")
        seed: int = param(0, "seed of the motion")
        realtime: bool = param(False, "pace at fps like a camera")

        def __post_init__(self) -> None:
            if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
                raise ValueError(f"width/height must be in 16..4096, got {self.width}x{self.height}")
            if self.frames < 0 or not 0 < self.fps <= 240:
                raise ValueError("frames must be >= 0 and fps in (0, 240]")

    def setup(self) -> None:
        from avatars.body.mannequin import Camera, MannequinSequence

        p = self.params
        self.sequence = MannequinSequence(motion=p.motion, num_frames=p.frames or 2**31 - 1, fps=p.fps,
                                          camera=Camera(width=p.width, height=p.height),
                                          orbit_deg_per_s=p.orbit_deg_per_s, seed=p.seed)
        self.first = 0

    def length(self) -> int | None:
        return self.params.frames or None

    def skip_to(self, seq: int) -> None:
        self.first = seq

    def frames(self) -> Iterator[dict[str, Message]]:
        p = self.params
        pacer = Pacer(p.realtime)
        for i in range(self.first, len(self.sequence)):
            pacer.wait(i / p.fps)
            frame = self.sequence[i]
            video = Message(pts=i / p.fps, buffers={"image": frame.rgb, "mask": frame.mask.astype(np.float32)},
                            meta={"frame": i})
            kp = keypoint_message(video, frame.joints2d, p.width, p.height, detected=True, world=frame.joints3d)
            yield {"video": video, "keypoints": kp}
