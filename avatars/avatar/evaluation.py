"""Scoring avatars on held-out frames: SSIM (whole crop and person box) and PSNR, sample grids, textures.

Scores are against the ground truth with its background blacked out, as the paper scores.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from avatars.avatar.data import AvatarDataset, default_split
from avatars.avatar.model import TexturedAvatar, load_avatar
from avatars.core.metrics import person_box, psnr, ssim
from avatars.core.training_loop import image_grid, save_grid, save_png


def texture_atlas(model: TexturedAvatar) -> np.ndarray:
    """The learned textures side by side (parts in ``avatars.body.skeleton.PARTS`` order), uint8."""
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
