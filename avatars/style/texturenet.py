"""TextureNet: the multi-scale generator of Texture Networks (Ulyanov et al., ICML 2016).

Noise enters at K scales (full resolution down to 1/2^(K-1)). Each scale's input passes a block
of three convolutions (3x3, 3x3, 1x1, each normalised and followed by a ReLU); starting from the
coarsest, the running tensor is upsampled 2x (nearest), normalised, concatenated with the next
scale's block output and passed through a join block, so the width grows by ``width`` per scale
(8 -> 40 for K = 5 in the paper). A final 1x1 convolution gives RGB.

Two modes: texture synthesis (noise only; circular padding removes seams, and any output size
works) and stylization (each scale also sees the content image downsampled to it, K = 6 in the
paper). In stylization the noise amplitude at test time trades style against content without
retraining (Fig. 2.5): ``noise_scale=0`` keeps most content, larger values add texture.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from avatars.style.stylenet import Norm, norm_layer


Padding = Literal["circular", "reflect", "zeros"]
#: What a mode's unset fields become (thesis): synthesis K=5, batch norm, circular padding (seamless
#: textures of any size); stylization K=6, instance norm (Ulyanov et al. 2017) and reflection padding.
MODE_DEFAULTS: dict[bool, dict[str, object]] = {
    False: {"scales": 5, "norm": "batch", "padding": "circular"},
    True: {"scales": 6, "norm": "instance", "padding": "reflect"},
}


@dataclass
class TextureNetConfig:
    """Shape of a TextureNet; ``None`` fields take their mode's default (``MODE_DEFAULTS``), width 8 in both."""

    scales: int | None = None
    width: int = 8
    noise_channels: int = 3
    image_input: bool = False        # True: stylization g(y, z); False: synthesis g(z)
    norm: Norm | None = None
    padding: Padding | None = None

    def resolved(self) -> "TextureNetConfig":
        """This config with the unset fields filled in for its mode."""
        defaults = MODE_DEFAULTS[self.image_input]
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def to_dict(self) -> dict:
        return asdict(self.resolved())


def _block(cin: int, cout: int, norm: Norm, padding: str) -> nn.Sequential:
    layers = []
    for k, (i, o) in zip((3, 3, 1), ((cin, cout), (cout, cout), (cout, cout))):
        layers += [nn.Conv2d(i, o, k, padding=k // 2, padding_mode=padding), norm_layer(norm, o), nn.ReLU()]
    return nn.Sequential(*layers)


class TextureNet(nn.Module):
    """g(z) or g(y, z). ``forward(image=None, noise=None, size=None, noise_scale=1.0)``.

    ``image``: (N, 3, H, W) RGB in [0, 1] for stylization; ``size``: (H, W) for synthesis;
    ``noise``: a list from ``make_noise`` (fixed noise = reproducible, flicker-free video); with
    noise alone the output has the noise's (padded) size unless ``size`` says otherwise.
    Any H, W: inputs are padded to a multiple of 2^(K-1) and the output cropped back.
    """

    def __init__(self, cfg: TextureNetConfig = TextureNetConfig()):
        super().__init__()
        self.cfg = cfg = cfg.resolved()
        k, w, n = cfg.scales, cfg.width, cfg.norm
        cin = cfg.noise_channels + (3 if cfg.image_input else 0)
        pad = cfg.padding
        self.scale_blocks = nn.ModuleList(_block(cin, w, n, pad) for _ in range(k))
        # join j merges the next finer scale (width w) with the upsampled coarser result (w * (j + 1))
        self.up_norms = nn.ModuleList(norm_layer(n, w * (j + 1)) for j in range(k - 1))
        self.in_norms = nn.ModuleList(norm_layer(n, w) for _ in range(k - 1))
        self.joins = nn.ModuleList(_block(w * (j + 2), w * (j + 2), n, pad) for j in range(k - 1))
        self.to_rgb = nn.Conv2d(w * k, 3, 1)

    @property
    def multiple(self) -> int:
        return 2 ** (self.cfg.scales - 1)

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        m = self.multiple
        return h + (-h % m), w + (-w % m)

    def make_noise(self, n: int, h: int, w: int, generator: torch.Generator | None = None,
                   device: torch.device | str = "cpu") -> list[torch.Tensor]:
        """Uniform i.i.d. noise in [0, 1) at every scale for an output of size (h, w)."""
        ph, pw = self.padded_size(h, w)
        c = self.cfg.noise_channels
        return [torch.rand(n, c, ph >> i, pw >> i, generator=generator, device=device) for i in range(self.cfg.scales)]

    def forward(self, image: torch.Tensor | None = None, noise: Sequence[torch.Tensor] | None = None,
                size: tuple[int, int] | None = None, noise_scale: float = 1.0) -> torch.Tensor:
        if self.cfg.image_input != (image is not None):
            raise ValueError("this TextureNet " + ("needs" if self.cfg.image_input else "takes no") + " content image")
        if image is not None:
            n, (h, w), device = image.shape[0], image.shape[-2:], image.device
        elif size is not None or noise is not None:
            n = noise[0].shape[0] if noise is not None else 1
            h, w = size if size is not None else noise[0].shape[-2:]
            device = noise[0].device if noise is not None else self.to_rgb.weight.device
        else:
            raise ValueError("synthesis needs a size or a noise list")
        if noise is None:
            noise = self.make_noise(n, h, w, device=device)
        ph, pw = self.padded_size(h, w)
        if noise[0].shape[-2:] != (ph, pw):
            raise ValueError(f"noise of size {tuple(noise[0].shape[-2:])} does not fit output {h}x{w} (needs {ph}x{pw})")
        inputs = [z * noise_scale for z in noise]
        if image is not None:
            y = F.pad(image, (0, pw - w, 0, ph - h), mode="replicate")
            inputs = [torch.cat([z, F.avg_pool2d(y, 2 ** i) if i else y], 1) for i, z in enumerate(inputs)]
        x = self.scale_blocks[-1](inputs[-1])
        for j, i in enumerate(range(self.cfg.scales - 2, -1, -1)):
            up = self.up_norms[j](F.interpolate(x, scale_factor=2, mode="nearest"))
            cur = self.in_norms[j](self.scale_blocks[i](inputs[i]))
            x = self.joins[j](torch.cat([cur, up], 1))
        return self.to_rgb(x)[..., :h, :w]
