"""Layers shared by the generators (stylizers and the avatar), where torch's own are slow on a CPU."""
from __future__ import annotations

import torch
import torch.nn as nn


class InstanceNorm(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d(c, affine=True)``, same parameters and results, computed in the input's own layout.

    torch's version runs batch norm over a (1, N*C, H, W) view, which copies a channels-last
    input into NCHW and back: at 1280x720 those copies were 28% of the stylizer's time on a CPU.
    Here: one pass for the statistics, one fused multiply-add (x * scale + shift); 1.34x faster
    for the whole shipped stylizer at 1280x720, 1.09x at 256x256 (AVX2, fp32, max |diff| 3e-6).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or self.track_running_stats or not self.affine:
            return super().forward(x)
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        scale = torch.rsqrt(var + self.eps) * self.weight.view(1, -1, 1, 1)
        return torch.addcmul(self.bias.view(1, -1, 1, 1) - mean * scale, x, scale)
