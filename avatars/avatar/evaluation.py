"""Scoring avatars on held-out frames: SSIM and LPIPS (whole crop and person box), PSNR, the
high-frequency ratio, parts used, grids, textures, and optionally every frame as PNG.

Scores are against the ground truth with its background blacked out, as the paper scores, at the
dataset's resolution whatever the model's crop size (the generator sees the bones at its crop
size, the output is rendered at the dataset's). For textured avatars also ``parts`` and
``parts_used``: parts with at least 0.5% of the part-assignment weight over the ground-truth
body pixels of the scored frames (``avatars.avatar.parts``), and each part's share.

``lpips`` / ``lpips_person``: the reference's AlexNet LPIPS (``avatars.core.lpips``) over the whole
crop and the person's box (None, with a warning, where the weight packages are not installed).
``hf_ratio``: RMS of the Laplacian of the grey render over that of the ground truth inside the
person's mask eroded by 3 px: about 1 for a faithful texture, several times that for per-texel
speckle (which SSIM and PSNR barely see).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from avatars.avatar.data import AvatarDataset, default_split
from avatars.avatar.model import TexturedAvatar, load_avatar
from avatars.avatar.parts import PartTally, part_colours
from avatars.body.skeleton import PARTS
from avatars.core.lpips import LPIPS, LPIPSWeightsMissing, load_lpips, lpips_in_boxes
from avatars.core.metrics import erode, hf_ratio, laplacian_energy, person_box, psnr, ssim
from avatars.core.training_loop import image_grid, save_grid, save_png

log = logging.getLogger(__name__)


def texture_atlas(model: TexturedAvatar) -> np.ndarray:
    """The learned textures in rows of five (parts in ``avatars.body.skeleton.PARTS`` order), uint8."""
    t = model.textures.detach().float()
    return image_grid([t[i:i + 5] for i in range(0, len(t), 5)], pad=2) if len(t) % 5 == 0 else image_grid([t])


@dataclass(frozen=True)
class EvalResult:
    scores: dict[str, dict]   # checkpoint name -> {"ssim", "ssim_person", "lpips", "lpips_person", "psnr", "hf_ratio",
    #                           "frames"[, "parts", "parts_used", "part_shares"]}
    grid: Path | None


@torch.no_grad()
def evaluate_avatars(checkpoints: Sequence[str | Path], data: str | Path, out_dir: str | Path | None = None,
                     split: str | None = None, batch_size: int = 8, grid_frames: int = 6, fast: bool = False,
                     device: torch.device | str = "cpu", progress: bool = True, save_frames: bool = False) -> EvalResult:
    """SSIM and PSNR of each avatar on a dataset's held-out frames (``test`` split where there is one).

    ``ssim`` is over the whole crop with its black background (as the paper scores);
    ``ssim_person`` only over the ground-truth person's padded bounding box.

    With ``out_dir``: ``grid.png`` (rows: ground truth, then each checkpoint in order, e.g.
    textured | direct), for textured avatars ``<name>_textures.png`` and ``<name>_parts.png``
    (the likeliest part of the grid's frames), and ``scores.json``; with ``save_frames`` also every
    scored frame as ``frames/NNNN_gt.png`` and ``frames/NNNN_out.png`` (``NNNN_<name>.png`` for each
    checkpoint where there are several), RGB at the dataset's size on black.
    ``fast`` evaluates the channels-last + bf16 path instead of fp32.
    """
    split = split or default_split(data, "test")
    ds = AvatarDataset(data, split)
    device = torch.device(device)
    pick = np.linspace(0, len(ds) - 1, min(grid_frames, len(ds))).astype(int)
    rows = [ds.batch(pick).rgb]
    scores: dict[str, dict] = {}
    out_dir = Path(out_dir) if out_dir is not None else None
    perceptual = _lpips(device)
    if save_frames and out_dir is not None:
        for i in range(len(ds)):
            save_png(out_dir / "frames" / f"{i:04d}_gt.png", _uint8(ds.batch(np.arange(i, i + 1)).rgb[0]))
    for ckpt in checkpoints:
        model, acfg = load_avatar(ckpt, device)
        crop = acfg.crop.size
        if fast:
            model = model.to(memory_format=torch.channels_last)
        name = Path(ckpt).stem
        textured = isinstance(model, TexturedAvatar)
        tally = PartTally(model.num_parts, model.textures.shape[-1]) if textured else None
        s, sp, p, lp, lpp, hf_out, hf_gt = [], [], [], [], [], [], []
        for i in tqdm(range(0, len(ds), batch_size), desc=f"eval {name}", disable=not progress):
            b = ds.batch(np.arange(i, min(i + batch_size, len(ds))), device, crop)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
                o = model(b.bones.contiguous(memory_format=torch.channels_last) if fast else b.bones, ds.size)
            y = o.rgb.float().clamp(0, 1)
            s.append(ssim(y, b.rgb))
            sp.append(ssim(y, b.rgb, region=person_box(b.mask)))
            p.append(psnr(y, b.rgb))
            if perceptual is not None:
                lp.append(perceptual(y, b.rgb))
                lpp.append(lpips_in_boxes(perceptual, y, b.rgb, person_box(b.mask)))
            inside = erode(b.mask, 3)
            hf_out.append(laplacian_energy(y, inside))
            hf_gt.append(laplacian_energy(b.rgb, inside))
            if save_frames and out_dir is not None:
                tag = "out" if len(checkpoints) == 1 else name
                for j, image in enumerate(y.cpu()):
                    save_png(out_dir / "frames" / f"{i + j:04d}_{tag}.png", _uint8(image))
            if tally is not None:
                tally.add(o.parts.float(), o.uv.float(), b.mask >= 0.5, b.part)
        scores[name] = {"ssim": float(torch.cat(s).mean()), "ssim_person": float(torch.cat(sp).mean()),
                        "lpips": float(torch.cat(lp).mean()) if lp else None,
                        "lpips_person": float(torch.cat(lpp).mean()) if lpp else None,
                        "psnr": float(torch.cat(p).mean()), "hf_ratio": hf_ratio(hf_out, hf_gt), "frames": len(ds)}
        if tally is not None:
            scores[name].update(parts=model.num_parts, parts_used=tally.parts_used(),
                                part_shares=dict(zip(PARTS, tally.summary()["share"])))
        o = model(ds.batch(pick, device, crop).bones, ds.size)
        rows.append(o.rgb.float().cpu())
        if out_dir is not None and textured:
            save_png(out_dir / f"{name}_textures.png", texture_atlas(model))
            save_grid(out_dir / f"{name}_parts.png", [part_colours(o.parts.float()).cpu()])
    grid = None
    if out_dir is not None:
        grid = out_dir / "grid.png"
        save_grid(grid, rows)
        (out_dir / "scores.json").write_text(json.dumps({"data": str(data), "split": split, "scores": scores}, indent=1) + "\n")
    return EvalResult(scores, grid)


def _lpips(device: torch.device) -> LPIPS | None:
    """The AlexNet LPIPS, or None with a warning where its weight packages are not installed."""
    try:
        return load_lpips("alex", device)
    except LPIPSWeightsMissing as exc:
        log.warning("scores without LPIPS: %s", exc)
        return None


def _uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return (image.float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
