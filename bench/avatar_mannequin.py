"""The mannequin avatar experiment: data, training of the textured avatar and the direct
baseline, and the paper's comparisons (held-out motion, novel views).

    python bench/avatar_mannequin.py data  [--root runs/avatar/mannequin]
    python bench/avatar_mannequin.py train --kind textured --minutes 45
    python bench/avatar_mannequin.py train --kind direct   --minutes 45
    python bench/avatar_mannequin.py train --kind textured --steps 821 --minutes 100   # resume: step-matched
    python bench/avatar_mannequin.py eval [--models DIR]
    python bench/avatar_mannequin.py ship     # -> avatars/weights/avatar/mannequin_avatar.safetensors (fp16)
    python bench/avatar_mannequin.py {data,train,eval} --protocol sparse    # sides never seen (docs/avatar.md)

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
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avatars.avatar.crop import CropConfig  # noqa: E402
from avatars.avatar.data import make_mannequin_dataset  # noqa: E402
from avatars.avatar.model import load_avatar, read_avatar_meta, save_avatar  # noqa: E402
from avatars.avatar.evaluation import evaluate_avatars  # noqa: E402
from avatars.avatar.training import AvatarTrainConfig, train_avatar  # noqa: E402

@dataclass(frozen=True)
class Protocol:
    train_angles: tuple[float, ...]
    train_motions: tuple[str, ...]
    offsets: tuple[float, ...]


PROTOCOLS = {
    "dense": Protocol((0.0, 90.0, 180.0, 270.0), ("walk", "dance", "turn_around", "random"), (0.0, 15.0, 30.0, 45.0)),
    "sparse": Protocol((0.0, 180.0), ("walk", "dance"), (0.0, 45.0, 90.0)),
}
CROP = CropConfig(size=128)
SHIPPED = Path(__file__).resolve().parents[1] / "avatars" / "weights" / "avatar" / "mannequin_avatar.safetensors"


def data(root: Path, protocol: Protocol) -> None:
    make_mannequin_dataset(root / "train", protocol.train_motions, protocol.train_angles, frames_per_clip=60,
                           fps=15.0, crop=CROP)
    for motion, seed in (("arm_wave", 1), ("walk", 7)):
        for off in protocol.offsets:
            make_mannequin_dataset(root / f"test_{motion}_{int(off)}", (motion,),
                                   tuple(a + off for a in protocol.train_angles), frames_per_clip=12, fps=5.0,
                                   crop=CROP, seed=seed)


def train(root: Path, kind: str, minutes: float, steps: int) -> None:
    torch.set_num_threads(1)  # the machine's cores are shared
    cfg = AvatarTrainConfig(str(root / "train"), kind=kind, steps=steps, time_limit_s=minutes * 60,
                            checkpoint_every=50, sample_every=100)
    print(train_avatar(cfg, root / f"{kind}.safetensors"))


def evaluate(root: Path, models: Path) -> None:
    """Textured vs direct (``models``/{textured,direct}.safetensors) on every test set under ``root``."""
    torch.set_num_threads(1)
    ckpts = [models / "textured.safetensors", models / "direct.safetensors"]
    results = {}
    for test in sorted(root.glob("test_*")):
        r = evaluate_avatars(ckpts, test, models / "eval" / test.name, progress=False)
        results[test.name] = r.scores
        print(test.name, *(f"{k}: ssim {v['ssim']:.4f} ssim_person {v['ssim_person']:.4f} psnr {v['psnr']:.2f}"
                           for k, v in r.scores.items()), sep=" | ")
    (models / "eval" / "summary.json").write_text(json.dumps(results, indent=1) + "\n")


def ship(root: Path) -> None:
    """The trained textured avatar as fp16, with its training record, into avatars/weights/."""
    src = root / "textured.safetensors"
    model, cfg = load_avatar(src)
    meta = read_avatar_meta(src)
    info = {k: meta[k] for k in ("train", "step", "seconds", "init", "final_losses")}
    info["made_by"] = ["python bench/avatar_mannequin.py data",
                       "python bench/avatar_mannequin.py train --kind textured --minutes 45",
                       f"python bench/avatar_mannequin.py train --kind textured --steps {meta['step']} --minutes 100"
                       "  # resumes to the direct baseline's step count",
                       "python bench/avatar_mannequin.py ship"]
    print(save_avatar(SHIPPED, model, cfg, info, half=True), SHIPPED.stat().st_size, "bytes")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("data", "train", "eval", "ship"))
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="dense")
    p.add_argument("--root", type=Path, default=None, help="default: runs/avatar/mannequin (dense), "
                   "runs/avatar/mannequin_sparse (sparse)")
    p.add_argument("--models", type=Path, default=None, help="eval: folder of the two checkpoints (default: root)")
    p.add_argument("--kind", choices=("textured", "direct"), default="textured")
    p.add_argument("--minutes", type=float, default=45.0)
    p.add_argument("--steps", type=int, default=100_000)
    a = p.parse_args()
    a.root = a.root or Path("runs/avatar/mannequin" + ("" if a.protocol == "dense" else f"_{a.protocol}"))
    if a.what == "data":
        data(a.root, PROTOCOLS[a.protocol])
    elif a.what == "train":
        train(a.root, a.kind, a.minutes, a.steps)
    elif a.what == "eval":
        evaluate(a.root, a.models or a.root)
    else:
        ship(a.root)


if __name__ == "__main__":
    main()
