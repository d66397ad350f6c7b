"""``make-avatar VIDEO -o NAME``: one command from a clip of a person to an avatar the graphs find by name.

Four stages, each the library's own (what ``prepare-avatar``, ``train-avatar`` and ``eval-avatar``
run): MediaPipe pose and person crops of every frame, the last fifth held out; the transfer
training from the shipped mannequin avatar's generator with the textures re-initialised from the
clip (``AvatarTrainConfig``'s defaults, bounded by ``--minutes``); the held-out scores; the export
in the shipped format (network fp16, textures 8-bit) to the user's avatar folder
(``avatars.core.weights.user_folder``), where ``--set avatar.model=NAME`` finds it. The work (the
dataset, the resumable checkpoint, the scores and pictures) stays in ``NAME.work/`` beside it: the
same command again resumes where it stopped.

Refused before training, with what to do instead: a clip where no frame has a person, a person too
small to learn (the torso under ``MIN_TORSO_PX`` pixels of the source), too few frames to hold any out,
two people in most frames (MediaPipe follows one at a time, the masks then hold both).
"""
from __future__ import annotations

import argparse
import re
import shutil
import time
from pathlib import Path

import numpy as np

from launch.command import NO_STEP_LIMIT, Exit, Refused, device_option, duration, refusing, set_threads

MIN_TORSO_PX = 40          # shoulders-to-hips in source pixels; below it a 256 px crop is mostly upsampling
MIN_FRAMES = 30            # frames with a person, a fifth of them held out
TWO_PEOPLE_SHARE = 0.3     # frames whose mask has a second large blob, above which the clip is refused
NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def _two_people(masks: np.ndarray) -> float:
    """The share of frames whose person mask has a second connected blob at least a third the size of
    the largest (another person beside the one MediaPipe follows)."""
    import cv2

    second = 0
    for m in masks:
        count, _, stats, _ = cv2.connectedComponentsWithStats((m >= 128).astype(np.uint8), connectivity=8)
        areas = sorted(stats[1:, cv2.CC_STAT_AREA], reverse=True)
        second += len(areas) > 1 and areas[1] >= areas[0] / 3
    return second / max(len(masks), 1)


def _check_dataset(video: Path, data: Path) -> dict:
    """The dataset's meta, or Refused saying why this clip cannot give an avatar."""
    import json

    meta = json.loads((data / "meta.json").read_text())
    if meta["frames"] < MIN_FRAMES:
        raise Refused(f"{video}: only {meta['frames']} frames with a person; make-avatar needs at least "
                      f"{MIN_FRAMES} (a fifth are held out to score the avatar): use a longer clip")
    if meta["torso_px"] < MIN_TORSO_PX:
        raise Refused(f"{video}: the person is too small (torso {meta['torso_px']:.0f} px, at least {MIN_TORSO_PX} "
                      "needed): film closer or use a larger video")
    with np.load(data / "frames.npz") as z:
        share = _two_people(z["mask"])
    if share > TWO_PEOPLE_SHARE:
        raise Refused(f"{video}: two people in {share:.0%} of the frames; make-avatar learns one person: "
                      "use a clip where they are alone")
    return meta


def cmd_make_avatar(args: argparse.Namespace) -> int:
    from avatars.avatar.crop import CropConfig
    from avatars.avatar.data import prepare_video
    from avatars.avatar.evaluation import evaluate_avatars
    from avatars.avatar.model import load_avatar, read_avatar_meta, save_avatar
    from avatars.avatar.training import AvatarTrainConfig, train_avatar
    from avatars.core.weights import available, user_folder

    video, name = Path(args.video), args.output
    if not NAME.match(name):
        raise Refused(f"avatar name {name!r}: lower-case letters, digits and _ (it is also a file name), up to 40")
    if name in available("avatar"):
        raise Refused(f"{name!r} is a shipped avatar's name; give yours another one")
    if not video.is_file():
        raise Refused(f"{video}: {'is a folder, not a video' if video.is_dir() else 'no such file'}")
    folder = user_folder("avatar")
    final, work = folder / f"{name}.safetensors", folder / f"{name}.work"
    if final.exists() and not args.overwrite:
        raise Refused(f"{final} exists (an avatar named {name!r}); --overwrite replaces it")
    set_threads(args.threads)
    device = device_option(args.device)
    t0 = time.perf_counter()
    quiet = args.quiet

    print(f"[1/4] pose and person crops of {video.name}", flush=True)
    with refusing(FileNotFoundError, ValueError):
        data = prepare_video(video, work / "data", CropConfig(size=256), holdout=0.2, progress=not quiet)
    meta = _check_dataset(video, data)
    train_frames, test_frames = (b - a for a, b in meta["splits"].values())
    print(f"      {meta['frames']} frames with the person ({train_frames} to train on, {test_frames} held out), "
          f"torso {meta['torso_px']:.0f} px")

    print(f"[2/4] training for {args.minutes:g} min (transfer from the shipped avatar)", flush=True)
    ckpt = work / "avatar.safetensors"
    cfg = AvatarTrainConfig(str(data), steps=NO_STEP_LIMIT, time_limit_s=args.minutes * 60, device=device)
    done = ckpt.is_file() and read_avatar_meta(ckpt).get("seconds", 0) >= cfg.time_limit_s
    with refusing(ValueError):  # PartLostError: the generator lost a part of this person
        result = None if done else train_avatar(cfg, ckpt, resume=True, progress=not quiet)
    record = read_avatar_meta(ckpt)
    print(f"      {record['step']} steps, {duration(record['seconds'])} of training")

    print("[3/4] scoring the held-out frames", flush=True)
    scores = evaluate_avatars([ckpt], data, work / "eval", split="test", device=device,
                              progress=not quiet).scores[ckpt.stem]

    print(f"[4/4] storing the avatar as {name!r}", flush=True)
    model, acfg = load_avatar(ckpt)
    info = {"name": name, "source": video.name, "frames": meta["frames"], "step": record["step"],
            "seconds": record["seconds"], "scores": {k: v for k, v in scores.items() if k != "part_shares"},
            "made_by": "python -m launch make-avatar"}
    folder.mkdir(parents=True, exist_ok=True)
    partial = save_avatar(folder / f"{name}.part.safetensors", model, acfg, info, half=True)
    for suffix in (".safetensors", ".json"):
        shutil.move(partial.with_suffix(suffix), final.with_suffix(suffix))
    lp = "-" if scores["lpips_person"] is None else f"{scores['lpips_person']:.3f}"
    print(f"avatar    {final}  ({final.stat().st_size / 1e6:.1f} MB)")
    print(f"pictures  {work / 'eval'}  (grid.png: held-out truth and render; avatar_textures.png)")
    print(f"held out  {scores['frames']} frames: SSIM {scores['ssim']:.3f}, person box {scores['ssim_person']:.3f}, "
          f"LPIPS person {lp}, PSNR {scores['psnr']:.2f} dB, HF ratio {scores['hf_ratio']:.2f}, "
          f"parts {scores['parts_used']}/{scores['parts']}")
    print(f"use it    python -m launch run demo --set avatar.model={name}   (telepresence likewise); "
          f"{duration(time.perf_counter() - t0)} wall in all{'' if result else ' (training was already done)'}")
    return Exit.OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-avatar", help="a clip of a person -> a textured avatar the graphs find by name",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("video", metavar="VIDEO", help="a video of one person, whole body in view")
    p.add_argument("-o", "--output", required=True, metavar="NAME",
                   help="the avatar's name (then: --set avatar.model=NAME)")
    p.add_argument("--minutes", type=float, default=12.0, metavar="M", help="training time (12)")
    p.add_argument("--overwrite", action="store_true", help="replace an avatar of that name")
    p.add_argument("--device", default="cpu", metavar="DEV", help="cpu, cuda, cuda:N (cpu)")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_make_avatar)
