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
  part, ``avatars.body.skeleton.PARTS``, 256x256 as in the paper) are sampled bilinearly at
  those coordinates and blended by the part probabilities (eq. 6.1). The mask is 1 - P(background).
  The generator works at its crop size (UV maps are smooth); given an output ``size``, logits
  and UV are upsampled (bilinear) to it and the textures are sampled there, so the textures'
  detail reaches the output. ``forward`` is eq. 6.1 over all parts (training, scoring);
  ``render`` is the run-time path: the two likeliest parts per pixel, one lookup each in a
  texture atlas, from the mip level that matches the person's size on screen (prefiltered
  where the person is small).
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
        """RGB un-premultiplied, for compositing as ``colour * mask + background * (1 - mask)``;
        black where the mask is below ``MIN_MASK`` (dividing there would amplify noise to full colour)."""
        keep = self.mask >= MIN_MASK
        return torch.where(keep, self.rgb / self.mask.clamp_min(MIN_MASK), 0.0).clamp(0, 1)


MIN_MASK = 1 / 64   # below this the colour is not defined (set to black)


def _resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Bilinear (align_corners=False: the crop's pixel-centre convention) to ``size`` x ``size``."""
    if size is None or size == x.shape[-1] == x.shape[-2]:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


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


def mip_levels(textures: torch.Tensor, smallest: int = 8) -> list[torch.Tensor]:
    """The textures and their 2x2 box-filtered halvings down to ``smallest`` texels (mipmaps)."""
    levels = [textures]
    while levels[-1].shape[-1] >= 2 * smallest:
        levels.append(F.avg_pool2d(levels[-1], 2))
    return levels


def mip_level(footprint: float, count: int) -> int:
    """The mip level whose texels are about one output pixel (``footprint`` texels of level 0 per pixel)."""
    return min(max(int(np.floor(np.log2(max(footprint, 1.0)))), 0), count - 1)


def top_part_uv(parts: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """The uv (B, 2, H, W) of each pixel's likeliest part (parts (B, n+1, H, W), uv (B, 2n, H, W))."""
    b, n2, h, w = uv.shape
    k = parts[:, : n2 // 2].argmax(1)[:, None, None].expand(-1, 1, 2, -1, -1)
    return uv.view(b, n2 // 2, 2, h, w).gather(1, k)[:, 0]


def texel_footprint(uv: torch.Tensor, texture_size: int) -> float:
    """Median texels per output pixel of the uv (B, 2, H, W) of each pixel's likeliest part (NaN off the body)."""
    du = (uv[..., :, 1:] - uv[..., :, :-1]).abs().amax(1)[..., :-1, :]
    dv = (uv[..., 1:, :] - uv[..., :-1, :]).abs().amax(1)[..., :, :-1]
    d = torch.maximum(du, dv).flatten()[::7]   # a sample is enough for a median
    d = d[d < 0.25]                     # off the body (NaN), a jump across the texture (a seam, another part): no footprint
    return float(d.median()) * texture_size if d.numel() else 1.0


def _top2(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest two values along dim 1 and their indices (B, 2, H, W): two max passes, ~6x faster than topk."""
    v1, i1 = x.max(1, keepdim=True)
    v2, i2 = x.scatter(1, i1, float("-inf")).max(1, keepdim=True)
    return torch.cat([v1, v2], 1), torch.cat([i1, i2], 1)


class TexturedAvatar(nn.Module):
    """Generator -> part probabilities + part coordinates -> textures sampled and blended."""

    kind: AvatarKind = "textured"
    render_parts = 2     # parts looked up per pixel on the run-time path (``_top2``)

    def __init__(self, generator: GeneratorConfig = GeneratorConfig.small(), num_parts: int = NUM_PARTS,
                 texture_size: int = 256, mip_sampling: bool = False):
        super().__init__()
        self.num_parts = num_parts
        self.mip_sampling = mip_sampling
        self.net = Generator(generator, num_parts + 1, 2 * num_parts)
        self.textures = nn.Parameter(torch.full((num_parts, 3, texture_size, texture_size), 0.5))
        self._atlas: tuple[int, list[torch.Tensor]] | None = None

    def predict(self, bones: torch.Tensor, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Part logits (B, n+1, S, S) and part coordinates (B, 2n, S, S) in [0, 1], fp32, at ``size``
        (default: the input's)."""
        logits, coords = self.net(bones)
        return _resize(logits.float(), size), _resize(coords.float().sigmoid(), size)

    def forward(self, bones: torch.Tensor, size: int | None = None) -> AvatarOutput:
        """Eq. 6.1 over all parts at ``size`` (the textures are kept in [0, 1] by the trainer's projection,
        not clamped here, which would stop their gradients)."""
        return self.compose(*self.predict(bones), size)

    def compose(self, logits: torch.Tensor, uv: torch.Tensor, size: int | None = None) -> AvatarOutput:
        """Eq. 6.1 from ``predict``'s maps, upsampled to ``size``."""
        logits, uv = _resize(logits, size), _resize(uv, size)
        parts = logits.softmax(1)
        rgb = blend(parts, uv, self.sampled_textures(parts, uv))
        mask_logit = (torch.logsumexp(logits[:, :-1], 1, keepdim=True) - logits[:, -1:])
        return AvatarOutput(rgb, 1 - parts[:, -1:], mask_logit, parts, uv)

    def sampled_textures(self, parts: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        """The textures as eq. 6.1 samples them: level 0, or with ``mip_sampling`` the mip level whose
        texels are about one pixel of this output (the run-time renderer's rule). Then a gradient
        reaches the texels under one coarse texel alike, so texels finer than any pixel that saw them
        cannot each take their own colour (speckle) when uv jitters by a few texels between frames."""
        if not self.mip_sampling:
            return self.textures
        with torch.no_grad():
            footprint = texel_footprint(top_part_uv(parts, uv).masked_fill(parts[:, -1:] > 0.5, float("nan")),
                                        self.textures.shape[-1])
        levels = mip_levels(self.textures)
        return levels[mip_level(footprint, len(levels))]

    def atlas(self) -> list[torch.Tensor]:
        """The textures tiled into one image per mip level (1, 3, rows*T, cols*T), cached until they change."""
        key = self.textures._version
        if self._atlas is None or self._atlas[0] != key:
            cols = int(np.ceil(np.sqrt(self.num_parts)))
            rows = -(-self.num_parts // cols)
            tex = self.textures.detach().clamp(0, 1).float()
            pad = torch.zeros(rows * cols - self.num_parts, *tex.shape[1:], dtype=tex.dtype, device=tex.device)
            levels = []
            for t in mip_levels(torch.cat([tex, pad])):
                size = t.shape[-1]
                levels.append(t.view(rows, cols, 3, size, size).permute(2, 0, 3, 1, 4)
                              .reshape(1, 3, rows * size, cols * size).contiguous())
            self._atlas = (key, levels)
        return self._atlas[1]

    @torch.no_grad()
    def render(self, bones: torch.Tensor, size: int) -> AvatarOutput:
        """Run time: the ``render_parts`` likeliest parts per pixel, renormalised, sampled from the atlas
        at the mip level of the person's on-screen size; the same as ``forward`` where at most two
        parts overlap (tests), and only inside the box where the mask can reach ``MIN_MASK``."""
        low, coords = self.net(bones)                                             # at the crop: (B, n+1 | 2n, s, s)
        low = low.float()
        b, n, s = low.shape[0], self.num_parts, low.shape[-1]
        rgb, mask = low.new_zeros(b, 3, size, size), low.new_zeros(b, 1, size, size)
        best = low[:, :n].amax(1)                      # amax(): max() with indices is ~40x slower on channels
        # P(body) <= n exp(best - background): a superset of the pixels whose mask reaches MIN_MASK / 4
        box = _box(best - low[:, n] >= np.log(MIN_MASK / 4 / n), s, size)
        if box is None:
            return AvatarOutput(rgb, mask, torch.logit(mask, 1e-6))
        y0, y1, x0, x1 = box
        taps_y, taps_x = _bilinear_taps(y0, y1, s, size), _bilinear_taps(x0, x1, s, size)
        (ry, r0, r1), (rx, c0, c1) = _resize_matrix(taps_y, low), _resize_matrix(taps_x, low)
        logits = ry @ (low[..., r0:r1, c0:c1].contiguous() @ rx.T)                # = the bilinear resize, in the box
        h, w = y1 - y0, x1 - x0
        lse = torch.logsumexp(logits, 1)                                          # (B, h, w)
        m = 1 - (logits[:, -1] - lse).exp()
        mask[:, 0, y0:y1, x0:x1] = m
        on = (m >= MIN_MASK).flatten().nonzero()[:, 0]                            # the pixels that get a colour
        if not len(on):
            return AvatarOutput(rgb, mask, torch.logit(mask, 1e-6))
        bi, yy, xx = on // (h * w), on // w % h, on % w
        top, k = _top2(logits.transpose(0, 1).reshape(n + 1, -1)[:n, on].T)      # (N, 2)
        wk = (top - lse.flatten()[on, None]).exp()
        # the taps are built on the CPU (they size the resize matrices); the picked pixels live on the maps' device
        taps_y, taps_x = [t.to(low.device) for t in taps_y], [t.to(low.device) for t in taps_x]
        uvk = _resize_picked(coords, k, bi, [t[yy] for t in taps_y], [t[xx] for t in taps_x])  # (N, 2, 2)
        levels = self.atlas()
        top_uv = rgb.new_full((b * h * w, 2), float("nan"))                       # the likeliest part's uv
        top_uv[on] = uvk[:, 0]
        footprint = texel_footprint(top_uv.view(b, h, w, 2).permute(0, 3, 1, 2), self.textures.shape[-1])
        level = mip_level(footprint, len(levels))
        atlas, t = levels[level], self.textures.shape[-1] >> level
        tiles_y, tiles_x = atlas.shape[-2] // t, atlas.shape[-1] // t
        half = 0.5 / t                                                            # stay inside the tile
        ax = ((k % tiles_x) + uvk[..., 0].clamp(half, 1 - half)) / tiles_x * 2 - 1
        ay = ((k // tiles_x) + uvk[..., 1].clamp(half, 1 - half)) / tiles_y * 2 - 1
        grid = torch.stack([ax, ay], -1).view(1, 1, -1, 2)
        samples = F.grid_sample(atlas, grid, mode="bilinear", padding_mode="border",
                                align_corners=False).view(3, -1, self.render_parts)  # (3, N, 2)
        colour = (samples * wk).sum(2) / wk.sum(1).clamp_min(1e-12)              # (3, N)
        box_rgb = rgb.new_zeros(b * h * w, 3)
        box_rgb[on] = (colour * m.flatten()[on]).T
        rgb[..., y0:y1, x0:x1] = box_rgb.view(b, h, w, 3).permute(0, 3, 1, 2)
        return AvatarOutput(rgb, mask, torch.logit(mask, 1e-6))


def _bilinear_taps(lo: int, hi: int, s: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For output pixels lo..hi-1 of a bilinear resize s -> size (``_resize``'s convention): the two
    source pixels i0, i1 and the weight of i1."""
    src = ((torch.arange(lo, hi, dtype=torch.float64) + 0.5) * (s / size) - 0.5).clamp(0, s - 1)
    i0 = src.floor().long()
    return i0, (i0 + 1).clamp(max=s - 1), src - i0


def _resize_matrix(taps, like: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """The taps as rows of a resize matrix over the source pixels [a, b) they use: (matrix, a, b)."""
    i0, i1, w1 = taps
    a, b = int(i0.min()), int(i1.max()) + 1
    m = torch.zeros(len(i0), b - a, dtype=torch.float64)
    rows = torch.arange(len(i0))
    m.index_put_((rows, i0 - a), 1 - w1, accumulate=True)
    m.index_put_((rows, i1 - a), w1, accumulate=True)
    return m.to(like), a, b


def _resize_picked(coords: torch.Tensor, k: torch.Tensor, bi: torch.Tensor, rows, cols) -> torch.Tensor:
    """Bilinear resize of uv = sigmoid(coords) (coords: the generator's raw (B, 2n, s, s)) at N output
    pixels, only for their parts ``k`` (N, K): (N, K, 2). ``bi`` (N,) is each pixel's batch item,
    ``rows``/``cols`` its taps (i0, i1, w1). Reads the taps straight from the maps' storage in
    either layout (channels-first, or the fast path's channels-last) and takes the sigmoid of the
    taps only."""
    if not (coords.is_contiguous() or coords.is_contiguous(memory_format=torch.channels_last)):
        coords = coords.contiguous()
    sb, sc, sy, sx = coords.stride()
    flat = coords.as_strided((coords.numel(),), (1,), coords.storage_offset())
    chan = (2 * k[:, :, None] + torch.arange(2, device=k.device)) * sc + (bi * sb)[:, None, None]  # (N, K, 2)
    (i0, i1, wy), (j0, j1, wx) = rows, cols
    taps = torch.stack([i0 * sy + j0 * sx, i0 * sy + j1 * sx, i1 * sy + j0 * sx, i1 * sy + j1 * sx])  # (4, N)
    weights = torch.stack([(1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx]).float()
    return (flat[chan + taps[..., None, None]].float().sigmoid() * weights[..., None, None]).sum(0)


def _box(on: torch.Tensor, s: int, size: int) -> tuple[int, int, int, int] | None:
    """Rows/cols [y0, y1) x [x0, x1) of the ``size`` output whose bilinear source in the ``s``-px map
    touches a pixel where ``on`` (B, s, s); None where there is none."""
    on = on.any(0)
    if not on.any():
        return None
    rows, cols = on.any(1).nonzero()[:, 0], on.any(0).nonzero()[:, 0]
    a = size / s

    def span(lo: int, hi: int) -> tuple[int, int]:   # output pixels whose source lies within [lo - 1, hi + 1]
        return max(int(np.floor((lo - 1 + 0.5) * a - 0.5)), 0), min(int(np.ceil((hi + 1 + 0.5) * a - 0.5)) + 1, size)

    return (*span(int(rows[0]), int(rows[-1])), *span(int(cols[0]), int(cols[-1])))


class DirectAvatar(nn.Module):
    """The direct-translation baseline: the same generator giving mask logit and RGB."""

    kind: AvatarKind = "direct"

    def __init__(self, generator: GeneratorConfig = GeneratorConfig.small()):
        super().__init__()
        self.net = Generator(generator, 1, 3)

    def forward(self, bones: torch.Tensor, size: int | None = None) -> AvatarOutput:
        """RGB and mask at the crop size, upsampled (bilinear) to ``size``."""
        mask_logit, rgb = self.net(bones)
        mask_logit = _resize(mask_logit.float(), size)
        mask = mask_logit.sigmoid()
        return AvatarOutput(_resize(rgb.float(), size).sigmoid() * mask, mask, mask_logit)

    @torch.no_grad()
    def render(self, bones: torch.Tensor, size: int) -> AvatarOutput:
        return self(bones, size)


Avatar = TexturedAvatar | DirectAvatar


@dataclass
class AvatarConfig:
    """Everything needed to rebuild an avatar and feed it; stored with its weights."""

    kind: AvatarKind = "textured"
    generator: GeneratorConfig = field(default_factory=GeneratorConfig.small)
    texture_size: int = 256
    crop: CropConfig = field(default_factory=CropConfig)
    bones: BoneStyle = field(default_factory=BoneStyle)
    mip_sampling: bool = False   # eq. 6.1 samples the mip level of the output's texel footprint (TexturedAvatar)

    def __post_init__(self):
        for name, cls in (("generator", GeneratorConfig), ("crop", CropConfig), ("bones", BoneStyle)):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}))
        if self.kind not in ("textured", "direct"):
            raise ValueError(f"unknown avatar kind {self.kind!r} (textured | direct)")

    def build(self) -> Avatar:
        if self.kind == "textured":
            return TexturedAvatar(self.generator, NUM_PARTS, self.texture_size, self.mip_sampling)
        return DirectAvatar(self.generator)


def save_avatar(path: str | Path, model: Avatar, cfg: AvatarConfig, info: dict[str, Any] | None = None,
                half: bool = False, optimizer: torch.optim.Optimizer | None = None,
                run: dict[str, Any] | None = None) -> Path:
    """Write an avatar in the project's checkpoint format (``avatars.core.checkpoint``); ``half``
    (shipping) stores the network in fp16 and a textured avatar's textures in 8 bits."""
    shape = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "kind"}
    eight_bit = ("textures",) if half and cfg.kind == "textured" else ()
    return save_checkpoint(path, model.state_dict(), {"kind": cfg.kind, "model": shape, **(info or {})},
                           optimizer, run, half, eight_bit)


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

    The person is cut out at the training scale (``avatars.avatar.crop``); the generator runs at
    the avatar's crop size, the textures are sampled at the size the crop has on the output frame
    (at most ``max_size`` pixels) and the result is pasted back; frames with no visible torso give
    an empty output. The colour is black where the mask is below ``MIN_MASK``.
    The torso length is smoothed over frames (exponential, ``scale_smoothing`` = share of the
    old value) so the avatar does not pulse with pose noise; ``reset()`` between videos.

    ``fast``: channels-last activations, and bf16 autocast where the hardware computes in bf16
    (``avatars.core.precision``; ``bf16`` forces it on or off); the sampling and blending stay fp32.
    On CUDA the work runs on ``stream`` (the caller's, e.g. a node's own stream; by default one
    of the renderer's own) and is synchronised before the result is handed back.
    """

    def __init__(self, model: Avatar, cfg: AvatarConfig, device: torch.device | str = "cpu",
                 fast: bool = False, scale_smoothing: float = 0.8, bf16: bool | None = None,
                 stream: "torch.cuda.Stream | None" = None, max_size: int = 1024):
        self.device = torch.device(device)
        self.max_size = max_size
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
    def render_bones(self, bones: torch.Tensor, size: int | None = None) -> AvatarOutput:
        """The model's run-time path on bone stacks (B, 19, s, s) in the crop frame (any device),
        output at ``size`` (default: the crop size)."""
        x = bones.to(self.device, non_blocking=True)
        if self.fast:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.model.render(x, size or x.shape[-1])

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
        size = int(np.clip(round(crop.side), 8, self.max_size))
        bones = torch.from_numpy(rasterize_bones(crop.keypoints(keypoints, s), s, s, self.cfg.bones))[None]
        if self.stream is not None:
            with torch.cuda.stream(self.stream):
                out = self.render_bones(bones.pin_memory(), size)
                colour, mask = out.colour()[0].permute(1, 2, 0).cpu(), out.mask[0, 0].cpu()
            self.stream.synchronize()
        else:
            out = self.render_bones(bones, size)
            colour, mask = out.colour()[0].permute(1, 2, 0), out.mask[0, 0]
        rgb = crop.paste((colour.numpy() * 255 + 0.5).astype(np.uint8), h, w)
        mask = crop.paste(mask.numpy().astype(np.float32), h, w)
        rgb *= (mask >= MIN_MASK)[..., None]    # the paste's bilinear edge must not bring colour back there
        return RenderedAvatar(rgb, mask)
