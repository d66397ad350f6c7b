"""Fast inference for trained stylizers: uint8 frames of any size in, stylized uint8 frames out.

The fast path keeps activations channels-last and runs under bf16 autocast where the hardware
computes in bf16 (``avatars.core.precision``: GPUs, AVX-512-BF16/AMX CPUs; measured against fp32 in
tests/test_stylize.py and bench/stylize.py); an optional ``torch.compile``, or a network compiled
ahead of time for one frame size (``avatars.style.aot``) swapped in with ``use_compiled`` while
frames flow. On a GPU the same code runs on whatever device and stream the caller set.
For video, a TextureNet keeps one fixed noise per frame size (fresh noise every frame flickers),
and temporal smoothing blends the new output with the previous one, either plainly
(exponential) or after warping it along the optical flow of the input (flow-guided, which
suppresses flicker without ghosting where things move).

Given a person mask, ``region`` chooses what is painted: the person (``person``), everything
else (``background``) or the whole frame (``frame``, the mask ignored). The painted region sets
the instance-norm statistics (``avatars.core.layers.statistics_from``), and by default
(``mask_mode="fill"``) is also cut out: its box is stylized alone, the rest of the box a neutral
grey, so no background pixel reaches the person through the convolutions either (``"stats"``
keeps the real surroundings). The rest of the frame keeps the input's pixels, blended along the
soft mask. Instance norm over the whole frame lets the background
decide the person's look (50 grey levels between two backgrounds, docs/stylize.md).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn as nn

from avatars.core.layers import statistics_from
from avatars.core.precision import use_bf16
from avatars.style.flicker import FlowEstimator, occlusion_mask, warp
from avatars.style.stylenet import pad_to_multiple
from avatars.style.texturenet import TextureNet

Smoothing = Literal["none", "ema", "flow"]
Region = Literal["frame", "person", "background"]
MaskMode = Literal["stats", "fill"]
FILL_GREY = 0.5          # the neutral fill of mask_mode="fill"
FILL_MARGIN = 16         # pixels of context kept around the region's box in mask_mode="fill"


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
    region: Region = "frame"          # with a mask: what is painted (the rest keeps the input)
    mask_mode: MaskMode = "fill"      # region statistics on its crop over grey (fill) or in the frame (stats)

    def __post_init__(self):
        if self.smoothing not in ("none", "ema", "flow"):
            raise ValueError(f"unknown smoothing {self.smoothing!r} (none | ema | flow)")
        if self.region not in ("frame", "person", "background"):
            raise ValueError(f"unknown region {self.region!r} (frame | person | background)")
        if self.mask_mode not in ("stats", "fill"):
            raise ValueError(f"unknown mask_mode {self.mask_mode!r} (stats | fill)")
        if not 0 <= self.smoothing_weight < 1:
            raise ValueError("smoothing_weight must be in [0, 1)")


class NetworkCall(nn.Module):
    """One frame's network call as one module, ``(x, *noise) -> y``: the network under the fast path's
    autocast, TextureNet's noise an input and its ``noise_scale`` fixed. What is compiled, in process
    (``FastPathConfig.compile``) or ahead of time (``avatars.style.aot``), so both run the same thing."""

    def __init__(self, model: nn.Module, device_type: str, bf16: bool, noise_scale: float = 1.0):
        super().__init__()
        self.model, self.device_type, self.bf16, self.noise_scale = model, device_type, bf16, noise_scale

    def forward(self, x: torch.Tensor, *noise: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.bf16):
            if isinstance(self.model, TextureNet):
                return self.model(x, list(noise), noise_scale=self.noise_scale)
            return self.model(x)


class FrameStylizer:
    """Callable: (H, W, 3) uint8 RGB [+ (H, W) person mask] -> (H, W, 3) uint8 RGB; holds the
    temporal state of a video. A mask is float in [0, 1] or uint8 in 0..255; without one, the
    person region is empty (``region="person"`` returns the frame, ``"background"`` paints it all)."""

    def __init__(self, model: nn.Module, device: torch.device | str = "cpu", cfg: FastPathConfig = FastPathConfig()):
        self.device = torch.device(device)
        self.cfg = cfg
        self.bf16 = use_bf16(cfg.bf16, self.device)
        self.model = model.to(self.device).eval()
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.call = NetworkCall(self.model, self.device.type, self.bf16, cfg.noise_scale)
        self.net: Callable[..., torch.Tensor] = torch.compile(self.call) if cfg.compile else self.call
        self._compiled: dict[tuple[int, ...], Callable[..., torch.Tensor]] = {}  # by input shape (N, 3, H, W)
        self._noise: dict[tuple[int, int], list[torch.Tensor]] = {}
        self._flow = FlowEstimator("fast") if cfg.smoothing == "flow" else None
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (call between videos or after a scene cut)."""
        self._prev_in: np.ndarray | None = None
        self._prev_out: np.ndarray | None = None

    def warm_up(self, h: int, w: int) -> str | None:
        """Run the network once on a blank (h, w) frame: compiles and allocates for that size ahead of time
        (with ``region`` person/background the crops change size, so compiling helps the whole frame only).
        Where torch.compile cannot build its kernels (no C++ compiler, no Triton) the network runs eagerly
        from then on, and the compiler's error is returned; None when all went well."""
        blank = torch.zeros(1, 3, h, w, device=self.device)
        try:
            self.stylize_tensor(blank)
        except Exception as exc:  # inductor's failures have no common base class
            if self.net is self.call:
                raise
            self.net = self.call
            self.stylize_tensor(blank)
            return f"{type(exc).__name__}: {exc}".splitlines()[0]
        return None

    def use_compiled(self, shape: tuple[int, ...], network: Callable[..., torch.Tensor]) -> None:
        """Run ``network`` (``NetworkCall`` compiled for inputs of ``shape`` (N, 3, H, W), e.g. an AOTInductor
        package) for the whole frames of that shape from the next call on; every other call stays eager."""
        self._compiled[tuple(shape)] = network

    def compiled_for(self, shape: tuple[int, ...]) -> bool:
        """Whether whole frames batched as ``shape`` (N, 3, H, W) run a network compiled ahead of time."""
        return tuple(shape) in self._compiled

    def network_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``NetworkCall``'s inputs for a batch ``x`` on ``device``: channels-last where configured, then
        TextureNet's fixed noise."""
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if not isinstance(self.model, TextureNet):
            return (x,)
        return (x, *(z.expand(x.shape[0], -1, -1, -1) for z in self.noise(*x.shape[-2:])))

    def noise(self, h: int, w: int) -> list[torch.Tensor]:
        if (h, w) not in self._noise:
            g = torch.Generator().manual_seed(self.cfg.seed)
            self._noise[(h, w)] = [z.to(self.device) for z in self.model.make_noise(1, h, w, g)]
        return self._noise[(h, w)]

    @torch.inference_mode()
    def stylize_tensor(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 3, H, W) float RGB in [0, 1] on ``device`` -> same, stylized, fp32, clamped.
        ``weights`` (N, 1, H, W): the pixels whose statistics the instance norms use (default all)."""
        if weights is None:
            net, statistics = self._compiled.get(tuple(x.shape), self.net), contextlib.nullcontext()
        else:  # the statistics are the eager model's state, which a network compiled ahead of time never reads
            net, statistics = self.net, statistics_from(self.model, pad_to_multiple(weights, self.model.multiple))
        with statistics:
            return net(*self.network_inputs(x)).float().clamp_(0, 1)

    def __call__(self, frame: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {frame.shape} {frame.dtype}")
        # torch.tensor copies: frames from another process are read-only views, which from_numpy cannot share
        x = torch.tensor(frame, device=self.device).permute(2, 0, 1)[None].float() / 255
        if self.cfg.region == "frame":
            return self._smooth(frame, to_uint8(self.stylize_tensor(x))[0])
        alpha = self._region(mask, frame.shape[:2])
        if not alpha.any():
            return frame.copy()
        return self._smooth(frame, to_uint8(self._paint(x, alpha))[0])

    def _region(self, mask: np.ndarray | None, size: tuple[int, int]) -> torch.Tensor:
        """The painted region as (1, 1, H, W) float in [0, 1]."""
        if mask is None:
            person = torch.zeros(1, 1, *size, device=self.device)
        else:
            mask = np.asarray(mask)
            if mask.shape != size:
                raise ValueError(f"the mask must be (H, W) = {size} like the frame, got {mask.shape}")
            m = torch.tensor(mask, device=self.device).float()
            person = (m / 255 if mask.dtype == np.uint8 else m).clamp(0, 1)[None, None]
        return person if self.cfg.region == "person" else 1 - person

    def _paint(self, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """``x`` with the region ``alpha`` stylized under the region's statistics, blended along the soft mask."""
        if self.cfg.mask_mode == "stats":
            return torch.lerp(x, self.stylize_tensor(x, alpha), alpha)
        ys, xs = torch.nonzero(alpha[0, 0] > 0.5, as_tuple=True)
        if ys.numel() == 0:
            return x
        (h, w), m = x.shape[-2:], FILL_MARGIN
        box = (slice(max(int(ys.min()) - m, 0), min(int(ys.max()) + m + 1, h)),
               slice(max(int(xs.min()) - m, 0), min(int(xs.max()) + m + 1, w)))
        crop, a = x[..., box[0], box[1]], alpha[..., box[0], box[1]]
        filled = torch.lerp(torch.full_like(crop, FILL_GREY), crop, a)
        out = x.clone()
        out[..., box[0], box[1]] = torch.lerp(crop, self.stylize_tensor(filled, a), a)
        return out

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
