"""Universal style transfer (AdaIN, WCT; VGG-19 to relu3_1 + the shipped decoder) against the per-style StyleNet.

In one process, against the shipped StyleNet of the same painting as the baseline:
- speed at 256x256 (uint8 frame in -> uint8 frame out, eager fp32 fast path for StyleNet), and what a
  new painting costs (its statistics, once);
- flicker: the warping error (``bench flicker``'s measure) on the evaluation clip, per frame;
- style and content: on unseen frames of that clip, the style distance to the painting (mean over
  relu1_1..relu4_1 of ||G(out) - G(painting)|| / ||G(painting)||) as a share of the unstylized frame's,
  and the relu4_1 content distance ||F(out) - F(frame)|| / ||F(frame)||;
- with --figures DIR: a picture (rows: frames; columns: input, StyleNet, AdaIN, WCT, then WCT after
  paintings no network was trained on).

    python -m launch bench universal [--style-image PAINTING] [--frames 20] [--seconds 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from avatars.core.training_loop import save_grid
from avatars.core.vgg import VGG19Features
from avatars.core.weights import resolve_weights
from avatars.style.checkpoint import load_stylizer
from avatars.style.decoder import load_decoder
from avatars.style.flicker import warping_error
from avatars.style.losses import gram
from avatars.style.stylize import FastPathConfig, FrameStylizer
from avatars.style.universal import UniversalConfig, UniversalStylizer
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


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench universal")
    ap.add_argument("--style-image", type=Path, default=MEDIA / "style" / "starry_night.jpg",
                    help="the painting (default starry_night.jpg, the shipped StyleNet's)")
    ap.add_argument("--stylenet", default="starry_night", help="the per-style baseline (shipped name or checkpoint)")
    ap.add_argument("--decoder", default="vgg_relu3_1")
    ap.add_argument("--video", type=Path, default=MEDIA / "video" / "hybrik_taiji.mp4", help="the evaluation clip")
    ap.add_argument("--frames", type=int, default=20, help="consecutive frames for the warping error")
    ap.add_argument("--width", type=int, default=320, help="their width (bench flicker's)")
    ap.add_argument("--size", type=int, default=256, help="side of the square frames for speed and distances")
    ap.add_argument("--seconds", type=float, default=3.0, help="timing per variant")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--figures", type=Path, help="write universal_*.png here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    painting = read_image(args.style_image, max_side=1024).rgb
    decoder = load_decoder(resolve_weights(args.decoder, "universal"))
    stylizers = {"StyleNet": FrameStylizer(load_stylizer(resolve_weights(args.stylenet, "style")), cfg=FastPathConfig())}
    for method in ("adain", "wct"):
        stylizers[method.upper() if method == "wct" else "AdaIN"] = s = UniversalStylizer(decoder, cfg=UniversalConfig(method))
        start = time.perf_counter()
        s.set_style(painting)
        print(f"{method}: a new painting's statistics in {1000 * (time.perf_counter() - start):.0f} ms")

    clip = video_frames(args.video, args.frames)
    square = _square(clip[len(clip) // 2], args.size)
    print(f"\nspeed at {args.size}x{args.size} ({torch.get_num_threads()} threads, uint8 in -> uint8 out):")
    fps = {name: frames_per_second(s, square, args.seconds) for name, s in stylizers.items()}
    for name, v in fps.items():
        print(f"  {name:9s} {v:6.2f} fps  ({v / fps['StyleNet']:.2f}x StyleNet)")

    h, w = clip[0].shape[:2]
    small = [cv2.resize(f, (args.width, round(h * args.width / w / 4) * 4), interpolation=cv2.INTER_AREA) for f in clip]
    print(f"\nwarping error, {args.video.name}, {len(small)} frames at {small[0].shape[1]}x{small[0].shape[0]} "
          f"(MSE, pixels in [0, 1]):\n  input video      {warping_error(small, small):.5f}")
    for name, s in stylizers.items():
        print(f"  {name:9s}        {warping_error(small, [s(f) for f in small]):.5f}")

    eval_frames = [_square(f, args.size) for f in video_frames(args.video, 4, step=90)]
    measure = Distances(painting)
    base = np.mean([measure(f, f)[0] for f in eval_frames])
    print(f"\nstyle distance to {args.style_image.name} (share of the unstylized frame's {base:.3f}) and relu4_1 "
          f"content distance, {len(eval_frames)} unseen frames of {args.video.name}:")
    for name, s in stylizers.items():
        d = np.array([measure(s(f), f) for f in eval_frames]).mean(0)
        print(f"  {name:9s} style {d[0] / base:.3f}  content {d[1]:.3f}")

    if args.figures:
        photo = read_image(MEDIA / "content" / "skimage_chelsea.png").rgb
        rows_in = [eval_frames[0], eval_frames[2], _square(photo, args.size)]
        columns = [lambda f: f] + [s for s in stylizers.values()]
        for name in UNSEEN:
            other = UniversalStylizer(decoder, cfg=UniversalConfig("wct"))
            other.set_style(read_image(MEDIA / "style" / name, max_side=1024).rgb)
            columns.append(other)
        grid = [torch.cat([_tensor(np.ascontiguousarray(col(f))) for col in columns]) for f in rows_in]
        paintings = [painting] * 3 + [read_image(MEDIA / "style" / n, max_side=1024).rgb for n in UNSEEN]
        header = torch.cat([torch.ones(1, 3, args.size, args.size)] + [_tensor(_square(p, args.size)) for p in paintings])
        args.figures.mkdir(parents=True, exist_ok=True)
        save_grid(args.figures / "universal_compare.png", [header, *grid], pad=2)
        print(f"\n{args.figures / 'universal_compare.png'}: rows = the paintings, then frames; columns = input, "
              f"StyleNet, AdaIN, WCT ({args.style_image.stem}), WCT after {', '.join(Path(n).stem for n in UNSEEN)}")
    return 0
