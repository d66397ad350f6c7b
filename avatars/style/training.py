"""Training feed-forward stylizers and texture generators with perceptual losses.

One loop serves the three objectives of the thesis: stylization (StyleNet or TextureNet with an
image input; style + content + TV), texture synthesis (TextureNet from noise only; style + TV),
and either with the Julesz diversity term (lambda > 0, batch >= 2). Content images are random
crops with flips from a small folder of photos: Ulyanov et al. found that a handful of content
images gives stylizers as good as ImageNet does. Checkpoints are resumable; samples and the
loss curve are written as PNGs next to the checkpoint so progress can be watched.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from avatars.style.losses import LossConfig, PerceptualLoss
from avatars.core.checkpoint import describe_data, load_optimizer_state, read_run
from avatars.core.pictures import picture_of
from avatars.style.checkpoint import build_model, load_stylizer, read_style_record, save_stylizer
from avatars.style.stylenet import StyleNetConfig
from avatars.style.texturenet import TextureNetConfig
from avatars.core.training_loop import TrainingLog, cosine, run_progress, save_grid, save_loss_curve, train_steps

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass
class StyleTrainConfig:
    """Everything a training run needs; stored in the checkpoint for resuming and records."""

    style: str
    content_dir: str | None = None       # None: texture synthesis (TextureNet from noise)
    model: Literal["stylenet", "texturenet"] = "stylenet"
    stylenet: StyleNetConfig = field(default_factory=lambda: StyleNetConfig(channels=(16, 32, 64), n_residual=5))
    texturenet: TextureNetConfig = field(default_factory=TextureNetConfig)
    loss: LossConfig = field(default_factory=lambda: LossConfig(bf16=None))  # bf16 where native
    image_size: int = 256
    style_size: int = 320                # longer side of the style image, pixels
    batch_size: int = 2
    repeat_content: int | None = None    # TextureNet: each crop this often per batch, each with its own
                                         # noise, so the diversity term sees what the noise changes;
                                         # None: the whole batch when it has a diversity term, else 1
    steps: int = 2000
    lr: float = 1e-3
    lr_final: float | None = None        # cosine decay from lr to this over the run; None: constant
    seed: int = 0
    sample_every: int = 100
    checkpoint_every: int = 100
    time_limit_s: float | None = None    # stop (and save) once training time reaches this
    device: str = "cpu"

    def __post_init__(self):
        for name, cls in (("stylenet", StyleNetConfig), ("texturenet", TextureNetConfig), ("loss", LossConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}))
        if self.content_dir is None and self.model != "texturenet":
            raise ValueError("texture synthesis (no content_dir) needs model='texturenet'")
        if self.model == "texturenet":
            self.texturenet = replace(self.texturenet, image_input=self.content_dir is not None).resolved()
        if self.repeat_content is None:  # different crops differ anyway: diversity needs one crop, many noises
            diverse = self.model == "texturenet" and self.content_dir is not None and self.loss.diversity_weight > 0
            self.repeat_content = self.batch_size if diverse else 1
        if self.loss.diversity_weight and self.batch_size < 2:
            raise ValueError("the diversity term needs batch_size >= 2")
        if self.batch_size % self.repeat_content:
            raise ValueError("batch_size must be a multiple of repeat_content")
        if self.lr_final is not None and not 0 <= self.lr_final <= self.lr:
            raise ValueError("lr_final must be in [0, lr]")

    def lr_at(self, step: int, seconds: float) -> float:
        """The learning rate at this point of the run: cosine from ``lr`` to ``lr_final``."""
        return cosine(self.lr, self.lr_final, run_progress(self, step, seconds))


@dataclass
class TrainResult:
    checkpoint: Path
    steps: int
    seconds: float
    final_losses: dict[str, float]   # mean of each term over the last 50 steps


def load_image(path: str | Path, max_side: int | None = None) -> torch.Tensor:
    """An image file as (1, 3, H, W) RGB float in [0, 1], optionally scaled to `max_side`. Read as the
    runtime reads pictures (`avatars.core.pictures`): upright by its EXIF orientation, 16-bit samples
    scaled (a plain conversion clips them to white), transparency over white."""
    with Image.open(path) as opened:
        opened.load()
        img = Image.fromarray(picture_of(opened).rgb)
    if max_side and max(img.size) != max_side:
        s = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.BICUBIC)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float().div(255).contiguous()


def list_images(folder: str | Path) -> list[Path]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return files


class ContentCrops:
    """Random square crops with random scale and horizontal flips from a folder of photos."""

    def __init__(self, folder: str | Path, size: int, seed: int = 0):
        self.size = size
        self.files = list_images(folder)
        # keep each photo at 1.5x the crop size on its short side: decoding once, cropping often
        self.images = [self._short_side(load_image(p), int(size * 1.5)) for p in self.files]
        self.rng = random.Random(seed)

    @staticmethod
    def _short_side(x: torch.Tensor, side: int) -> torch.Tensor:
        h, w = x.shape[-2:]
        s = side / min(h, w)
        return nn.functional.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", antialias=True,
                                         align_corners=False)

    def sample(self, n: int) -> torch.Tensor:
        out = []
        for _ in range(n):
            img = self.rng.choice(self.images)
            h, w = img.shape[-2:]
            side = self.rng.randint(self.size, min(h, w))
            y, x = self.rng.randint(0, h - side), self.rng.randint(0, w - side)
            crop = img[..., y:y + side, x:x + side]
            if side != self.size:
                crop = nn.functional.interpolate(crop, size=(self.size, self.size), mode="bilinear",
                                                 antialias=True, align_corners=False)
            out.append(crop.flip(-1) if self.rng.random() < 0.5 else crop)
        return torch.cat(out).clamp(0, 1)


def _config_from_dict(d: dict) -> StyleTrainConfig:
    names = {f.name for f in dataclasses.fields(StyleTrainConfig)}
    return StyleTrainConfig(**{k: v for k, v in d.items() if k in names})


def train_stylizer(cfg: StyleTrainConfig, out: str | Path, resume: bool = True,
                   progress: bool = True) -> TrainResult:
    """Train (or resume) a stylizer/texture generator; writes ``out`` (.safetensors) and friends.

    Next to the checkpoint: ``<stem>.json`` (config, step, losses, time), ``<stem>.optim.safetensors``
    (resume state), ``<stem>_samples/step_XXXXXX.png`` and ``<stem>_loss.png``.
    """
    out = Path(out)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    style = load_image(cfg.style, cfg.style_size).to(device)
    crops = ContentCrops(cfg.content_dir, cfg.image_size, cfg.seed) if cfg.content_dir else None
    shape = cfg.stylenet if cfg.model == "stylenet" else cfg.texturenet
    model = build_model(cfg.model, dataclasses.asdict(shape)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    log = TrainingLog()
    if resume and out.is_file():
        model, meta = load_stylizer(out, device), read_style_record(out)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        load_optimizer_state(out, optimizer)
        log = TrainingLog(meta["step"], meta["seconds"], meta.get("history", []))
    model.train()
    loss_fn = PerceptualLoss(cfg.loss, style).to(device)
    samples_dir = out.with_name(out.stem + "_samples")
    samples_dir.mkdir(parents=True, exist_ok=True)
    fixed = crops.sample(min(4, cfg.batch_size * 2)).to(device) if crops else None
    fixed_noise = None

    run = dataclasses.asdict(cfg)
    record = {"train": {**run, "style": Path(cfg.style).name,
                        "content_dir": Path(cfg.content_dir).name if cfg.content_dir else None},
              "data": {"style": describe_data(cfg.style),
                       "content": describe_data(cfg.content_dir) if cfg.content_dir else None}}

    def checkpoint() -> Path:
        info = {**record, "step": log.step, "seconds": round(log.seconds, 1),
                "final_losses": log.mean(), "history": log.history}
        return save_stylizer(out, model, info, optimizer, run)

    def sample() -> None:
        nonlocal fixed_noise
        model.eval()
        with torch.no_grad():
            if cfg.model == "texturenet":
                n = fixed.shape[0] if fixed is not None else 4
                fixed_noise = fixed_noise or model.make_noise(n, cfg.image_size, cfg.image_size,
                                                              torch.Generator().manual_seed(1), device)
                y = model(fixed, fixed_noise)
            else:
                y = model(fixed)
        model.train()
        # one row of outputs, under their inputs where there are any; torchvision's 2 px border
        save_grid(samples_dir / f"step_{log.step:06d}.png", [y] if fixed is None else [fixed, y], pad=2)
        if log.history:
            save_loss_curve(out.with_name(out.stem + "_loss.png"), log.history)

    def losses() -> dict[str, torch.Tensor]:
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr_at(log.step, log.seconds)
        content = None
        if crops:
            content = crops.sample(cfg.batch_size // cfg.repeat_content).repeat_interleave(cfg.repeat_content, 0)
            content = content.to(device)
        if content is None:  # texture synthesis: a batch of noise samples
            y = model(noise=model.make_noise(cfg.batch_size, cfg.image_size, cfg.image_size, device=device))
        else:
            y = model(content)
        return loss_fn(y, content)

    train_steps(log, cfg, losses, optimizer, sample, checkpoint, desc=out.stem, progress=progress)
    sample()
    return TrainResult(checkpoint(), log.step, log.seconds, log.mean())


def config_of_checkpoint(path: str | Path) -> StyleTrainConfig:
    """The training config of a checkpoint: the run's own (local paths) where it has resume
    state, else the record's (data named by file name)."""
    return _config_from_dict(read_run(path) or read_style_record(path)["train"])
