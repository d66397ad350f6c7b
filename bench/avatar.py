"""Benchmark: textured avatar frames/s at 256x256, paper-size vs small generator, fp32 vs fast path.

Run as ``python bench/avatar.py [--threads 1] [--frames 10]``. The baseline of every ratio is
the fp32 run of the same model in the same process on the same bone stacks (mannequin walk
poses). Fast path = channels-last activations + bf16 autocast (texture sampling stays fp32);
bf16 is forced here, so its cost is seen even where it is not native (``avatars.core.precision``), and
the renderer the streaming node uses (``fast``: bf16 only where native) is timed next to it.
Also reports the fast path's error against fp32 (mean and max |difference| of the composited
colour, 0-255 scale), and the whole run-time renderer (keypoints -> crop -> model -> paste
back into a 256x256 frame) for the shipped avatar where it exists.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avatars.avatar.model import AvatarConfig, AvatarRenderer, GeneratorConfig, load_avatar  # noqa: E402
from avatars.avatar.crop import CropConfig  # noqa: E402
from avatars.body.bones import rasterize_bones  # noqa: E402
from avatars.body.mannequin import Camera, MannequinSequence  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[1] / "avatars" / "weights" / "avatar" / "mannequin_avatar.safetensors"


def _time(fn, inputs: list, repeats: int) -> float:
    fn(inputs[0])  # warm-up (oneDNN picks kernels on the first call)
    t = time.perf_counter()
    for _ in range(repeats):
        for x in inputs:
            fn(x)
    return repeats * len(inputs) / (time.perf_counter() - t)


def run_bench(threads: int = 1, frames: int = 6, repeats: int = 1, size: int = 256) -> None:
    """Print fps of both generator sizes (fp32 vs fast) and of the shipped renderer, with ratios."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    seq = MannequinSequence("walk", frames, fps=5.0, camera=Camera.orbit(20.0, width=size, height=size))
    poses = list(seq)
    bones = [torch.from_numpy(rasterize_bones(f.joints2d, size, size))[None] for f in poses]
    print(f"avatar bench: {size}x{size}, {threads} thread(s), {frames} frames x {repeats}")
    for name, gen in (("paper", GeneratorConfig.paper()), ("small", GeneratorConfig.small())):
        cfg = AvatarConfig("textured", gen, 128, CropConfig(size=size))
        model = cfg.build()
        params = sum(q.numel() for q in model.net.parameters()) / 1e6
        ref, fast = AvatarRenderer(model, cfg), AvatarRenderer(model, cfg, fast=True, bf16=True)
        fps32 = _time(ref.render_bones, bones, repeats)
        fps16 = _time(fast.render_bones, bones, repeats)
        err = torch.cat([(fast.render_bones(x).rgb - ref.render_bones(x).rgb).abs().flatten() for x in bones[:2]])
        print(f"  {name:5s} ({params:5.2f}M params, random weights): fp32 {fps32:6.2f} fps | fast {fps16:6.2f} fps"
              f" | ratio {fps16 / fps32:4.2f}x | fast-vs-fp32 |err| mean {255 * err.mean():.2f} max {255 * err.max():.1f}")
    if SHIPPED.is_file():
        model, cfg = load_avatar(SHIPPED)
        for fast in (False, True):
            r = AvatarRenderer(model, cfg, fast=fast)
            fps = _time(lambda f: r(f.joints2d, (size, size)), poses, repeats)
            mode = f"fast ({'bf16' if r.bf16 else 'fp32'}, channels-last)" if fast else "fp32"
            print(f"  shipped renderer ({cfg.crop.size}px crop -> {size}x{size} frame, {mode}):"
                  f" {fps:6.2f} fps")
        outs = [[AvatarRenderer(model, cfg, fast=fast, bf16=fast)(f.joints2d, (size, size)) for f in poses[:2]]
                for fast in (False, True)]
        d = np.concatenate([np.abs(x.rgb.astype(np.int16) * x.mask[..., None] - y.rgb.astype(np.int16)
                                   * y.mask[..., None]).ravel() for x, y in zip(*outs)])
        print(f"  shipped bf16-vs-fp32 composited |err| (0-255): mean {d.mean():.2f} max {d.max():.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--repeats", type=int, default=1)
    a = p.parse_args()
    run_bench(a.threads, a.frames, a.repeats)


if __name__ == "__main__":
    main()
