"""Result 2: StyleNet with instance vs batch normalisation (Improved Texture Networks, Fig. 3.3).

Trains both variants with identical settings (seed, crops, steps, loss) and writes the final
training loss of each, their loss curves and their outputs on unseen frames side by side:
docs/figures/norm_in_vs_bn.png and docs/figures/norm_in_vs_bn_loss.png.

    python -m launch bench norm_compare [--steps 300] [--size 128] [--threads 1]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from avatars.style.checkpoint import read_style_record
from avatars.style.training import StyleTrainConfig, train_stylizer
from avatars.style.stylenet import StyleNetConfig
from avatars.style.stylize import FastPathConfig, FrameStylizer
from avatars.style.checkpoint import load_stylizer
from bench.stylize import MEDIA, eval_frames


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench norm_compare")
    ap.add_argument("--style", default=str(MEDIA / "style" / "starry_night.jpg"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = Path("runs") / "norm"
    out = {}
    for norm in ("instance", "batch"):
        cfg = StyleTrainConfig(style=args.style, content_dir=str(MEDIA / "content"), image_size=args.size,
                               style_size=int(args.size * 1.25), batch_size=args.batch, steps=args.steps,
                               stylenet=StyleNetConfig(channels=(16, 32, 64), n_residual=5, norm=norm),
                               sample_every=args.steps, checkpoint_every=args.steps)
        result = train_stylizer(cfg, runs / f"{norm}.safetensors", progress=False)
        out[norm] = result
        print(f"StyleNet-{'IN' if norm == 'instance' else 'BN'}: final training loss {result.final_losses} "
              f"({result.steps} steps, {result.seconds:.0f} s)")
    figures = Path("docs") / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    content = eval_frames(3, args.size * 2)
    rows = [content]
    for norm in out:
        s = FrameStylizer(load_stylizer(out[norm].checkpoint), cfg=FastPathConfig(bf16=False))
        frames = (content.permute(0, 2, 3, 1) * 255).round().byte().numpy()
        rows.append(torch.stack([torch.from_numpy(s(f)).permute(2, 0, 1) for f in frames]).float() / 255)
    from torchvision.utils import save_image

    save_image(torch.cat(rows), figures / "norm_in_vs_bn.png", nrow=len(content), padding=4, pad_value=1)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for norm in out:
        hist = read_style_record(out[norm].checkpoint)["history"]
        ax.plot([h["step"] for h in hist], [h["total"] for h in hist], label=f"StyleNet-{'IN' if norm == 'instance' else 'BN'}")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (style + content + TV)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(figures / "norm_in_vs_bn_loss.png", dpi=90)
    print("rows of docs/figures/norm_in_vs_bn.png: unseen frames, StyleNet-IN, StyleNet-BN (eval mode)")

    return 0
