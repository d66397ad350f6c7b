"""Shipped styles before and after: style and content loss on frames no stylizer was trained on.

Two held-out sets, the two things a stylizer in this project sees:

    video   centre squares of hybrik_taiji.mp4 (the clip extract-frames keeps out), 256x256
    people  mannequin and avatar renders of held-out motions over photographs (people-frames on
            the mannequin test sets), 256x256

Every checkpoint of ``--after`` is scored against the one of the same name in ``--before`` (where
there is one) under one fixed loss, whatever each was trained with: fp32 VGG-19, the five style
layers at weight 5, and content at relu4_2 and at relu2_2 reported apart (relu2_2 holds faces, hands
and letters), and LPIPS (AlexNet) to the content frame. Lower is better; the ratio is after / before. With ``--figures DIR`` a picture per
style: rows input, before, after; the same frames of both sets.

    python -m launch people-frames runs/avatar/mannequin/test_arm_wave_0 --backgrounds ../shared/media/content \\
        -o runs/content/eval_people --avatar mannequin_avatar --count 6 --seed 1   (and test_walk_45)
    python -m launch bench style_eval --before DIR --after DIR [--people DIR] [--figures docs/figures]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from avatars.core.lpips import LPIPS, load_lpips
from avatars.style.checkpoint import load_stylizer, read_style_record
from avatars.style.losses import LossConfig, PerceptualLoss
from avatars.style.stylize import FastPathConfig, FrameStylizer
from avatars.style.training import list_images, load_image
from bench.stylize import eval_frames, style_image


def people_frames(folder: Path, size: int = 256) -> torch.Tensor:
    images = [load_image(p) for p in list_images(folder)]
    return torch.cat([torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
                      for x in images])


def stylized(path: Path, content: torch.Tensor) -> torch.Tensor:
    """``content`` through the checkpoint's fp32 reference path, frame by frame, as uint8 would show it."""
    net = FrameStylizer(load_stylizer(path), cfg=FastPathConfig(bf16=False, channels_last=False))
    frames = (content.permute(0, 2, 3, 1) * 255).round().byte().numpy()
    return torch.stack([torch.from_numpy(net(f)).permute(2, 0, 1) for f in frames]).float() / 255


def losses(style: Path) -> dict[str, tuple[PerceptualLoss, str]]:
    """Each reported term: the fixed loss that computes it and the key of its value."""
    target = load_image(style, 320)
    return {"style": (PerceptualLoss(LossConfig(bf16=False), target), "style"),
            **{f"content {layer}": (PerceptualLoss(LossConfig(bf16=False, content_layers=(layer,)), target), "content")
               for layer in ("relu4_2", "relu2_2")}}


@torch.no_grad()
def scores(out: torch.Tensor, content: torch.Tensor, terms: dict[str, tuple[PerceptualLoss, str]],
           perceptual: LPIPS) -> dict[str, float]:
    """Mean per frame of each term (weighted as in training), and the AlexNet LPIPS to the content
    over the whole frame (how much of the content the painting leaves, as people perceive it)."""
    row = {name: sum(loss(out[i:i + 1], content[i:i + 1])[key].item() for i in range(len(out))) / len(out)
           for name, (loss, key) in terms.items()}
    return {**row, "lpips": float(perceptual(out, content).mean())}


def figure(path: Path, rows: list[torch.Tensor]) -> None:
    from torchvision.utils import save_image

    save_image(torch.cat(rows), path, nrow=len(rows[0]), padding=2)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench style_eval", description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, required=True, help="folder of the old checkpoints (NAME.safetensors)")
    ap.add_argument("--after", type=Path, required=True, help="folder of the new checkpoints")
    ap.add_argument("--people", type=Path, default=Path("runs/content/eval_people"), help="held-out people frames")
    ap.add_argument("--frames", type=int, default=8, help="video frames (default 8)")
    ap.add_argument("--figures", type=Path, help="write style_<name>_before_after.png here")
    args = ap.parse_args(argv)
    sets = {"video": eval_frames(args.frames), "people": people_frames(args.people)}
    perceptual = load_lpips("alex")
    print(f"held-out sets: video {len(sets['video'])} frames, people {len(sets['people'])} frames; "
          f"loss: fp32 VGG-19, style weight {LossConfig().style_weight:g}, content weight {LossConfig().content_weight:g}")
    for after in sorted(args.after.glob("*.safetensors")):
        before = args.before / after.name
        terms = losses(style_image(read_style_record(after)["train"]["style"]))
        shown = []
        for set_name, content in sets.items():
            row = {}
            for label, ckpt in (("before", before), ("after", after)):
                if ckpt.is_file():
                    out = stylized(ckpt, content)
                    row[label] = scores(out, content, terms, perceptual)
                    shown.append((set_name, label, out))
            line = ", ".join(
                f"{t} {row['before'][t]:.3f} -> {row['after'][t]:.3f} ({row['after'][t] / row['before'][t]:.2f}x)"
                if "before" in row else f"{t} {row['after'][t]:.3f}" for t in row["after"])
            print(f"  {after.stem} on {set_name}: {line}")
        if args.figures:
            idx = {k: torch.linspace(0, len(v) - 1, 4).round().long() for k, v in sets.items()}
            rows = [torch.cat([v[idx[k]] for k, v in sets.items()])]
            for label in ("before", "after"):
                parts = [o[idx[s]] for s, lab, o in shown if lab == label]
                if len(parts) == len(sets):
                    rows.append(torch.cat(parts))
            args.figures.mkdir(parents=True, exist_ok=True)
            figure(args.figures / f"style_{after.stem}_before_after.png", rows)
    return 0
