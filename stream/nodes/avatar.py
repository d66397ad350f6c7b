"""The textured neural avatar as a node: keypoints in, the person's RGB + mask out."""
from __future__ import annotations

from dataclasses import dataclass

from stream.message import Message
from stream.node import Node, NodeError, Port
from stream.keypoints import fit_keypoints, read_keypoints
from stream.params import param


class AvatarNode(Node):
    """Renders the avatar where the keypoints put the person; frames without a person come out empty.

    At a `width` x `height` of another shape than the keypoints' frame, that frame is letterboxed
    into the output (one scale, centred: `stream.keypoints.fit_keypoints`), so the person is never
    stretched."""

    inputs = {"in": Port("keypoints")}
    outputs = {"out": Port("video", doc="image (H,W,3) uint8 and mask (H,W) float32")}

    @dataclass
    class Params:
        model: str = param("mannequin_avatar", "checkpoint file, or the name of a shipped avatar", weights="avatar")
        width: int = param(0, "output width (the keypoints' frame letterboxed into it); 0 = the keypoints' frame width")
        height: int = param(0, "output height; 0 = the keypoints' frame height")
        fast: bool = param(True, "channels-last, + bf16 autocast where native (error against fp32 in docs/avatar.md)")
        scale_smoothing: float = param(0.8, "smoothing of the person's scale over frames (share of the old value)")
        threads: int = param(0, "CPU threads for torch; 0 = the process's share of the host's cores")

        def __post_init__(self) -> None:
            if self.width < 0 or self.height < 0 or (self.width == 0) != (self.height == 0):
                raise ValueError("width and height must both be 0 or both be positive")
            if self.width > 4096 or self.height > 4096:
                raise ValueError(f"width/height must be at most 4096, got {self.width}x{self.height}")
            if not 0 <= self.scale_smoothing < 1:
                raise ValueError(f"scale_smoothing must be in [0, 1), got {self.scale_smoothing}")

    def setup(self) -> None:
        import torch

        from avatars.avatar.model import AvatarRenderer, load_avatar
        from avatars.core.weights import resolve_weights
        from stream.devices import open_device

        p = self.params
        if p.threads:
            torch.set_num_threads(p.threads)
        self.ctx.metrics.extra["threads"] = torch.get_num_threads()
        dev = open_device(self.ctx.device)
        try:
            model, cfg = load_avatar(resolve_weights(p.model, "avatar"), dev.device)
        except (FileNotFoundError, ValueError, KeyError) as exc:
            raise NodeError(f"{self.ctx.name}: cannot load avatar: {exc}") from None
        self.renderer = AvatarRenderer(model, cfg, dev.device, fast=p.fast, scale_smoothing=p.scale_smoothing,
                                       stream=dev.stream)

    def process(self, inputs: dict[str, Message]) -> None:
        msg = inputs["in"]
        kp = read_keypoints(msg, self.ctx.name)
        p = self.params
        w, h = (p.width, p.height) if p.width else (kp.width, kp.height)
        out = self.renderer(fit_keypoints(kp, w, h) if kp.detected else None, (h, w))
        self.emit("out", msg.derive(image=out.rgb, mask=out.mask))
