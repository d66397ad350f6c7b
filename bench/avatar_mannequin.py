"""The mannequin avatar experiment: data, training of the textured avatar and the direct
baseline, the paper's comparisons (held-out motion, novel views), and the shipped avatar.

    python -m launch bench avatar_mannequin data  [--root runs/avatar/mannequin]
    python -m launch bench avatar_mannequin train --kind textured --steps 900          # the shipped avatar
    python -m launch bench avatar_mannequin train --kind direct   --steps 900          # step-matched
    python -m launch bench avatar_mannequin snapshot --kind direct --out direct_time   # then time-matched:
    python -m launch bench avatar_mannequin train --kind direct --out direct_time --steps 100000 --minutes M
    python -m launch bench avatar_mannequin eval --models textured,direct,direct_time
    python -m launch bench avatar_mannequin ship     # -> the shipped mannequin_avatar (fp16) + record
    python -m launch bench avatar_mannequin {data,train,eval} --protocol sparse    # sides never seen
        (docs/avatar.md: --steps 150, textured --pretrain-steps 300)

Data: 256 px person crops (rendered at 512 px and area-downsampled) with the exact part and UV
maps; the models' generator works at 128 px and the textures (256x256 per part) are sampled at
256 px. Recipe (``RECIPE``): the textured avatar pre-trains on the exact maps (area-resampled to
its 128 px crop), textures start as the mean of the mapped pixels, then perceptual loss (VGG-19
at 128 px) + pixel L1 (256 px) + mask BCE, learning rates cosine-decayed to a tenth; the direct
baseline has the same generator, losses, schedule and protocol.

Protocols (``--protocol``; each has its own default root):

* ``dense`` (the shipped avatar's): orbit angles 0, 90, 180, 270 deg; motions walk, dance,
  turn_around, random (60 frames each at 15 fps), so every side of the body is seen from some
  training camera. Novel views: every training view rotated by +15, +30 and +45 deg.
* ``sparse`` (the paper's claim at its sharpest): front and back cameras only (0, 180 deg) and
  motions that barely turn (walk; dance sways +-29 deg), so the sides of the body are never in
  the training set. Novel views: rotated by +45 and +90 deg (90 = the side views, at least 61
  deg from anything seen).

Held out in both: the arm_wave motion, and a new walk performance (seed 7).
"""
from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from avatars.avatar.crop import CropConfig
from avatars.avatar.data import make_mannequin_dataset
from avatars.avatar.evaluation import evaluate_avatars
from avatars.avatar.model import load_avatar, read_avatar_meta, save_avatar
from avatars.avatar.training import AvatarTrainConfig, train_avatar
from avatars.core.weights import WEIGHTS


@dataclass(frozen=True)
class Protocol:
    train_angles: tuple[float, ...]
    train_motions: tuple[str, ...]
    offsets: tuple[float, ...]


PROTOCOLS = {
    "dense": Protocol((0.0, 90.0, 180.0, 270.0), ("walk", "dance", "turn_around", "random"), (0.0, 15.0, 30.0, 45.0)),
    "sparse": Protocol((0.0, 180.0), ("walk", "dance"), (0.0, 45.0, 90.0)),
}
DATA_CROP = CropConfig(size=256)
RECIPE = dict(crop_size=128, texture_size=256, pretrain_steps=1500, texture_lr=1e-3, pixel_weight=1.0, lr_final=5e-5,
              perceptual_size=128, checkpoint_every=50, sample_every=100)


def data(root: Path, protocol: Protocol) -> None:
    make_mannequin_dataset(root / "train", protocol.train_motions, protocol.train_angles, frames_per_clip=60,
                           fps=15.0, crop=DATA_CROP)
    for motion, seed in (("arm_wave", 1), ("walk", 7)):
        for off in protocol.offsets:
            make_mannequin_dataset(root / f"test_{motion}_{int(off)}", (motion,),
                                   tuple(a + off for a in protocol.train_angles), frames_per_clip=12, fps=5.0,
                                   crop=DATA_CROP, seed=seed)


def train(root: Path, kind: str, minutes: float | None, steps: int, name: str | None, pretrain: int | None) -> None:
    torch.set_num_threads(1)  # the machine's cores are shared
    recipe = {**RECIPE, **({"pretrain_steps": pretrain} if pretrain is not None else {})}
    cfg = AvatarTrainConfig(str(root / "train"), kind=kind, steps=steps,
                            time_limit_s=minutes * 60 if minutes else None, **recipe)
    print(train_avatar(cfg, root / f"{name or kind}.safetensors"))


def evaluate(root: Path, models: Path, names: list[str]) -> None:
    """The checkpoints ``models``/NAME.safetensors on every test set under ``root``."""
    torch.set_num_threads(1)
    ckpts = [models / f"{n}.safetensors" for n in names]
    results = {}
    for test in sorted(root.glob("test_*")):
        r = evaluate_avatars(ckpts, test, models / "eval" / test.name, progress=False)
        results[test.name] = r.scores
        print(test.name, *(f"{k}: ssim {v['ssim']:.4f} person {v['ssim_person']:.4f} psnr {v['psnr']:.2f}"
                           + (f" parts {v['parts_used']}/{v['parts']}" if "parts" in v else "")
                           for k, v in r.scores.items()), sep=" | ")
    (models / "eval" / "summary.json").write_text(json.dumps(results, indent=1) + "\n")


def ship(root: Path) -> None:
    """The trained textured avatar as fp16, with its training record, into the shipped weights."""
    src = root / "textured.safetensors"
    model, cfg = load_avatar(src)
    meta = read_avatar_meta(src)
    info = {k: meta[k] for k in ("train", "data", "step", "seconds", "init", "final_losses", "part_history")}
    info["made_by"] = ["python -m launch bench avatar_mannequin data",
                       f"python -m launch bench avatar_mannequin train --kind textured --steps {meta['step']}",
                       "python -m launch bench avatar_mannequin ship"]
    dst = WEIGHTS / "avatar" / "mannequin_avatar.safetensors"
    save_avatar(dst, model, cfg, info, half=True)
    print(dst, dst.stat().st_size, "bytes")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench avatar_mannequin", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("data", "train", "eval", "ship", "snapshot"))
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="dense")
    p.add_argument("--root", type=Path, default=None, help="default: runs/avatar/mannequin (dense), "
                   "runs/avatar/mannequin_sparse (sparse)")
    p.add_argument("--models", default="textured,direct", help="eval: checkpoint names under the root")
    p.add_argument("--kind", choices=("textured", "direct"), default="textured")
    p.add_argument("--out", default=None, help="train: checkpoint name (default: the kind)")
    p.add_argument("--minutes", type=float, default=None)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--pretrain-steps", type=int, default=None, help=f"textured (default {RECIPE['pretrain_steps']})")
    a = p.parse_args(argv)
    root = a.root or Path("runs/avatar/mannequin" + ("" if a.protocol == "dense" else f"_{a.protocol}"))
    if a.what == "data":
        data(root, PROTOCOLS[a.protocol])
    elif a.what == "train":
        train(root, a.kind, a.minutes, a.steps, a.out, a.pretrain_steps)
    elif a.what == "eval":
        evaluate(root, root, a.models.split(","))
    elif a.what == "snapshot":   # a copy of a run as it is now (e.g. the direct baseline at the step-matched count)
        src = root / f"{a.kind}.safetensors"
        for suffix in (".safetensors", ".json", ".optim.safetensors"):
            shutil.copy(src.with_suffix(suffix), (root / f"{a.out}").with_suffix(suffix))
    else:
        ship(root)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
