"""Benchmark: our stylizer fast path against a plain fp32 pytorch/examples TransformerNet.

Both run in this one process on the same frames: uint8 RGB frame in, uint8 stylized frame out
(conversion included), at 256x256, 512x512 and 1280x720. Ours is the narrow StyleNet-IN on the
fast path (channels-last; bf16 autocast where the hardware has it natively, see avatars.core.precision);
the baseline is TransformerNet in fp32, contiguous
layout. Where trained checkpoints of both exist, the style+content loss of each output is
measured on real video frames that no model was trained on (fp32 VGG-19, same loss as training).

    python -m launch bench stylize [--ours CKPT] [--baseline CKPT] [--seconds 3] [--threads N]
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avatars.core.weights import resolve_weights
from avatars.style.checkpoint import load_stylizer, read_style_record
from avatars.style.losses import PerceptualLoss
from avatars.style.stylenet import StyleNet, StyleNetConfig
from avatars.style.stylize import FastPathConfig, FrameStylizer
from avatars.style.training import config_of_checkpoint, load_image
from bench.baselines.transformer_net import TransformerNet
from launch.media import media_root

SIZES = ((256, 256), (512, 512), (720, 1280))
MEDIA = media_root()
DEFAULT_BASELINE = Path("runs/styles/baseline_transformernet_starry_night.safetensors")
EVAL_VIDEO = MEDIA / "video" / "hybrik_taiji.mp4"


def video_frames(path: Path, n: int, step: int = 1) -> list[np.ndarray]:
    """The first ``n`` frames (every ``step``-th) of a video as uint8 RGB arrays."""
    import av

    out = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % step == 0:
                out.append(f.to_ndarray(format="rgb24"))
            if len(out) == n:
                break
    return out


def frames_per_second(stylizer: FrameStylizer, frame: np.ndarray, seconds: float) -> float:
    stylizer(frame)  # warm-up: allocator, oneDNN primitive cache
    n, start = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - start < seconds:
        stylizer(frame)
        n += 1
    return n / (time.perf_counter() - start)


def baseline_model(path: Path) -> TransformerNet:
    net = TransformerNet()
    if path.is_file():
        net.load_state_dict(load_stylizer(path).state_dict())
    return net.eval()


def eval_frames(n: int = 6, size: int = 256) -> torch.Tensor:
    """Centre squares of frames spread over a real clip, resized to ``size``: unseen content."""
    frames = video_frames(EVAL_VIDEO, n, step=60)
    x = torch.stack([torch.from_numpy(f).permute(2, 0, 1) for f in frames]).float() / 255
    h, w = x.shape[-2:]
    s = min(h, w)
    x = x[..., (h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2]
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def style_content_loss(stylizer: FrameStylizer, loss: PerceptualLoss, content: torch.Tensor) -> float:
    frames = (content.permute(0, 2, 3, 1) * 255).round().byte().numpy()
    out = torch.stack([torch.from_numpy(stylizer(f)).permute(2, 0, 1) for f in frames]).float() / 255
    with torch.no_grad():
        terms = loss(out, content)
    return (terms["style"] + terms["content"]).item()


def style_image(name_or_path: str) -> Path:
    """A training record's style image: the file where it is one, else by name in the media's style/."""
    path = Path(name_or_path)
    return path if path.is_file() else MEDIA / "style" / path.name


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench stylize", description=__doc__.split("\n\n")[0])
    ap.add_argument("--ours", type=Path, default=resolve_weights("starry_night", "style"))
    ap.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    ap.add_argument("--seconds", type=float, default=3.0, help="timing per model and size")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    trained = args.ours.is_file()
    ours_net = load_stylizer(args.ours) if trained else StyleNet(StyleNetConfig(channels=(16, 32, 64))).eval()
    ours = FrameStylizer(ours_net, cfg=FastPathConfig(bf16=None, channels_last=True))  # bf16 where native
    ours_fp32 = FrameStylizer(ours_net, cfg=FastPathConfig(bf16=False, channels_last=False))
    base = FrameStylizer(baseline_model(args.baseline), cfg=FastPathConfig(bf16=False, channels_last=False))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"ours: {args.ours.name if trained else 'untrained'} StyleNet{list(ours_net.cfg.channels)} "
          f"({sum(p.numel() for p in ours_net.parameters()):,} params, {'bf16' if ours.bf16 else 'fp32'}+channels-last) vs "
          f"TransformerNet fp32 ({sum(p.numel() for p in base.model.parameters()):,} params)")
    rng = np.random.default_rng(0)
    print(f"{'size':>10} {'ours fps':>9} {'base fps':>9} {'speed-up':>9}")
    for h, w in SIZES:
        frame = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        f_ours = frames_per_second(ours, frame, args.seconds)
        f_base = frames_per_second(base, frame, args.seconds)
        print(f"{w:>5}x{h:<4} {f_ours:9.2f} {f_base:9.2f} {f_ours / f_base:8.2f}x")
    if trained and args.baseline.is_file():
        style = config_of_checkpoint(args.ours)
        loss = PerceptualLoss(dataclasses.replace(style.loss, bf16=False),
                              load_image(style_image(style.style), style.style_size))
        content = eval_frames()
        l_ours, l_ours32 = style_content_loss(ours, loss, content), style_content_loss(ours_fp32, loss, content)
        l_base = style_content_loss(base, loss, content)
        steps = {p.name: read_style_record(p)["step"] for p in (args.ours, args.baseline)}
        print(f"style+content loss on {len(content)} unseen 256x256 frames of {EVAL_VIDEO.name}: "
              f"ours (fast path) {l_ours:.3f}, ours fp32 {l_ours32:.3f}, baseline {l_base:.3f} "
              f"(ratio {l_ours / l_base:.2f}; training steps {steps})")
    else:
        print("loss comparison skipped: needs trained checkpoints of both (--ours, --baseline)")
    return 0
