"""Result 5: video flicker as the warping error (Lai et al., ECCV 2018) on a real clip.

Stylizes consecutive frames of a real video per frame and with the flicker measures (exponential
smoothing; flow-guided smoothing), and for a TextureNet with fixed vs fresh noise per frame.
Lower is steadier; the input video's own warping error is the floor.

    python -m launch bench flicker [--video ../shared/media/video/hybrik_taiji.mp4] [--frames 40] [--width 480]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import torch

from avatars.core.weights import resolve_weights
from avatars.style.flicker import warping_error
from avatars.style.stylize import FastPathConfig, FrameStylizer
from avatars.style.checkpoint import load_stylizer
from bench.stylize import MEDIA, video_frames


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench flicker")
    ap.add_argument("--video", type=Path, default=MEDIA / "video" / "hybrik_taiji.mp4")
    ap.add_argument("--ckpt", type=Path, default=resolve_weights("starry_night", "style"))
    ap.add_argument("--texturenet", type=Path, default=Path("runs") / "diversity" / "lambda_0.5.safetensors")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--width", type=int, default=480)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    frames = video_frames(args.video, args.frames)
    h, w = frames[0].shape[:2]
    size = (args.width, round(h * args.width / w / 4) * 4)
    frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
    print(f"{args.video.name}: {len(frames)} frames at {size[0]}x{size[1]}; warping error (MSE, pixels in [0,1])")
    print(f"  input video itself: {warping_error(frames, frames):.5f}")
    net = load_stylizer(args.ckpt)
    variants = {"per-frame": FastPathConfig(), "ema 0.5": FastPathConfig(smoothing="ema"),
                "flow-guided 0.5": FastPathConfig(smoothing="flow")}
    for name, cfg in variants.items():
        s = FrameStylizer(net, cfg=cfg)
        print(f"  {args.ckpt.stem} {name}: {warping_error(frames, [s(f) for f in frames]):.5f}")
    if args.texturenet.is_file():
        tnet = load_stylizer(args.texturenet)
        fixed = FrameStylizer(tnet)
        print(f"  TextureNet {args.texturenet.stem}, fixed noise: {warping_error(frames, [fixed(f) for f in frames]):.5f}")
        fresh = [FrameStylizer(tnet, cfg=FastPathConfig(seed=i))(f) for i, f in enumerate(frames)]
        print(f"  TextureNet {args.texturenet.stem}, fresh noise per frame: {warping_error(frames, fresh):.5f}")

    return 0
