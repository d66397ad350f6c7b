"""Keypoints in, bone stack out: the avatar's input (one channel per bone, depth-valued)."""
from __future__ import annotations

from dataclasses import dataclass

from stream.message import Message
from stream.node import Node, Port
from stream.keypoints import fit_keypoints, read_keypoints
from stream.params import param


class BonesNode(Node):
    """Rasterizes the skeleton at the graph's resolution: the keypoints' frame letterboxed into it (one
    scale, centred: `stream.keypoints.fit_keypoints`), so a person is never stretched."""

    inputs = {"in": Port("keypoints")}
    outputs = {"out": Port("bones", doc="buffers['bones'] (C, H, W) float32, plus the keypoints")}

    @dataclass
    class Params:
        width: int = param(256, "output width")
        height: int = param(256, "output height")
        thickness: float = param(0.02, "bone width as a fraction of min(H, W)")

        def __post_init__(self) -> None:
            if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
                raise ValueError(f"width/height must be in 16..4096, got {self.width}x{self.height}")
            if not 0 < self.thickness < 0.5:
                raise ValueError(f"thickness must be in (0, 0.5), got {self.thickness}")

    def setup(self) -> None:
        from avatars.body.bones import BoneStyle, rasterize_bones

        self.style = BoneStyle(thickness=self.params.thickness)
        self.rasterize = rasterize_bones

    def process(self, inputs: dict[str, Message]) -> None:
        msg = inputs["in"]
        kp = read_keypoints(msg, self.ctx.name)
        p = self.params
        scaled = fit_keypoints(kp, p.width, p.height)
        if not kp.detected:
            scaled[:, 3] = 0.0  # nothing to draw: an all-zero stack
        out = msg.derive(bones=self.rasterize(scaled, p.height, p.width, self.style), keypoints=scaled)
        out.meta.update(width=p.width, height=p.height)
        self.emit("out", out)
