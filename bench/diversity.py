"""Result 3: diversity of TextureNet stylizations with and without the Julesz term (lambda).

Trains TextureNet (image + noise) with identical settings except the diversity weight; each
batch holds one content crop with ``--repeat`` different noises, so the entropy term measures
what the noise changes. Reports, on unseen frames, the mean pairwise RMS distance between the
outputs for 6 noises (0..255 grey levels) and the style+content loss, and writes
docs/figures/diversity.png (rows: lambda values; columns: noises).

    python -m launch bench diversity [--lambdas 0 0.5] [--steps 300] [--size 128] [--threads 1]
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
from pathlib import Path

import torch

from avatars.style.losses import LossConfig, PerceptualLoss
from avatars.style.training import StyleTrainConfig, load_image, train_stylizer
from avatars.style.checkpoint import load_stylizer
from avatars.style.texturenet import TextureNetConfig
from bench.stylize import MEDIA, eval_frames


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench diversity")
    ap.add_argument("--style", default=str(MEDIA / "style" / "starry_night.jpg"))
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.5])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    content = eval_frames(2, args.size)
    n_noise = 6
    rows = []
    for lam in args.lambdas:
        cfg = StyleTrainConfig(style=args.style, content_dir=str(MEDIA / "content"), model="texturenet",
                               texturenet=TextureNetConfig(scales=5, width=8, image_input=True, norm="instance",
                                                           padding="reflect"),
                               loss=LossConfig(bf16=True, diversity_weight=lam), image_size=args.size,
                               style_size=int(args.size * 1.25), batch_size=args.repeat,
                               repeat_content=args.repeat, steps=args.steps,
                               sample_every=args.steps, checkpoint_every=args.steps)
        result = train_stylizer(cfg, Path("runs") / "diversity" / f"lambda_{lam:g}.safetensors", progress=False)
        net = load_stylizer(result.checkpoint)
        loss = PerceptualLoss(dataclasses.replace(cfg.loss, bf16=False, diversity_weight=0.0, tv_weight=0.0),
                              load_image(args.style, cfg.style_size))
        g = torch.Generator().manual_seed(123)
        dists, losses, outs = [], [], []
        with torch.no_grad():
            for x in content:
                ys = torch.cat([net(x[None], net.make_noise(1, *x.shape[-2:], g)).clamp(0, 1) for _ in range(n_noise)])
                outs.append(ys)
                dists += [((a - b).pow(2).mean().sqrt() * 255).item() for a, b in itertools.combinations(ys, 2)]
                losses.append(loss(ys, x[None].expand_as(ys))["total"].item())
        d, l = sum(dists) / len(dists), sum(losses) / len(losses)
        rows.append(outs[0])
        print(f"lambda={lam:g}: mean pairwise RMS distance over {n_noise} noises {d:.2f} grey levels, "
              f"style+content loss {l:.3f}, training {result.final_losses} ({result.seconds:.0f} s)")
    from torchvision.utils import save_image

    (Path("docs") / "figures").mkdir(parents=True, exist_ok=True)
    save_image(torch.cat(rows), Path("docs") / "figures" / "diversity.png", nrow=n_noise, padding=4, pad_value=1)

    return 0
