"""Style training commands of the command line (train-style, ship-style, and the content frames they
learn from: extract-frames, people-frames): thin wrappers over `avatars.style`.

- ``train-style``: `avatars.style.training.train_stylizer` (resumable safetensors checkpoints,
  sample grids and a loss curve next to the checkpoint). Resuming reads the run's config from the
  checkpoint, so ``train-style -o CKPT --minutes 120`` continues a run with nothing else repeated;
  options given on the command line replace the stored ones (except the network's shape).
- ``ship-style``: trains a style and exports it to the shipped weights (avatars/weights/style/).
- ``extract-frames`` / ``people-frames``: content frames for training (video frames with the
  evaluation clip kept out; people over varied backgrounds).

Bad input (missing or unreadable files, a checkpoint that is not a stylizer) is refused
(`launch.command`): ``error: ...`` on stderr, exit code 2.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from launch.command import NO_STEP_LIMIT, Exit, Refused, device_option, duration, refusing, set_threads
from launch.media import media_root
from launch.style_tools import read_rgb

log = logging.getLogger(__name__)


# -- train-style ------------------------------------------------------------------------------

# command-line option -> StyleTrainConfig field ("loss." for the loss config); None = not given
_TRAIN_FIELDS = {"style": "style", "content": "content_dir", "size": "image_size", "style_size": "style_size",
                 "batch": "batch_size", "repeat_content": "repeat_content", "lr": "lr", "seed": "seed",
                 "lr_final": "lr_final",
                 "content_layers": "loss.content_layers", "sample_every": "sample_every", "checkpoint_every": "checkpoint_every",
                 "style_weight": "loss.style_weight", "content_weight": "loss.content_weight",
                 "tv_weight": "loss.tv_weight", "diversity": "loss.diversity_weight"}


def _train_config(args: argparse.Namespace, out: Path):
    """The run's config: the checkpoint's when resuming, else the defaults; then the options given.
    Returns (config, checkpoint metadata or None)."""
    import dataclasses

    from avatars.style.checkpoint import read_style_record
    from avatars.style.training import StyleTrainConfig, config_of_checkpoint

    meta = None
    if out.is_file() and not args.no_resume:
        try:
            meta = read_style_record(out)
            base = dataclasses.asdict(config_of_checkpoint(out))
        except Exception as exc:
            raise Refused(f"{out} exists but is not a training checkpoint ({exc}); "
                               f"choose another -o, or --no-resume to overwrite it") from None
        base.pop("device", None)
        stored = {"model": base["model"], **base[base["model"]]}
        given = {"model": ("--model", args.model), "channels": ("--channels", tuple(args.channels or ()) or None),
                 "n_residual": ("--residual-blocks", args.residual_blocks), "norm": ("--norm", args.norm),
                 "scales": ("--scales", args.scales), "width": ("--width", args.width)}
        changed = [opt for k, (opt, v) in given.items() if v is not None and v != stored.get(k)]
        if changed:
            raise Refused(f"{out}: resuming keeps the checkpoint's network ({stored}); it cannot change "
                               f"{', '.join(changed)}: drop those options, or start over with --no-resume or another -o")
    else:
        if args.style is None:
            raise Refused("--style IMAGE is needed to start a new run"
                               + (f" ({out} is not there to resume)" if not out.is_file() else ""))
        model = args.model or "stylenet"
        base = {"style": args.style, "model": model}
        if model == "stylenet" and (args.scales is not None or args.width is not None):
            raise Refused("--scales/--width shape a TextureNet; add --model texturenet")
        if model == "texturenet" and (args.channels is not None or args.residual_blocks is not None):
            raise Refused("--channels/--residual-blocks shape a StyleNet, not a TextureNet")
        default = StyleTrainConfig(style=args.style, content_dir=".")
        if model == "stylenet":
            net = dataclasses.asdict(default.stylenet)
            net.update({k: v for k, v in (("channels", tuple(args.channels) if args.channels else None),
                                          ("n_residual", args.residual_blocks), ("norm", args.norm)) if v is not None})
            base["stylenet"] = net
        else:
            net = dataclasses.asdict(default.texturenet)
            net.update({k: v for k, v in (("scales", args.scales), ("width", args.width),
                                          ("norm", args.norm)) if v is not None})
            base["texturenet"] = net
        base["loss"] = dataclasses.asdict(default.loss)
    for option, name in _TRAIN_FIELDS.items():
        value = getattr(args, option)
        if value is None:
            continue
        if name.startswith("loss."):
            base["loss"][name[5:]] = value
        else:
            base[name] = value
    if args.fp32_vgg:
        base["loss"]["bf16"] = False
    if args.minutes is not None or args.steps is not None:  # the limits given replace the stored ones
        base["time_limit_s"] = None if args.minutes is None else args.minutes * 60
        base["steps"] = NO_STEP_LIMIT if args.steps is None else args.steps
    base["device"] = device_option(args.device)
    if args.content is None and meta is None and base["model"] == "stylenet":
        raise Refused("--content DIR (a folder of photos) is needed to train a stylizer; "
                           "without it, --model texturenet trains a texture generator from noise")
    try:
        return StyleTrainConfig(**base), meta
    except (TypeError, ValueError) as exc:
        raise Refused(str(exc)) from None


def _check_train_inputs(cfg) -> None:
    """Refused before training: a style picture that cannot be read or is too small at --style-size
    (the style layers pool it 4 times), a content folder without readable pictures."""
    from avatars.style.training import list_images
    from stream.image_files import ImageFileError, read_image

    with refusing(ImageFileError):
        read_image(cfg.style, max_side=cfg.style_size)
    if cfg.content_dir is not None:
        folder = Path(cfg.content_dir)
        if not folder.is_dir():
            raise Refused(f"{folder}: no such folder (--content takes a folder of photos)")
        try:
            files = list_images(folder)
        except FileNotFoundError as exc:
            raise Refused(str(exc)) from None
        for f in files:
            read_rgb(f)


def cmd_train_style(args: argparse.Namespace) -> int:
    from avatars.style.training import train_stylizer

    set_threads(args.threads)
    out = Path(args.output)
    if out.suffix != ".safetensors":
        if out.suffix:
            raise Refused(f"{out}: checkpoints are .safetensors files")
        out = out.with_name(out.name + ".safetensors")
    try:
        cfg, meta = _train_config(args, out)
        _check_train_inputs(cfg)
    except Refused as exc:
        if out.is_file() and not args.no_resume and (args.style is None or args.content is None):
            raise Refused(f"{exc} (paths stored in {out}; give --style/--content to point elsewhere)") from None
        raise
    if meta is not None:
        step, seconds = meta.get("step", 0), meta.get("seconds", 0.0)
        if step >= cfg.steps or (cfg.time_limit_s is not None and seconds >= cfg.time_limit_s):
            limit = f"--steps {cfg.steps}" if step >= cfg.steps else f"--minutes {cfg.time_limit_s / 60:g}"
            print(f"{out}: already trained {step} steps in {duration(seconds)}, which reaches {limit}; "
                  f"nothing to do (raise the limit to continue, or --no-resume to start over)")
            return 0
        log.info("resuming %s at step %d (%s trained)", out, step, duration(seconds))
    try:
        result = train_stylizer(cfg, out, resume=not args.no_resume, progress=not args.quiet)
    except (OSError, ValueError) as exc:
        log.error("training stopped: %s", exc)
        return Exit.FAILED
    samples = out.with_name(out.stem + "_samples")
    curve = out.with_name(out.stem + "_loss.png")
    print(f"checkpoint: {result.checkpoint}  ({cfg.model}, step {result.steps}, {duration(result.seconds)} trained)")
    print(f"samples:    {samples}/  (top row content, bottom row output)" if cfg.content_dir else f"samples:    {samples}/")
    if curve.is_file():
        print(f"loss curve: {curve}")
    if result.final_losses:  # the window the progress bar's losses are the mean of (training_loop.TrainingLog)
        window = min(result.steps - (meta or {}).get("step", 0), 50)
        print(f"final losses (mean of the last {window} steps, as the progress bar ended): "
              + "  ".join(f"{k} {v:.4g}" for k, v in result.final_losses.items()))
    return 0



# -- extract-frames ---------------------------------------------------------------------------

def cmd_extract_frames(args: argparse.Namespace) -> int:
    """Content frames for train-style from the clips of a folder, the evaluation clip kept out."""
    from avatars.style.content import ExtractConfig, extract_frames, list_videos

    src, out = Path(args.videos), Path(args.output)
    if not src.is_dir():
        raise Refused(f"{src}: no such folder (extract-frames takes a folder of videos)")
    videos = list_videos(src)
    if not videos:
        raise Refused(f"{src}: no video files in it")
    try:
        cfg = ExtractConfig(every_s=args.every, max_side=args.max_side,
                            **({} if args.hold_out is None else {"hold_out": tuple(args.hold_out)}))
    except ValueError as exc:
        raise Refused(str(exc)) from None
    result = extract_frames(videos, out, cfg)
    print(f"{out}: {len(result.frames)} frames from {len(result.clips)} clips ({', '.join(result.clips)}); "
          f"held out: {', '.join(result.held_out) or 'none'}")
    return 0


# -- people-frames ----------------------------------------------------------------------------

def cmd_people_frames(args: argparse.Namespace) -> int:
    """Content frames of people over varied scenes from an avatar dataset: its own frames (the
    mannequin's renders) and, with --avatar, an avatar's renders of the same poses."""
    import numpy as np

    from avatars.style.content import CompositeConfig, composite_people
    from avatars.style.training import list_images, load_image

    data = Path(args.data) / "frames.npz"
    if not data.is_file():
        raise Refused(f"{args.data}: not an avatar dataset (no frames.npz; make one with prepare-avatar)")
    if not Path(args.backgrounds).is_dir():
        raise Refused(f"{args.backgrounds}: no such folder of background photos")
    with refusing(FileNotFoundError):
        scenes = [(load_image(p, 640)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                  for p in list_images(args.backgrounds)]
    if args.count < 1:
        raise Refused("--count must be at least 1")
    with np.load(data) as d:
        n = len(d["rgb"])
        picked = np.unique(np.linspace(0, n - 1, min(args.count, n)).round().astype(int))
        rgb, mask, keypoints = d["rgb"][picked], d["mask"][picked] / 255.0, d["keypoints"][picked]
    stem = Path(args.data).name
    people = [(f"{stem}_{i:05d}", rgb[k], mask[k]) for k, i in enumerate(picked)]
    if args.avatar:
        from avatars.avatar.model import AvatarRenderer
        from avatars.core.weights import resolve_weights

        with refusing(FileNotFoundError, ValueError):
            renderer = AvatarRenderer.open(resolve_weights(args.avatar, "avatar"))
        for k, i in enumerate(picked):
            renderer.reset()
            r = renderer(keypoints[k], rgb.shape[1:3])
            people.append((f"{stem}_{Path(args.avatar).stem}_{i:05d}", r.rgb, r.mask))
    paths = composite_people(people, scenes, args.output, CompositeConfig(seed=args.seed))
    print(f"{args.output}: {len(paths)} frames ({len(picked)} poses of {stem}"
          f"{', ground truth and ' + args.avatar if args.avatar else ''}) over {len(scenes)} backgrounds")
    return Exit.OK



# -- ship-style -------------------------------------------------------------------------------

SHIPPED_RECORD = ("kind", "model", "train", "step", "seconds", "final_losses", "data")


def _shipped_name(name: str) -> str:
    """A new shipped style's name: a plain identifier, not another family's (names resolve by family)."""
    from avatars.core.weights import available

    if not name.isidentifier() or name != name.lower():
        raise Refused(f"style name {name!r}: use lower-case letters, digits and _ (it is also a file name)")
    if name in available("avatar"):
        raise Refused(f"{name!r} is a shipped avatar's name; give the style another one")
    return name


def _content_summary(names: list[str], listed: int = 20) -> str:
    """The content images by source (the part of the name before its last _), then the first few by name."""
    from collections import Counter

    def source(name: str) -> str:
        return name.rsplit("_", 1)[0]

    groups = Counter(map(source, names))
    head = ", ".join(f"{k} ({v})" for k, v in sorted(groups.items()) if v > 1)
    singles = sorted(n for n in names if groups[source(n)] == 1)
    return "; ".join(x for x in (head, ", ".join(singles[:listed]) + (" ..." if len(singles) > listed else "")) if x)


def ship_config(args: argparse.Namespace):
    """The StyleTrainConfig of a ship-style command line (its defaults: the shipped styles' recipe)."""
    from avatars.style.losses import LossConfig
    from avatars.style.stylenet import StyleNetConfig
    from avatars.style.training import StyleTrainConfig

    with refusing(ValueError, TypeError):
        return StyleTrainConfig(style=args.style, content_dir=args.content, steps=args.steps, batch_size=args.batch,
                                image_size=args.size, time_limit_s=args.minutes * 60,
                                lr_final=args.lr_final, stylenet=StyleNetConfig(tuple(args.channels), args.residual_blocks),
                                loss=LossConfig(bf16=None, style_weight=args.style_weight,
                                                content_layers=tuple(args.content_layers)),
                                device=device_option(args.device))


def cmd_ship_style(args: argparse.Namespace) -> int:
    """Train (resumably) in RUN_DIR, then export weights, record and a how-it-was-made note."""
    import dataclasses
    import json

    from avatars.core.checkpoint import load_state, save_checkpoint
    from avatars.core.weights import WEIGHTS
    from avatars.style.checkpoint import read_style_record
    from avatars.style.training import list_images, train_stylizer

    name = _shipped_name(args.name)
    cfg = ship_config(args)
    _check_train_inputs(cfg)
    set_threads(args.threads)
    run = Path(args.run_dir) / f"{name}.safetensors"
    result = train_stylizer(cfg, run, progress=not args.quiet)
    record = read_style_record(result.checkpoint)
    shipped = Path(args.weights_dir or WEIGHTS / "style") / f"{name}.safetensors"
    save_checkpoint(shipped, load_state(result.checkpoint), {k: record[k] for k in SHIPPED_RECORD})
    content = [f.name for f in list_images(args.content)]
    params = sum(t.numel() for t in load_state(shipped).values())
    shipped.with_suffix(".md").write_text(
        f"# Shipped style: {name}\n\n"
        f"- style image: `{Path(args.style).name}` (sha256 {record['data']['style']['sha256'][:16]}...)\n"
        f"- command: `python -m launch ship-style {Path(args.style).name} {name} --minutes {args.minutes:g} "
        f"--steps {args.steps} --batch {args.batch} --channels {' '.join(map(str, args.channels))} "
        f"--residual-blocks {args.residual_blocks} --content-layers {' '.join(args.content_layers)} "
        f"--lr-final {args.lr_final:g} --style-weight {args.style_weight:g} --size {args.size} "
        f"--threads {args.threads}` on {cfg.device}\n"
        f"- content set ({len(content)} images of `{Path(args.content).name}`, sha256 "
        f"{record['data']['content']['sha256'][:16]}..., random {cfg.image_size}x{cfg.image_size} crops + flips): "
        + _content_summary(content) + "\n"
        f"- model: StyleNet-IN {dataclasses.asdict(cfg.stylenet)}, {params} parameters\n"
        f"- training: {result.steps} steps of batch {cfg.batch_size}, Adam lr {cfg.lr}"
        + (f" cosine-decayed to {cfg.lr_final:g}" if cfg.lr_final is not None else "") + "; "
        f"{result.seconds / 60:.1f} min of training compute\n"
        f"- final losses (mean of the last 50 steps, weighted): "
        + json.dumps({k: round(v, 4) for k, v in result.final_losses.items()}) + "\n"
        f"- loss config: {json.dumps(dataclasses.asdict(cfg.loss))}\n")
    print(f"{shipped}: {name}, {result.steps} steps, {duration(result.seconds)} trained "
          f"(record {shipped.with_suffix('.json').name}, note {shipped.with_suffix('.md').name}; "
          f"resumable run {run})")
    return Exit.OK


# -- the parsers ------------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the command line."""
    p = sub.add_parser("train-style", help="train a feed-forward stylizer (or texture generator) from a style image",
                       description="Train (or resume) a StyleNet-IN / TextureNet with perceptual losses. "
                                   "Options left out take the checkpoint's values when resuming, else the defaults.")
    p.add_argument("--style", metavar="IMAGE", help="style image (needed for a new run)")
    p.add_argument("--content", metavar="DIR", help="folder of content photos (a handful is enough); "
                   "without it, --model texturenet learns textures from noise")
    p.add_argument("-o", "--output", required=True, metavar="CKPT", help="checkpoint, .safetensors (resumed if it exists)")
    p.add_argument("--model", choices=("stylenet", "texturenet"), help="network (default stylenet)")
    p.add_argument("--size", type=int, metavar="PX", help="training crop size (default 256)")
    p.add_argument("--style-size", type=int, metavar="PX", help="longer side the style image is scaled to (default 320)")
    limits = p.add_argument_group("how long (totals: resuming counts what is already trained)")
    limits.add_argument("--minutes", type=float, help="stop after this much training time")
    limits.add_argument("--steps", type=int, help="stop after this many steps (default 2000; none with --minutes alone)")
    p.add_argument("--batch", type=int, help="images per step (default 2)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3)")
    p.add_argument("--lr-final", type=float, metavar="LR", help="cosine decay of the learning rate to LR by the end "
                   "of the run (its --steps or --minutes); default: constant")
    p.add_argument("--seed", type=int, help="seed of initialisation and crops (default 0)")
    w = p.add_argument_group("loss weights")
    w.add_argument("--style-weight", type=float, help="default 5")
    w.add_argument("--content-weight", type=float, help="default 1")
    w.add_argument("--content-layers", nargs="+", metavar="LAYER", help="VGG-19 content layers (default relu4_2; "
                   "relu2_2 relu4_2 keeps faces, hands and small structure)")
    w.add_argument("--tv-weight", type=float, help="total variation (default 1)")
    w.add_argument("--diversity", type=float, metavar="LAMBDA",
                   help="diversity term of Improved Texture Networks (default 0; needs --batch >= 2)")
    w.add_argument("--fp32-vgg", action="store_true", help="run VGG-19 in fp32 (default: bf16 autocast where the hardware has native bf16)")
    s = p.add_argument_group("network shape (new runs only)")
    s.add_argument("--channels", type=int, nargs=3, metavar="C", help="StyleNet widths (default 16 32 64)")
    s.add_argument("--residual-blocks", type=int, metavar="N", help="StyleNet residual blocks (default 5)")
    s.add_argument("--norm", choices=("instance", "batch"),
                   help="normalisation (default instance; TextureNet synthesis: batch)")
    s.add_argument("--scales", type=int, metavar="K", help="TextureNet scales (default 6 stylizing, 5 synthesising)")
    s.add_argument("--width", type=int, help="TextureNet channels per scale (default 8)")
    p.add_argument("--repeat-content", type=int, metavar="R", help="TextureNet: each crop R times per batch with "
                   "its own noise (default: the whole batch with --diversity, else 1)")
    p.add_argument("--sample-every", type=int, metavar="STEPS", help="sample grid every so many steps (default 100)")
    p.add_argument("--checkpoint-every", type=int, metavar="STEPS", help="checkpoint every so many steps (default 100)")
    p.add_argument("--no-resume", action="store_true", help="start over even if the checkpoint exists")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch; 0 = torch's default")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train_style)

    p = sub.add_parser("ship-style", help="train a style and export it to the shipped weights",
                       description="Train a StyleNet-IN on STYLE_IMAGE (resumable: the run's checkpoint stays in "
                                   "--run-dir), then write the shipped weights NAME.safetensors, its record "
                                   "(.json) and a note of how it was made (.md) to the style weights. The "
                                   "defaults are the recipe the shipped styles were made with (their .md and .json).")
    p.add_argument("style", metavar="STYLE_IMAGE")
    p.add_argument("name", metavar="NAME", help="the shipped name (what --set style.model=NAME and stylize take)")
    p.add_argument("--content", default=str(media_root() / "content"), metavar="DIR",
                   help="folder of content photos (default: the shared media's content/)")
    p.add_argument("--minutes", type=float, default=85.0, help="training time limit (default 85)")
    p.add_argument("--steps", type=int, default=100_000, help="step limit (default 100000: the time limit decides)")
    p.add_argument("--batch", type=int, default=1, help="images per step (default 1)")
    p.add_argument("--size", type=int, default=256, metavar="PX", help="training crop size (default 256)")
    p.add_argument("--channels", type=int, nargs=3, default=[12, 24, 48], metavar="C",
                   help="StyleNet widths (default 12 24 48)")
    p.add_argument("--residual-blocks", type=int, default=4, metavar="N", help="StyleNet residual blocks (default 4)")
    p.add_argument("--content-layers", nargs="+", default=["relu2_2", "relu4_2"], metavar="LAYER",
                   help="VGG-19 content layers (default relu2_2 relu4_2)")
    p.add_argument("--lr-final", type=float, default=1e-4, metavar="LR",
                   help="cosine decay of the learning rate (1e-3) to LR by the run's end (default 1e-4; "
                        "1e-3: constant)")
    p.add_argument("--style-weight", type=float, default=5.0, help="default 5")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1: steady timing)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--run-dir", default="runs/styles", metavar="DIR", help="the resumable training run (runs/styles)")
    p.add_argument("--weights-dir", metavar="DIR", help="where the shipped files go (default: the package's style weights)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_ship_style)

    p = sub.add_parser("extract-frames", help="content frames for train-style from a folder of videos",
                       description="Samples every clip of a folder (not its sub-folders) at a fixed interval and "
                                   "writes JPEGs for train-style --content; the clip the stylizers are "
                                   "evaluated on (hybrik_taiji.mp4) is kept out.")
    p.add_argument("videos", metavar="DIR", help="folder of video files, e.g. ../shared/media/video")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the frames")
    p.add_argument("--every", type=float, default=0.5, metavar="SECONDS", help="one frame per SECONDS (default 0.5)")
    p.add_argument("--max-side", type=int, default=512, metavar="PX", help="longer side of the frames (default 512)")
    p.add_argument("--hold-out", nargs="*", metavar="CLIP", help="clip file names to keep out (default hybrik_taiji.mp4)")
    p.set_defaults(func=cmd_extract_frames)

    p = sub.add_parser("people-frames", help="content frames of people (mannequin, avatar) over varied backgrounds",
                       description="Takes COUNT evenly spaced frames of an avatar dataset (prepare-avatar), each "
                                   "over a random crop of a random background photo, and with --avatar also that "
                                   "avatar's render of the same pose: content for train-style that looks like "
                                   "what a stylizer after the avatar node sees.")
    p.add_argument("data", metavar="DATA", help="avatar dataset folder (prepare-avatar --mannequin or a video's)")
    p.add_argument("--backgrounds", required=True, metavar="DIR", help="folder of background photos")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the frames")
    p.add_argument("--avatar", metavar="CKPT", help="also the renders of this avatar (file or shipped name)")
    p.add_argument("--count", type=int, default=60, help="poses taken (default 60)")
    p.add_argument("--seed", type=int, default=0, help="background choice, crop and flip (default 0)")
    p.set_defaults(func=cmd_people_frames)
