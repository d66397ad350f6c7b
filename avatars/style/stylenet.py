"""Feed-forward image transformation networks for stylization.

``StyleNet`` is the residual network of Johnson et al. (2016) with the normalisation of
Ulyanov et al. (2017): instance normalisation (StyleNet-IN, the default) discards the content
image's contrast, which makes stylization much easier to learn than with batch normalisation
(StyleNet-BN, kept for the comparison of the thesis, Fig. 3.3). Width and depth are
configurable so that a narrow variant can run in real time on a CPU (pytorch/examples'
TransformerNet, the benchmark's baseline, is this network at 32-64-128 channels:
`bench.baselines.transformer_net`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from avatars.core.layers import InstanceNorm

Norm = Literal["instance", "batch"]


def norm_layer(kind: Norm, channels: int) -> nn.Module:
    if kind == "instance":
        return InstanceNorm(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"unknown normalisation {kind!r} (instance | batch)")


class ConvLayer(nn.Sequential):
    """Reflection-padded convolution, optionally after a nearest-neighbour 2x upsampling.

    Upsample-then-convolve avoids the checkerboard artefacts of transposed convolutions.
    ``fp32``: computed in fp32 even under bf16 autocast. The layer that reads the image needs it:
    its output has a large mean and a small spread wherever the picture is flat, bf16 keeps 8 bits
    of the mean, and the instance norm after it divides the rounding by the spread. Measured with
    the shipped great_wave on seven real frames against fp32: bf16 everywhere, mean error up to 2.2
    grey levels and 99.9th percentile up to 25; this layer in fp32, 0.7 and 7.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, upsample: bool = False, fp32: bool = False):
        layers = [nn.Upsample(scale_factor=2, mode="nearest")] if upsample else []
        layers += [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride)]
        super().__init__(*layers)
        self.fp32 = fp32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fp32:
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())


class ConvNormReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, norm: Norm, stride: int = 1, upsample: bool = False,
                 fp32: bool = False):
        super().__init__(ConvLayer(cin, cout, kernel, stride, upsample, fp32), norm_layer(norm, cout), nn.ReLU())


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, norm: Norm):
        super().__init__()
        self.body = nn.Sequential(
            ConvNormReLU(channels, channels, 3, norm),
            ConvLayer(channels, channels, 3), norm_layer(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@dataclass
class StyleNetConfig:
    """Shape of a StyleNet: channels of the three resolutions, residual blocks, normalisation."""

    channels: tuple[int, int, int] = (32, 64, 128)
    n_residual: int = 5
    norm: Norm = "instance"

    def to_dict(self) -> dict:
        return asdict(self)


class StyleNet(nn.Module):
    """RGB in [0, 1] (N, 3, H, W) -> stylized RGB, roughly in [0, 1] (clamp for display).

    Any H, W work; sizes that are not multiples of 4 are padded by reflection and cropped back.
    """

    def __init__(self, cfg: StyleNetConfig = StyleNetConfig()):
        super().__init__()
        self.cfg = cfg
        c1, c2, c3 = cfg.channels
        n = cfg.norm
        self.net = nn.Sequential(
            ConvNormReLU(3, c1, 9, n, fp32=True),
            ConvNormReLU(c1, c2, 3, n, stride=2), ConvNormReLU(c2, c3, 3, n, stride=2),
            *[ResidualBlock(c3, n) for _ in range(cfg.n_residual)],
            ConvNormReLU(c3, c2, 3, n, upsample=True), ConvNormReLU(c2, c1, 3, n, upsample=True),
            ConvLayer(c1, 3, 9),
        )

    multiple = 4   # two stride-2 stages: inputs are padded to a multiple of this

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pad_run_crop(self.net, x, self.multiple)


def pad_run_crop(net: nn.Module, x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Run a fully convolutional net on any size by reflection-padding to ``multiple``."""
    h, w = x.shape[-2:]
    y = net(pad_to_multiple(x, multiple))
    return y[..., :h, :w]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """(N, C, H, W) padded at the bottom and right to multiples of ``multiple``, by reflection where it fits."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if not (ph or pw):
        return x
    return F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
