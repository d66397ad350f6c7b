"""Benchmark: bone rasterizer (fast numpy path vs batched torch path) and mannequin render rate.

Run as ``python -m launch bench bones``. One CPU thread for stable numbers. The baseline for the
ratio is the torch path run in the same process on the same poses (one pose per call,
the streaming situation); the torch path's batched rate is printed too.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from avatars.body.bones import rasterize_bones, rasterize_bones_torch
from avatars.body.mannequin import Camera, Mannequin, MannequinSequence


def per_call(fn, items, repeat: int) -> float:
    """Median over ``repeat`` rounds of the mean seconds per item."""
    rounds = []
    for _ in range(repeat):
        t = time.perf_counter()
        for item in items:
            fn(item)
        rounds.append((time.perf_counter() - t) / len(items))
    return float(np.median(rounds))


def main(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="bench bones", description=__doc__.split("\n\n")[0]).parse_args(argv)
    torch.set_num_threads(1)
    mannequin = Mannequin()
    for size in (256, 512):
        frames = list(MannequinSequence("dance", num_frames=16, fps=8.0, camera=Camera(width=size, height=size),
                                        mannequin=mannequin))
        poses = np.stack([f.joints2d for f in frames])
        fast = per_call(lambda kp: rasterize_bones(kp, size, size), poses, repeat=5)
        single = per_call(lambda kp: rasterize_bones_torch(torch.from_numpy(kp[None]), size, size), poses, repeat=2)
        batch = per_call(lambda b: rasterize_bones_torch(torch.from_numpy(b), size, size), [poses], repeat=2)
        batch /= len(poses)
        print(f"bones {size}x{size}: fast {fast * 1e3:6.2f} ms/frame | torch 1-pose {single * 1e3:6.2f} ms/frame "
              f"| torch batch-16 {batch * 1e3:6.2f} ms/frame | fast vs torch 1-pose: {single / fast:5.1f}x")
    for motion in ("walk", "dance", "random"):
        seq = MannequinSequence(motion, num_frames=30, mannequin=mannequin)
        t = per_call(lambda i: seq[i], range(len(seq)), repeat=3)
        print(f"mannequin 256x256 {motion:>6}: {t * 1e3:5.1f} ms/frame = {1 / t:5.0f} frames/s (goal >= 20)")
    return 0
