"""Result 1: feed-forward stylization vs Gatys optimisation (Texture Networks, Fig. 2.6).

For unseen 256x256 frames: the trained network's output defines a target style+content loss;
Gatys (L-BFGS from the content image, same loss, same VGG-19) runs until it reaches that loss.
The ratio of its time to the network's time per frame is the speed-up (the paper: ~500x).
Also shows refinement: a few L-BFGS steps started from the network's output.

    python -m launch bench gatys_vs_feedforward [--ckpt avatars/weights/style/starry_night.safetensors] [--frames 2]
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from avatars.core.weights import resolve_weights
from avatars.style.gatys import GatysConfig, stylize
from avatars.style.losses import PerceptualLoss
from avatars.style.training import config_of_checkpoint, load_image
from avatars.style.stylize import FastPathConfig, FrameStylizer
from avatars.style.checkpoint import load_stylizer
from bench.stylize import eval_frames, style_image


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench gatys_vs_feedforward")
    ap.add_argument("--ckpt", type=Path, default=resolve_weights("starry_night", "style"))
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--max-seconds", type=float, default=240)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    train = config_of_checkpoint(args.ckpt)
    loss = PerceptualLoss(dataclasses.replace(train.loss, bf16=False), load_image(style_image(train.style), train.style_size))
    net = FrameStylizer(load_stylizer(args.ckpt), cfg=FastPathConfig(bf16=False, channels_last=True))
    for x in eval_frames(args.frames, 256):
        x = x[None]
        net.stylize_tensor(x)
        t0 = time.perf_counter()
        for _ in range(5):
            y = net.stylize_tensor(x)
        t_net = (time.perf_counter() - t0) / 5
        with torch.no_grad():
            terms = loss(y, x)
        target = (terms["style"] + terms["content"]).item()
        r = stylize(loss, x, GatysConfig(steps=2000, optimizer="lbfgs", target_loss=target,
                                         time_limit_s=args.max_seconds))
        reached = r.reached_target_s
        speed = f"{reached / t_net:.0f}x" if reached else f"> {r.history[-1][0] / t_net:.0f}x (not reached)"
        print(f"network (fp32): {t_net * 1000:.0f} ms, loss {target:.3f} | Gatys L-BFGS: "
              f"{reached if reached else r.history[-1][0]:.1f} s, {len(r.history)} iterations, "
              f"final loss {r.history[-1][1]:.3f} | speed-up {speed}")
        ref = stylize(loss, x, GatysConfig(steps=20, optimizer="lbfgs"), init=y)
        print(f"  refinement from the network output: loss {target:.3f} -> {ref.history[-1][1]:.3f} "
              f"in 20 L-BFGS steps ({ref.history[-1][0]:.1f} s)")

    return 0
