"""Textured neural avatar and the direct-translation baseline (Shysheya et al., CVPR 2019).

* ``Generator``: the image-translation network of the paper (Johnson et al. style): a 7x7
  stem, ``num_down`` stride-2 stages doubling channels up to ``max_channels``, residual
  blocks split between the shared encoder and two separate decoders (section 6.4.1:
  "encoder and decoder roughly equal, texture assignments and coordinates having separate
  decoders"), each decoder upsampling (nearest + 3x3 conv, no checkerboard) back to full
  size. ``GeneratorConfig.paper()`` is the paper's size (4 stages, 32 -> 256 channels,
  ~17M parameters); ``GeneratorConfig.small()`` the real-time variant.
* ``TexturedAvatar``: decoder A gives n+1 part logits (softmax; the last is background),
  decoder B 2n part coordinates (sigmoid -> [0, 1]); n learned RGB textures (one per body
  part, ``avatars.body.skeleton.PARTS``) are sampled bilinearly at those coordinates and blended
  by the part probabilities (eq. 6.1). The mask is 1 - P(background).
* ``DirectAvatar``: the same generator, decoders giving the mask logit and RGB directly.

Both return an ``AvatarOutput`` whose ``rgb`` is the colour premultiplied by the mask (black
background), which is what the losses compare with the ground truth with its background
blacked out, and whose ``mask_logit`` feeds the mask BCE (eq. 6.3) stably.

Files: ``save_avatar`` / ``load_avatar`` use the project's one checkpoint format
(``avatars.core.checkpoint``: safetensors + JSON record, kind ``textured`` or ``direct``).
``AvatarRenderer`` is the run-time wrapper: keypoints in frame pixels -> RGB uint8 + mask.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from avatars.avatar.crop import CropConfig, person_crop, torso_length
from avatars.body.bones import BoneStyle, rasterize_bones
from avatars.core.checkpoint import load_state, read_record, save_checkpoint
from avatars.core.layers import InstanceNorm
from avatars.core.precision import use_bf16
from avatars.body.skeleton import NUM_CHANNELS, NUM_PARTS

AvatarKind = Literal["textured", "direct"]


@dataclass(frozen=True)
class GeneratorConfig:
    """Size of the translation network; the decoders mirror the encoder's stages."""

    in_channels: int = NUM_CHANNELS
    base_channels: int = 32
    max_channels: int = 256
    num_down: int = 4
    res_encoder: int = 4       # residual blocks at the bottleneck, shared
    res_decoder: int = 4       # residual blocks at the start of each decoder
    outer_kernel: int = 7      # stem and output convolutions (full resolution: the costly ones)

    @classmethod
    def paper(cls) -> "GeneratorConfig":
        return cls()

    @classmethod
    def small(cls) -> "GeneratorConfig":
        return cls(base_channels=16, max_channels=128, num_down=3, res_encoder=2, res_decoder=1, outer_kernel=3)

    def channels(self) -> list[int]:
        """Channels after the stem and after each downsampling stage."""
        return [min(self.base_channels * 2 ** i, self.max_channels) for i in range(self.num_down + 1)]


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, padding_mode="reflect" if k > 1 else "zeros"),
            InstanceNorm(cout, affine=True), nn.ReLU(inplace=True)]


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(*_conv(c, c, 3), nn.Conv2d(c, c, 3, 1, 1, padding_mode="reflect"),
                                  InstanceNorm(c, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _decoder(cfg: GeneratorConfig, out_channels: int) -> nn.Sequential:
    ch = cfg.channels()
    layers: list[nn.Module] = [ResBlock(ch[-1]) for _ in range(cfg.res_decoder)]
    for i in range(cfg.num_down, 0, -1):
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), *_conv(ch[i], ch[i - 1], 3)]
    k = cfg.outer_kernel
    layers.append(nn.Conv2d(ch[0], out_channels, k, 1, k // 2, padding_mode="reflect"))
    return nn.Sequential(*layers)


class Generator(nn.Module):
    """Bone stack (B, 19, H, W) -> two output stacks; H and W must be multiples of 2**num_down."""

    def __init__(self, cfg: GeneratorConfig, out_a: int, out_b: int):
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels()
        layers = _conv(cfg.in_channels, ch[0], cfg.outer_kernel)
        for i in range(cfg.num_down):
            layers += _conv(ch[i], ch[i + 1], 3, stride=2)
        layers += [ResBlock(ch[-1]) for _ in range(cfg.res_encoder)]
        self.encoder = nn.Sequential(*layers)
        self.decoder_a = _decoder(cfg, out_a)
        self.decoder_b = _decoder(cfg, out_b)

    def forward(self, bones: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = 2 ** self.cfg.num_down
        if bones.shape[-1] % m or bones.shape[-2] % m:
            raise ValueError(f"generator input {tuple(bones.shape[-2:])} must be a multiple of {m}")
        h = self.encoder(bones)
        return self.decoder_a(h), self.decoder_b(h)


@dataclass
class AvatarOutput:
    rgb: torch.Tensor                  # (B, 3, H, W) colour premultiplied by the mask, [0, 1]
    mask: torch.Tensor                 # (B, 1, H, W) foreground probability
    mask_logit: torch.Tensor           # (B, 1, H, W) log-odds of the foreground
    parts: torch.Tensor | None = None  # (B, n+1, H, W) part probabilities (textured only)
    uv: torch.Tensor | None = None     # (B, 2n, H, W) part coordinates in [0, 1] (textured only)

    def colour(self) -> torch.Tensor:
        """RGB un-premultiplied, for compositing as ``colour * mask + background * (1 - mask)``."""
        return (self.rgb / self.mask.clamp_min(1e-4)).clamp(0, 1)


def sample_textures(textures: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear samples (B, n, 3, H, W) of textures (n, 3, T, T) at uv (B, 2n, H, W) in [0, 1].

    uv = (u, v) per part: u along texture columns, v along rows; texel i covers
    [i / T, (i + 1) / T) (``align_corners=False``), borders clamp.
    """
    b, _, h, w = uv.shape
    n = textures.shape[0]
    grid = uv.reshape(b, n, 2, h, w).permute(0, 1, 3, 4, 2).reshape(b * n, h, w, 2) * 2 - 1
    tex = textures.unsqueeze(0).expand(b, -1, -1, -1, -1).reshape(b * n, *textures.shape[1:])
    out = F.grid_sample(tex, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.reshape(b, n, 3, h, w)


def blend(parts: torch.Tensor, uv: torch.Tensor, textures: torch.Tensor) -> torch.Tensor:
    """Eq. 6.1: sum over parts k < n of P_k * T_k[uv_k] -> (B, 3, H, W) premultiplied colour."""
    n = textures.shape[0]
    return (parts[:, :n, None] * sample_textures(textures, uv)).sum(1)


class TexturedAvatar(nn.Module):
    """Generator -> part probabilities + part coordinates -> textures sampled and blended."""

    kind: AvatarKind = "textured"

    def __init__(self, generator: GeneratorConfig = GeneratorConfig.small(), num_parts: int = NUM_PARTS,
                 texture_size: int = 128):
        super().__init__()
        self.num_parts = num_parts
        self.net = Generator(generator, num_parts + 1, 2 * num_parts)
        self.textures = nn.Parameter(torch.full((num_parts, 3, texture_size, texture_size), 0.5))

    def predict(self, bones: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Part logits (B, n+1, H, W) and part coordinates (B, 2n, H, W) in [0, 1], fp32."""
        logits, coords = self.net(bones)
        return logits.float(), coords.float().sigmoid()

    def forward(self, bones: torch.Tensor) -> AvatarOutput:
        logits, uv = self.predict(bones)
        parts = logits.softmax(1)
        rgb = blend(parts, uv, self.textures.clamp(0, 1))
        mask_logit = (torch.logsumexp(logits[:, :-1], 1, keepdim=True) - logits[:, -1:])
        return AvatarOutput(rgb, 1 - parts[:, -1:], mask_logit, parts, uv)


class DirectAvatar(nn.Module):
    """The direct-translation baseline: the same generator giving mask logit and RGB."""

    kind: AvatarKind = "direct"

    def __init__(self, generator: GeneratorConfig = GeneratorConfig.small()):
        super().__init__()
        self.net = Generator(generator, 1, 3)

    def forward(self, bones: torch.Tensor) -> AvatarOutput:
        mask_logit, rgb = self.net(bones)
        mask_logit = mask_logit.float()
        mask = mask_logit.sigmoid()
        return AvatarOutput(rgb.float().sigmoid() * mask, mask, mask_logit)


Avatar = TexturedAvatar | DirectAvatar


@dataclass
class AvatarConfig:
    """Everything needed to rebuild an avatar and feed it; stored with its weights."""

    kind: AvatarKind = "textured"
    generator: GeneratorConfig = field(default_factory=GeneratorConfig.small)
    texture_size: int = 128
    crop: CropConfig = field(default_factory=CropConfig)
    bones: BoneStyle = field(default_factory=BoneStyle)

    def __post_init__(self):
        for name, cls in (("generator", GeneratorConfig), ("crop", CropConfig), ("bones", BoneStyle)):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}))
        if self.kind not in ("textured", "direct"):
            raise ValueError(f"unknown avatar kind {self.kind!r} (textured | direct)")

    def build(self) -> Avatar:
        if self.kind == "textured":
            return TexturedAvatar(self.generator, NUM_PARTS, self.texture_size)
        return DirectAvatar(self.generator)


def save_avatar(path: str | Path, model: Avatar, cfg: AvatarConfig, info: dict[str, Any] | None = None,
                half: bool = False, optimizer: torch.optim.Optimizer | None = None,
                run: dict[str, Any] | None = None) -> Path:
    """Write an avatar in the project's checkpoint format (``avatars.core.checkpoint``)."""
    shape = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "kind"}
    return save_checkpoint(path, model.state_dict(), {"kind": cfg.kind, "model": shape, **(info or {})},
                           optimizer, run, half)


def read_avatar_meta(path: str | Path) -> dict[str, Any]:
    """The record of an avatar file (config, training record); CheckpointError if it is not an avatar."""
    return read_record(path, "avatar")


def load_avatar(path: str | Path, device: torch.device | str = "cpu") -> tuple[Avatar, AvatarConfig]:
    """Rebuild an avatar from ``<name>.safetensors``; returns (model in eval mode, its config)."""
    record = read_avatar_meta(path)
    cfg = AvatarConfig(record["kind"], **record["model"])
    model = cfg.build()
    model.load_state_dict(load_state(path))
    return model.to(device).eval(), cfg


@dataclass(frozen=True)
class RenderedAvatar:
    rgb: np.ndarray    # (H, W, 3) uint8 colour (meaningful where mask > 0)
    mask: np.ndarray   # (H, W) float32 in [0, 1]


class AvatarRenderer:
    """Run-time wrapper: keypoints (33, 4) in frame pixels + frame size -> ``RenderedAvatar``.

    The person is cut out at the training scale (``avatars.avatar.crop``), rendered at the
    avatar's crop size and pasted back; frames with no visible torso give an empty output.
    The torso length is smoothed over frames (exponential, ``scale_smoothing`` = share of the
    old value) so the avatar does not pulse with pose noise; ``reset()`` between videos.

    ``fast``: channels-last activations, and bf16 autocast where the hardware computes in bf16
    (``avatars.core.precision``; ``bf16`` forces it on or off); the sampling and blending stay fp32.
    On CUDA the work runs on ``stream`` (the caller's, e.g. a node's own stream; by default one
    of the renderer's own) and is synchronised before the result is handed back.
    """

    def __init__(self, model: Avatar, cfg: AvatarConfig, device: torch.device | str = "cpu",
                 fast: bool = False, scale_smoothing: float = 0.8, bf16: bool | None = None,
                 stream: "torch.cuda.Stream | None" = None):
        self.device = torch.device(device)
        self.cfg = cfg
        self.fast = fast
        self.bf16 = fast and use_bf16(bf16, self.device)
        self.model = model.to(self.device).eval()
        if fast:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.scale_smoothing = scale_smoothing
        self.stream = None
        if self.device.type == "cuda":
            self.stream = stream if stream is not None else torch.cuda.Stream(self.device)
        self.reset()

    @classmethod
    def open(cls, path: str | Path, device: torch.device | str = "cpu", fast: bool = False,
             scale_smoothing: float = 0.8) -> "AvatarRenderer":
        """A renderer for the avatar file at ``path`` (what a streaming node's setup() needs)."""
        model, cfg = load_avatar(path, device)
        return cls(model, cfg, device, fast, scale_smoothing)

    def reset(self) -> None:
        self._torso: float | None = None

    @torch.inference_mode()
    def render_bones(self, bones: torch.Tensor) -> AvatarOutput:
        """The model on bone stacks (B, 19, S, S) already in the crop frame (any device)."""
        x = bones.to(self.device, non_blocking=True)
        if self.fast:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.model(x)

    def __call__(self, keypoints: np.ndarray | None, frame_size: tuple[int, int]) -> RenderedAvatar:
        h, w = frame_size
        crop = None
        if keypoints is not None:
            t = torso_length(keypoints, self.cfg.crop.min_visibility)
            if t is not None:
                a = self.scale_smoothing if self._torso is not None else 0.0
                self._torso = a * (self._torso or t) + (1 - a) * t
                crop = person_crop(keypoints, self.cfg.crop, self._torso)
        if crop is None:
            self.reset()
            return RenderedAvatar(np.zeros((h, w, 3), np.uint8), np.zeros((h, w), np.float32))
        s = self.cfg.crop.size
        bones = torch.from_numpy(rasterize_bones(crop.keypoints(keypoints, s), s, s, self.cfg.bones))[None]
        if self.stream is not None:
            with torch.cuda.stream(self.stream):
                out = self.render_bones(bones.pin_memory())
                colour, mask = out.colour()[0].permute(1, 2, 0).cpu(), out.mask[0, 0].cpu()
            self.stream.synchronize()
        else:
            out = self.render_bones(bones)
            colour, mask = out.colour()[0].permute(1, 2, 0), out.mask[0, 0]
        rgb = (colour.numpy() * 255 + 0.5).astype(np.uint8)
        return RenderedAvatar(crop.paste(rgb, h, w), crop.paste(mask.numpy().astype(np.float32), h, w))
