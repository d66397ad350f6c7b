"""Texture-space stylization: a textured avatar's part textures painted once, then rendered as usual.

A stylizer run on every rendered frame paints each frame anew (its strokes swim over the body and
flicker) and costs a network per frame. Painting the avatar's textures instead glues the strokes to
the body and leaves the run-time cost unchanged: the renderer samples the textures exactly as before.

Three things make a texture stylizable:

* **Which texels are seen.** Only part of each 256x256 texture is ever sampled (the avatar's own
  per-part coverage measure, ``avatars.avatar.parts.PartTally``, run over mannequin poses from
  several sides with the uv maps upsampled so a pixel is smaller than a texel, then widened by
  ``dilate`` texels for the bilinear taps). The rest holds whatever training left there.
* **What the unseen texels hold.** A stylizer's convolutions and instance norms see the whole
  picture, so unseen texels must not bring black or a border colour into the seen ones: they are
  filled from the seen ones, pushed down a mip pyramid (each coarse texel the mean of the seen
  texels under it) and pulled back up bilinearly, then relaxed to the mean of their four neighbours,
  so the fill has no edges for the stylizer to paint.
* **How the parts are painted together.** The filled textures are tiled into one atlas with
  ``pad`` texels of edge-replicated margin around each part (no part's border reaches another),
  scaled by ``texel_scale`` (stroke size against content) and stylized in one call whose instance-norm statistics come from the seen
  texels only (``weights``); parts get one consistent look. The stylized tiles are cut out, scaled
  back, clamped to [0, 1] (the 8-bit range shipped avatars store) and the unseen texels filled
  again from the stylized seen ones.

The stylizer is any ``(1, 3, H, W) RGB in [0, 1], (1, 1, H, W) weights -> (1, 3, H, W)`` function:
``FrameStylizer.stylize_tensor`` (a StyleNet) and ``UniversalStylizer.stylize_tensor`` (any painting)
both are one.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from avatars.avatar.crop import person_crop
from avatars.avatar.model import AvatarConfig, TexturedAvatar
from avatars.avatar.parts import PartTally
from avatars.body.bones import rasterize_bones
from avatars.body.mannequin import Camera, MannequinSequence

TensorStylizer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
COVERAGE_BATCH = 4      # poses per generator call in the coverage pass (memory: ~46 maps of size^2 floats each)


@dataclass(frozen=True)
class TextureStyleConfig:
    """How the seen texels are found and how the textures are painted."""

    motions: tuple[str, ...] = ("walk", "dance", "arm_wave", "turn_around")
    angles: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)   # camera orbit, degrees: every side of the body
    frames_per_clip: int = 4
    fps: float = 2.5
    coverage_size: int = 512       # uv maps upsampled to this before counting texels (a pixel under a texel)
    dilate: int = 2                # texels around a sampled one counted as seen (bilinear taps, mip blocks)
    relax_steps: int = 64          # neighbour-mean relaxation of the fill (smooths the pull's kinks)
    # textures stylized at this share of their size: at 0.16 (a texel about a pixel of the 256 px demo)
    # each part is a 42 px tile the StyleNet paints into blotches that lose the letters; at 0.5 strokes
    # and content both show (docs/avatar.md, "Painted textures")
    texel_scale: float = 0.5
    pad: int = 16                  # edge-replicated margin around each part in the stylized atlas

    def __post_init__(self):
        if not 0 < self.texel_scale <= 1:
            raise ValueError(f"texel_scale must be in (0, 1], got {self.texel_scale}")
        if self.frames_per_clip < 1 or not self.motions or not self.angles:
            raise ValueError("the coverage pass needs at least one motion, angle and frame")


@dataclass
class TexelCoverage:
    """Per part, the texels a render samples (n, T, T) bool, counted with the uv maps at ``size``."""

    seen: torch.Tensor
    size: int

    def shares(self) -> list[float]:
        return [round(float(x), 4) for x in self.seen.flatten(1).double().mean(1)]


def coverage_poses(cfg: TextureStyleConfig) -> list[np.ndarray]:
    """Mannequin keypoints (33, 4) of every motion seen from every angle (frames of 256x256)."""
    poses = []
    for motion in cfg.motions:
        for angle in cfg.angles:
            seq = MannequinSequence(motion, cfg.frames_per_clip, cfg.fps, Camera.orbit(angle, width=256, height=256))
            poses += [frame.joints2d for frame in seq]
    return poses


@torch.no_grad()
def texel_coverage(model: TexturedAvatar, acfg: AvatarConfig, poses: list[np.ndarray], size: int,
                   dilate: int) -> TexelCoverage:
    """The texels the avatar samples over ``poses`` (nearest texel of the likeliest part, uv maps at
    ``size``), widened by ``dilate`` texels."""
    t, s = model.textures.shape[-1], acfg.crop.size
    tally = PartTally(model.num_parts, t)
    crops = [(kp, person_crop(kp, acfg.crop)) for kp in poses]
    stacks = [torch.from_numpy(rasterize_bones(c.keypoints(kp, s), s, s, acfg.bones)) for kp, c in crops if c is not None]
    if not stacks:
        raise ValueError("no pose with a visible torso: the texel coverage needs at least one")
    for i in range(0, len(stacks), COVERAGE_BATCH):
        logits, uv = model.predict(torch.stack(stacks[i:i + COVERAGE_BATCH]), size)
        parts = logits.softmax(1)
        tally.add(parts, uv, parts[:, -1] < 0.5)
    seen = tally.texels.view(model.num_parts, 1, t, t).float()
    if dilate > 0:
        seen = F.max_pool2d(seen, 2 * dilate + 1, 1, dilate)
    return TexelCoverage(seen[:, 0] > 0, size)


def push_pull(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``values`` (n, C, T, T) where ``weights`` (n, 1, T, T) > 0, elsewhere the weighted mean of the next
    coarser mip level, itself filled the same way, upsampled bilinearly (no block edges)."""
    if values.shape[-1] < 2:
        return values
    counts = F.avg_pool2d(weights, 2)
    coarse = push_pull(F.avg_pool2d(values * weights, 2) / counts.clamp_min(1e-12), (counts > 0).to(values.dtype))
    up = F.interpolate(coarse, size=values.shape[-2:], mode="bilinear", align_corners=False)
    return torch.where(weights > 0, values, up)


def fill_unseen(textures: torch.Tensor, seen: torch.Tensor, relax_steps: int = 64) -> torch.Tensor:
    """Textures (n, 3, T, T) whose unseen texels (``seen`` (n, T, T) False) carry the seen ones' colours:
    push-pull (``push_pull``), then ``relax_steps`` rounds of each unseen texel taking its four
    neighbours' mean (borders replicated). Seen texels are kept exactly; a part with no seen texel is
    left as it is."""
    pulled = push_pull(textures, seen[:, None].to(textures.dtype))
    keep = seen[:, None] | ~seen.flatten(1).any(1)[:, None, None, None]
    out = torch.where(keep, textures, pulled)
    for _ in range(relax_steps):
        p = F.pad(out, (1, 1, 1, 1), mode="replicate")
        mean = (p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]) / 4
        out = torch.where(keep, out, mean)
    return out


def _grid(n: int) -> tuple[int, int]:
    cols = int(np.ceil(np.sqrt(n)))
    return -(-n // cols), cols


def paint_atlas(textures: torch.Tensor, seen: torch.Tensor, stylize: TensorStylizer, scale: float,
                pad: int) -> torch.Tensor:
    """Stylize filled textures (n, 3, T, T) in one atlas at ``scale`` x their size with ``pad`` texels of
    edge-replicated margin per part, statistics from the ``seen`` texels; back at (n, 3, T, T) in [0, 1]."""
    n, _, t, _ = textures.shape
    side = max(8, int(round(t * scale / 4)) * 4)
    small = F.interpolate(textures, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    weight = F.interpolate(seen[:, None].float(), size=(side, side), mode="area")
    tiles = F.pad(small, (pad,) * 4, mode="replicate")
    weights = F.pad(weight, (pad,) * 4)
    rows, cols = _grid(n)
    spare = rows * cols - n
    tile = side + 2 * pad

    def tiled(x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x, x.new_zeros(spare, *x.shape[1:])])
        return x.view(rows, cols, -1, tile, tile).permute(2, 0, 3, 1, 4).reshape(1, -1, rows * tile, cols * tile)

    painted = stylize(tiled(tiles), tiled(weights)).float()
    parts = painted[0].view(-1, rows, tile, cols, tile).permute(1, 3, 0, 2, 4).reshape(rows * cols, -1, tile, tile)
    parts = parts[:n, :, pad:pad + side, pad:pad + side]
    return F.interpolate(parts, size=(t, t), mode="bicubic", align_corners=False).clamp(0, 1)


@dataclass
class StylizedTextures:
    textures: torch.Tensor     # (n, 3, T, T) in [0, 1]
    filled: torch.Tensor       # the source textures with their unseen texels filled (what was stylized)
    coverage: TexelCoverage

    def record(self) -> dict:
        """What the avatar's record says about how its textures were made (no paths)."""
        return {"texel_coverage": self.coverage.shares()}


def stylize_textures(model: TexturedAvatar, acfg: AvatarConfig, stylize: TensorStylizer,
                     cfg: TextureStyleConfig = TextureStyleConfig()) -> StylizedTextures:
    """The avatar's textures painted by ``stylize`` (see the module docstring); the model is not changed."""
    tex = model.textures.detach().float().clamp(0, 1)
    coverage = texel_coverage(model, acfg, coverage_poses(cfg), cfg.coverage_size, cfg.dilate)
    filled = fill_unseen(tex, coverage.seen, cfg.relax_steps)
    painted = paint_atlas(filled, coverage.seen, stylize, cfg.texel_scale, cfg.pad)
    return StylizedTextures(fill_unseen(painted, coverage.seen, cfg.relax_steps), filled, coverage)


def with_textures(model: TexturedAvatar, acfg: AvatarConfig, textures: torch.Tensor) -> TexturedAvatar:
    """A copy of the avatar (same generator) with other textures of the same shape."""
    copy = acfg.build()
    state = model.state_dict()
    if state["textures"].shape != textures.shape:
        raise ValueError(f"textures {tuple(textures.shape)} do not fit the avatar's {tuple(state['textures'].shape)}")
    copy.load_state_dict({**state, "textures": textures})
    return copy.eval()


def style_record(source: dict, style: dict, result: StylizedTextures, cfg: TextureStyleConfig) -> dict:
    """The ``stylized`` entry of the new avatar's record: source, style, method, coverage (no machine paths)."""
    method = dataclasses.asdict(cfg)
    return {"source": source, "style": style, "method": {"kind": "texture space, painted once", **method,
                                                          **result.record()}}
