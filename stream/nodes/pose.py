"""MediaPipe Pose as a node: video in, keypoints out (smoothed; frames without a person flagged), as the
quantised keypoint message of `stream.keypoints` (under 300 bytes a frame: what telepresence sends)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stream.message import Message
from stream.node import Port, Node
from stream.keypoints import keypoint_message
from stream.params import param


class PoseNode(Node):
    """33 landmarks per frame; with `segmentation`, the person mask rides along as buffers['mask']."""

    inputs = {"in": Port("video")}
    outputs = {"out": Port("keypoints")}
    busy = True  # MediaPipe's graph

    @dataclass
    class Params:
        model_complexity: int = param(1, "0, 1 or 2 (1 ships in the mediapipe wheel)")
        segmentation: bool = param(False, "also output the person mask")
        world: bool = param(False, "also output the world landmarks in metres (33, 3)")
        smoothing: bool = param(True, "One-Euro smoothing of the landmarks")
        min_cutoff: float = param(1.0, "One-Euro minimum cutoff (Hz): lower = smoother when still")
        beta: float = param(10.0, "One-Euro speed coefficient: higher = less lag when moving")
        gap: Literal["hold", "blank"] = param("hold", "frames without a person: hold the last pose, or blank")
        max_hold_s: float = param(0.5, "how long a lost pose is held")

        def __post_init__(self) -> None:
            if self.model_complexity not in (0, 1, 2):
                raise ValueError(f"model_complexity must be 0, 1 or 2, got {self.model_complexity}")

    def setup(self) -> None:
        from avatars.body.pose import GapFiller, OneEuroConfig, PoseConfig, PoseEstimator

        p = self.params
        smoothing = OneEuroConfig(min_cutoff=p.min_cutoff, beta=p.beta) if p.smoothing else None
        self.estimator = PoseEstimator(PoseConfig(model_complexity=p.model_complexity, segmentation=p.segmentation), smoothing)
        self.gaps = GapFiller(p.gap, p.max_hold_s)
        self.ctx.metrics.extra.update(detected=0, missed=0, held=0)

    def process(self, inputs: dict[str, Message]) -> None:
        msg, p = inputs["in"], self.params
        image = msg.buffers["image"]
        result = self.gaps(self.estimator.process(image, msg.pts))
        self.ctx.metrics.extra["detected" if result.detected else "missed"] += 1
        self.ctx.metrics.extra["held"] += bool(result.held)
        # a held pose is one to draw: it travels as detected (the avatar and bones draw nothing otherwise)
        out = keypoint_message(msg, result.keypoints, image.shape[1], image.shape[0], result.detected or result.held,
                               world=result.world if p.world else None)
        if result.mask is not None:
            out.buffers["mask"] = result.mask
        self.emit("out", out)

    def close(self) -> None:
        if hasattr(self, "estimator"):
            self.estimator.close()
