"""Universal style transfer (AdaIN, WCT; VGG-19 + its decoder, and the fast compact pair) against the per-style StyleNet.

In one process, against the shipped StyleNet of the same painting as the baseline:
- speed at 256x256 (uint8 frame in -> uint8 frame out, eager fp32 fast path for StyleNet), and what a
  new painting costs (its statistics, once);
- flicker: the warping error (``bench flicker``'s measure) on the evaluation clip, per frame;
- style and content: on unseen frames of that clip and the held-out photograph, the style distance to
  the painting (mean over relu1_1..relu4_1 of ||G(out) - G(painting)|| / ||G(painting)||) as a share
  of the unstylized picture's, and the relu4_1 content distance ||F(out) - F(frame)|| / ||F(frame)||.
  Every painting is read with its longer side at STYLE_MAX_SIDE (512), the scale the universal stylizers
  take its statistics at and near the StyleNets' training scale (320): the measure depends on it (read at
  1024, the painting's relu1_1/relu2_1 Grams hold brushwork finer than a 256-pixel output can carry, and
  starry_night's StyleNet scores 0.72 instead of 0.52);
- ``--all-paintings``: the same distances for every painting of the media's style folder (none of them
  seen by a universal model in training; Kandinsky's and Turner's by no model of this project);
- with --figures DIR: a picture (rows: the paintings, then frames; columns: input, then each variant;
  then the fast stylizer after the paintings no network was trained on).

    python -m launch bench universal [--style-image PAINTING] [--frames 20] [--seconds 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from avatars.core.training_loop import save_grid
from avatars.core.vgg import VGG19Features
from avatars.core.weights import resolve_weights
from avatars.style.checkpoint import load_stylizer
from avatars.style.flicker import warping_error
from avatars.style.losses import gram
from avatars.style.stylize import FastPathConfig, FrameStylizer
from avatars.style.universal import (FAST_CODEC, FAST_TRANSFORM, STYLE_MAX_SIDE, VGG_CODEC, UniversalConfig,
                                    UniversalStylizer, load_codec)
from bench.stylize import MEDIA, frames_per_second, video_frames
from stream.image_files import read_image

STYLE_TAPS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
UNSEEN = ("the_scream.jpg", "composition_vii_kandinsky.jpg", "shipwreck_of_the_minotaur_turner.jpg")


def _square(frame: np.ndarray, size: int) -> np.ndarray:
    h, w = frame.shape[:2]
    s = min(h, w)
    crop = frame[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.tensor(image).permute(2, 0, 1)[None].float() / 255


class Distances:
    """Style distance (Gram matrices, the issue's measure) to a painting and relu4_1 content distance to a frame."""

    def __init__(self, painting: np.ndarray):
        self.vgg = VGG19Features(STYLE_TAPS)
        with torch.no_grad():
            self.target = {k: gram(v) for k, v in self.vgg(_tensor(painting)).items()}

    @torch.no_grad()
    def __call__(self, out: np.ndarray, frame: np.ndarray) -> tuple[float, float]:
        f, c = self.vgg(_tensor(out)), self.vgg(_tensor(frame))
        style = np.mean([float((gram(f[k]) - t).norm() / t.norm()) for k, t in self.target.items()])
        return style, float((f["relu4_1"] - c["relu4_1"]).norm() / c["relu4_1"].norm())


def _variants(args: argparse.Namespace) -> dict[str, Callable[[], object]]:
    """Name -> a stylizer factory (the painting set later): the StyleNet baseline, then the universal ones."""
    vgg = load_codec(resolve_weights(args.decoder, "universal"))
    fast = load_codec(resolve_weights(args.fast, "universal"))
    deepest = fast.levels[-1]
    return {"StyleNet": lambda: FrameStylizer(load_stylizer(resolve_weights(args.stylenet, "style")), cfg=FastPathConfig()),
            "VGG AdaIN": lambda: UniversalStylizer(vgg, cfg=UniversalConfig("adain")),
            "VGG WCT": lambda: UniversalStylizer(vgg, cfg=UniversalConfig("wct")),
            f"fast AdaIN {deepest}": lambda: UniversalStylizer(fast, cfg=UniversalConfig("adain", levels=(deepest,))),
            "fast AdaIN cascade": lambda: UniversalStylizer(fast, cfg=UniversalConfig("adain")),
            "fast WCT cascade": lambda: UniversalStylizer(fast, cfg=UniversalConfig("wct"))}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench universal")
    ap.add_argument("--style-image", type=Path, default=MEDIA / "style" / "starry_night.jpg",
                    help="the painting (default starry_night.jpg, the shipped StyleNet's)")
    ap.add_argument("--stylenet", default="starry_night", help="the per-style baseline (shipped name or checkpoint)")
    ap.add_argument("--decoder", default=VGG_CODEC, help="the VGG-19 decoder")
    ap.add_argument("--fast", default=FAST_CODEC, help="the compact pair")
    ap.add_argument("--video", type=Path, default=MEDIA / "video" / "hybrik_taiji.mp4", help="the evaluation clip")
    ap.add_argument("--frames", type=int, default=20, help="consecutive frames for the warping error")
    ap.add_argument("--width", type=int, default=320, help="their width (bench flicker's)")
    ap.add_argument("--size", type=int, default=256, help="side of the square frames for speed and distances")
    ap.add_argument("--seconds", type=float, default=3.0, help="timing per variant")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--all-paintings", action="store_true", help="distances for every painting of the style folder")
    ap.add_argument("--figures", type=Path, help="write universal_*.png here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    painting = read_image(args.style_image, max_side=STYLE_MAX_SIDE).rgb
    variants = _variants(args)
    stylizers = {}
    for name, make in variants.items():
        stylizers[name] = s = make()
        if isinstance(s, UniversalStylizer):
            start = time.perf_counter()
            s.set_style(painting)
            print(f"{name}: a new painting's statistics in {1000 * (time.perf_counter() - start):.0f} ms")

    clip = video_frames(args.video, args.frames)
    square = _square(clip[len(clip) // 2], args.size)
    print(f"\nspeed at {args.size}x{args.size} ({torch.get_num_threads()} threads, uint8 in -> uint8 out):")
    fps = {name: frames_per_second(s, square, args.seconds) for name, s in stylizers.items()}
    for name, v in fps.items():
        print(f"  {name:20s} {v:6.2f} fps  ({v / fps['StyleNet']:.2f}x StyleNet)")

    h, w = clip[0].shape[:2]
    small = [cv2.resize(f, (args.width, round(h * args.width / w / 4) * 4), interpolation=cv2.INTER_AREA) for f in clip]
    print(f"\nwarping error, {args.video.name}, {len(small)} frames at {small[0].shape[1]}x{small[0].shape[0]} "
          f"(MSE, pixels in [0, 1]):\n  {'input video':20s} {warping_error(small, small):.5f}")
    for name, s in stylizers.items():
        print(f"  {name:20s} {warping_error(small, [s(f) for f in small]):.5f}")

    photo = _square(read_image(MEDIA / "content" / "skimage_chelsea.png").rgb, args.size)
    eval_frames = [_square(f, args.size) for f in video_frames(args.video, 4, step=90)] + [photo]
    paintings = sorted((MEDIA / "style").glob("*.jpg")) if args.all_paintings else [args.style_image]
    print(f"\nstyle distance (share of the unstylized picture's) and relu4_1 content distance, {len(eval_frames) - 1} "
          f"unseen frames of {args.video.name} and {Path('skimage_chelsea.png')}:")
    for path in paintings:
        art = read_image(path, max_side=STYLE_MAX_SIDE).rgb
        measure = Distances(art)
        base = np.mean([measure(f, f)[0] for f in eval_frames])
        print(f"  {path.name} (unstylized {base:.3f}):")
        for name, s in stylizers.items():
            if name == "StyleNet" and path != args.style_image:
                continue
            if isinstance(s, UniversalStylizer) and path != args.style_image:
                s.set_style(art)
            d = np.array([measure(s(f), f) for f in eval_frames]).mean(0)
            print(f"    {name:20s} style {d[0] / base:.3f}  content {d[1]:.3f}")
        for s in stylizers.values():
            if isinstance(s, UniversalStylizer):
                s.set_style(painting)

    if args.figures:
        rows_in = [eval_frames[0], eval_frames[2], photo]
        fast = variants[f"fast {FAST_TRANSFORM.upper() if FAST_TRANSFORM == 'wct' else 'AdaIN'} cascade"]  # the default
        columns = [lambda f: f] + list(stylizers.values())
        for name in UNSEEN:
            other = fast()
            other.set_style(read_image(MEDIA / "style" / name, max_side=STYLE_MAX_SIDE).rgb)
            columns.append(other)
        grid = [torch.cat([_tensor(np.ascontiguousarray(col(f))) for col in columns]) for f in rows_in]
        arts = [painting] * len(stylizers) + [read_image(MEDIA / "style" / n, max_side=STYLE_MAX_SIDE).rgb for n in UNSEEN]
        header = torch.cat([torch.ones(1, 3, args.size, args.size)] + [_tensor(_square(p, args.size)) for p in arts])
        args.figures.mkdir(parents=True, exist_ok=True)
        save_grid(args.figures / "universal_compare.png", [header, *grid], pad=2)
        print(f"\n{args.figures / 'universal_compare.png'}: rows = the paintings, then frames; columns = input, "
              f"{', '.join(stylizers)} ({args.style_image.stem}), the default fast stylizer after "
              f"{', '.join(Path(n).stem for n in UNSEEN)}")
    return 0
