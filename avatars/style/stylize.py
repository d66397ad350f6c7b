"""Fast inference for trained stylizers: uint8 frames of any size in, stylized uint8 frames out.

The fast path keeps activations channels-last and runs under bf16 autocast where the hardware
computes in bf16 (``avatars.core.precision``: GPUs, AVX-512-BF16/AMX CPUs; measured against fp32 in
tests/test_stylize.py and bench/stylize.py); an optional ``torch.compile``. On a GPU the same
code runs on whatever device and stream the caller set.
For video, a TextureNet keeps one fixed noise per frame size (fresh noise every frame flickers),
and temporal smoothing blends the new output with the previous one, either plainly
(exponential) or after warping it along the optical flow of the input (flow-guided, which
suppresses flicker without ghosting where things move).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn as nn

from avatars.style.flicker import FlowEstimator, occlusion_mask, warp
from avatars.core.precision import use_bf16
from avatars.style.texturenet import TextureNet

Smoothing = Literal["none", "ema", "flow"]


def to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    """(N, 3, H, W) float RGB in [0, 1] -> N arrays (H, W, 3) uint8."""
    return list(images.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())


@torch.inference_mode()
def sample_textures(model: TextureNet, size: tuple[int, int], n: int = 1, seed: int = 0,
                    noise_scale: float = 1.0) -> list[np.ndarray]:
    """``n`` texture samples of ``size`` (H, W) from a noise-only TextureNet (any size: it is
    fully convolutional with circular padding), reproducible from ``seed``."""
    if model.cfg.image_input:
        raise ValueError("this TextureNet stylizes images; texture synthesis needs one trained from noise only")
    device = model.to_rgb.weight.device
    noise = model.make_noise(n, *size, torch.Generator().manual_seed(seed))
    return to_uint8(model.eval()(noise=[z.to(device) for z in noise], size=size, noise_scale=noise_scale))


@dataclass
class FastPathConfig:
    bf16: bool | None = None          # bf16 autocast; None = where the hardware has it natively
    channels_last: bool = True
    compile: bool = False             # torch.compile the network (first frame of each size is slow)
    noise_scale: float = 1.0          # TextureNet: style vs content trade-off at test time
    seed: int = 0                     # TextureNet: the fixed noise
    smoothing: Smoothing = "none"
    smoothing_weight: float = 0.5     # share of the (warped) previous output kept in each frame

    def __post_init__(self):
        if self.smoothing not in ("none", "ema", "flow"):
            raise ValueError(f"unknown smoothing {self.smoothing!r} (none | ema | flow)")
        if not 0 <= self.smoothing_weight < 1:
            raise ValueError("smoothing_weight must be in [0, 1)")


class FrameStylizer:
    """Callable: (H, W, 3) uint8 RGB -> (H, W, 3) uint8 RGB; holds the temporal state of a video."""

    def __init__(self, model: nn.Module, device: torch.device | str = "cpu", cfg: FastPathConfig = FastPathConfig()):
        self.device = torch.device(device)
        self.cfg = cfg
        self.bf16 = use_bf16(cfg.bf16, self.device)
        self.model = model.to(self.device).eval()
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net = torch.compile(self.model) if cfg.compile else self.model
        self._noise: dict[tuple[int, int], list[torch.Tensor]] = {}
        self._flow = FlowEstimator() if cfg.smoothing == "flow" else None
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (call between videos or after a scene cut)."""
        self._prev_in: np.ndarray | None = None
        self._prev_out: np.ndarray | None = None

    def noise(self, h: int, w: int) -> list[torch.Tensor]:
        if (h, w) not in self._noise:
            g = torch.Generator().manual_seed(self.cfg.seed)
            self._noise[(h, w)] = [z.to(self.device) for z in self.model.make_noise(1, h, w, g)]
        return self._noise[(h, w)]

    @torch.inference_mode()
    def stylize_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float RGB in [0, 1] on ``device`` -> same, stylized, fp32, clamped."""
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            if isinstance(self.model, TextureNet):
                noise = [z.expand(x.shape[0], -1, -1, -1) for z in self.noise(*x.shape[-2:])]
                y = self.net(x, noise, noise_scale=self.cfg.noise_scale)
            else:
                y = self.net(x)
        return y.float().clamp_(0, 1)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {frame.shape} {frame.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device).permute(2, 0, 1)[None].float() / 255
        return self._smooth(frame, to_uint8(self.stylize_tensor(x))[0])

    def _smooth(self, frame: np.ndarray, out: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        if cfg.smoothing == "none":
            return out
        prev, a = self._prev_out, cfg.smoothing_weight
        if prev is not None and prev.shape == out.shape:
            if cfg.smoothing == "flow":
                fw, bw = self._flow(self._prev_in, frame), self._flow(frame, self._prev_in)
                prev = warp(prev, fw)
                a = a * occlusion_mask(fw, bw)[..., None]  # occluded pixels take the new output
            out = (a * prev.astype(np.float32) + (1 - a) * out.astype(np.float32)).round().astype(np.uint8)
        self._prev_in, self._prev_out = frame, out
        return out
