"""The stylized person across backgrounds: whole-frame statistics against the person's own.

Real frames of the clips in ../shared/media/video, cropped to 256x256, MediaPipe's person mask;
each person composited over black and five photographs without people
(``avatars.style.evaluation``), stylized by a shipped style with region=frame (today), person
with masked statistics (stats) and person cropped onto a neutral fill, also with masked
statistics (fill). Prints the mean grey-level change inside the person between every pair of
backgrounds, and writes docs/figures/mask_style.png (rows: frame, stats, fill; columns: backgrounds).

    python -m launch bench mask_style [--style starry_night] [--out docs/figures/mask_style.png]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from avatars.core.weights import resolve_weights
from avatars.style.checkpoint import load_stylizer
from avatars.core.lpips import load_lpips
from avatars.style.evaluation import backgrounds, composite, people, person_changes
from avatars.style.stylize import FastPathConfig, FrameStylizer
from launch.media import media_root

MEDIA = media_root()
VARIANTS = {"frame": FastPathConfig(), "person, masked statistics": FastPathConfig(region="person", mask_mode="stats"),
            "person, crop on grey fill + masked statistics": FastPathConfig(region="person", mask_mode="fill")}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m launch bench mask_style")
    ap.add_argument("--style", default="starry_night")
    ap.add_argument("--out", type=Path, default=Path("docs") / "figures" / "mask_style.png")
    args = ap.parse_args(argv)
    model = load_stylizer(resolve_weights(args.style, "style"))
    bgs, found = backgrounds(MEDIA), people(MEDIA)
    print(f"{len(found)} people ({', '.join(p.clip for p in found)}) x {len(bgs)} backgrounds, {args.style}, 256x256")
    perceptual = load_lpips("alex")
    floor = [c for p in found for c in person_changes(lambda x, _: x, p, bgs)]
    floor_lp = [c for p in found for c in person_changes(lambda x, _: x, p, bgs, perceptual)]
    print(f"  composited input itself: mean {np.mean(floor):.1f}, max {np.max(floor):.1f} grey levels; "
          f"LPIPS in the person box {np.mean(floor_lp):.3f}")
    rows = []
    for label, cfg in VARIANTS.items():
        s = FrameStylizer(model, cfg=cfg)
        per = [np.mean(person_changes(s, p, bgs)) for p in found]
        per_lp = [np.mean(person_changes(s, p, bgs, perceptual)) for p in found]
        print(f"  {label}: mean {np.mean(per):.1f} grey levels; per person {min(per):.1f} .. {max(per):.1f}; "
              f"LPIPS in the person box {np.mean(per_lp):.3f}")
        rows.append(np.concatenate([s(composite(found[0], b), found[0].mask) for b in bgs], 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
    print(f"  picture: {args.out}")
    return 0
