"""pytorch/examples' fast_neural_style TransformerNet: the plain fp32 baseline of `bench.stylize`."""
from __future__ import annotations

import torch.nn as nn

from avatars.core.layers import InstanceNorm
from avatars.style.stylenet import StyleNet, StyleNetConfig


class TransformerNet(StyleNet):
    """The reference-width StyleNet-IN, as pytorch/examples has it.

    Same layers in the same order as the original (9x9 conv 32, strided 3x3 convs 64 and 128,
    five residual blocks, nearest-upsample + conv back to 64 and 32, 9x9 conv to RGB, instance
    norm with affine parameters, reflection padding). Only the benchmark uses it, in plain fp32.
    """

    def __init__(self):
        super().__init__(StyleNetConfig(channels=(32, 64, 128), n_residual=5, norm="instance"))
        for m in self.modules():  # the baseline keeps torch's own instance norm, as pytorch/examples has it
            if isinstance(m, InstanceNorm):
                m.__class__ = nn.InstanceNorm2d
