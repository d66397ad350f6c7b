"""Gatys et al. optimisation: the slow quality reference and a tool.

Texture synthesis (start from noise, style loss only), style transfer (start from the content
image, style + content loss), and refinement of a feed-forward result (start from the network's
output). Pixels are optimised directly with L-BFGS or Adam under the same ``PerceptualLoss`` the
networks are trained with, so losses are comparable; the history of (seconds, loss) pairs is what
the feed-forward vs optimisation speed comparison (Texture Networks, Fig. 2.6) is measured on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import torch

from avatars.style.losses import PerceptualLoss


@dataclass
class GatysConfig:
    steps: int = 200
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    lr: float | None = None                 # default: 1.0 for L-BFGS, 0.02 for Adam (pixels in [0, 1])
    target_loss: float | None = None        # stop once style + content loss (weighted) reaches it
    time_limit_s: float | None = None


@dataclass
class GatysResult:
    image: torch.Tensor                     # (N, 3, H, W) RGB in [0, 1]
    history: list[tuple[float, float]]      # (seconds since start, style + content loss)
    reached_target_s: float | None          # when target_loss was first reached


def objective(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss compared across methods: weighted style + content, without TV and diversity."""
    return terms["style"] + terms.get("content", 0.0)


def optimise(loss_fn: PerceptualLoss, init: torch.Tensor, content: torch.Tensor | None = None,
             cfg: GatysConfig = GatysConfig()) -> GatysResult:
    """Optimise the pixels of ``init`` under ``loss_fn`` (its style must be set)."""
    x = init.detach().clamp(0, 1).contiguous().requires_grad_(True)
    content_feats = None
    if content is not None:
        with torch.no_grad():
            content_feats = loss_fn.features(content)
    if cfg.optimizer == "lbfgs":
        opt = torch.optim.LBFGS([x], lr=cfg.lr or 1.0, max_iter=1, history_size=50)
    elif cfg.optimizer == "adam":
        opt = torch.optim.Adam([x], lr=cfg.lr or 0.02)
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r} (lbfgs | adam)")
    history: list[tuple[float, float]] = []
    reached = None
    start = time.perf_counter()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        terms = loss_fn(x, content_feats=content_feats)
        terms["total"].backward()
        closure.last = objective(terms).item()
        return terms["total"]

    for _ in range(cfg.steps):
        opt.step(closure)
        with torch.no_grad():
            x.clamp_(0, 1)
        elapsed = time.perf_counter() - start
        history.append((elapsed, closure.last))
        if cfg.target_loss is not None and closure.last <= cfg.target_loss:
            reached = elapsed
            break
        if cfg.time_limit_s is not None and elapsed > cfg.time_limit_s:
            break
    return GatysResult(x.detach(), history, reached)


def synthesize_texture(loss_fn: PerceptualLoss, size: tuple[int, int], cfg: GatysConfig = GatysConfig(),
                       seed: int = 0) -> GatysResult:
    """Texture synthesis by optimisation from uniform noise (style loss only)."""
    g = torch.Generator().manual_seed(seed)
    init = torch.rand(1, 3, *size, generator=g).to(loss_fn.vgg.scale.device)
    return optimise(loss_fn, init, None, cfg)


def stylize(loss_fn: PerceptualLoss, content: torch.Tensor, cfg: GatysConfig = GatysConfig(),
            init: torch.Tensor | None = None) -> GatysResult:
    """Style transfer from the content image, or refinement when ``init`` is a network's output."""
    return optimise(loss_fn, content if init is None else init, content, cfg)
