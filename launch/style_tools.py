"""Stylizer commands of the command line (train-style, stylize, synthesize-texture): thin wrappers over `avatars`.

- ``train-style``: `avatars.style.training.train_stylizer` (resumable safetensors checkpoints,
  sample grids and a loss curve next to the checkpoint). Resuming reads the run's config from the
  checkpoint, so ``train-style -o CKPT --minutes 120`` continues a run with nothing else repeated;
  options given on the command line replace the stored ones (except the network's shape).
- ``stylize``: an image through `avatars.style.stylize.FrameStylizer` in this process; a video through
  the shipped offline graph ``stylize_video`` (rerender with a stylize node: lossless, audio kept,
  progress bar), exit code from the supervisor.
- ``synthesize-texture``: samples of a noise-only TextureNet, or Gatys optimisation from a style image.

- ``ship-style``: trains a style and exports it to the shipped weights (avatars/weights/style/).

Bad input (missing or unreadable files, a checkpoint that is not a stylizer) is refused
(`launch.command`): ``error: ...`` on stderr, exit code 2.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from launch.command import (NO_STEP_LIMIT, Exit, Refused, device_option, duration, refuse_overwrite, refusing,
                            set_threads)
from launch.media import media_root
from launch.shipped import graph_file
from launch.universal_tools import DEFAULT_DECODER
from stream.image_files import (MAX_PIXELS, MIN_SIDE, WRITE_FORMATS, ImageFileError, format_problem, picture_count,
                                read_image, write_image)

log = logging.getLogger(__name__)
VIDEO_GRAPH = "stylize_video"                # the shipped graph that stylizes a video file
VIDEO_OUTPUTS = (".mp4", ".mkv", ".mov")     # what the graph's `mp4` sink writes
DEFAULT_MAX_SIDE = 2048                      # stylize: an image's longer side by default (~1.7 GB peak on a CPU)


def _size(text: str) -> tuple[int, int]:
    """'256' -> (256, 256); '320x240' -> (H, W) = (240, 320)."""
    try:
        w, _, h = text.lower().partition("x")
        size = (int(h or w), int(w))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or WxH, got {text!r}") from None
    if not all(8 <= s <= 8192 for s in size):
        raise argparse.ArgumentTypeError(f"sides must be in 8..8192, got {text!r}")
    return size


def _writable_image(path: Path) -> None:
    if problem := format_problem(path):
        raise Refused(problem)


def _save_image(array, path: Path, alpha=None) -> bool:
    """Write atomically (`stream.image_files`); False, logged, where it could not (nothing left under the name)."""
    try:
        write_image(path, array, alpha)
    except ImageFileError as exc:
        log.error("%s", exc)
        return False
    return True


def _read_rgb(path: Path):
    """An image file as an (H, W, 3) uint8 RGB array (`stream.image_files`: upright, 8-bit, transparency over white)."""
    with refusing(ImageFileError):
        return read_image(path, min_side=1).rgb


def _read_mask(path: Path, size: tuple[int, int]):
    """A mask image (white where the person is) as (H, W) uint8, scaled to ``size`` (H, W) if it differs;
    transparent parts are not the person (composited over black)."""
    import numpy as np
    from PIL import Image

    h, w = size
    try:
        rgb = read_image(path, max_side=max(size), min_side=1, backdrop=0).rgb
    except ImageFileError as exc:
        raise Refused(f"{exc} (--mask takes an image, white where the person is)") from None
    mask = Image.fromarray(rgb).convert("L")
    return np.array(mask if mask.size == (w, h) else mask.resize((w, h), Image.BILINEAR))


def _load_stylizer(name_or_path: str, device: str = "cpu"):
    """(model, checkpoint path) from a checkpoint file or a shipped style name."""
    from avatars.core.checkpoint import CheckpointError
    from avatars.core.weights import resolve_weights
    from avatars.style.checkpoint import load_stylizer

    try:
        path = resolve_weights(name_or_path, "style")
        return load_stylizer(path, device), path
    except (FileNotFoundError, CheckpointError) as exc:  # says what the file is ("... is a textured avatar, not a style")
        raise Refused(str(exc)) from None
    except Exception as exc:  # shape errors: a record that does not match its tensors
        raise Refused(f"{path}: not a usable stylizer checkpoint ({type(exc).__name__}: {exc})") from None


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
    from avatars.style.training import list_images

    _read_rgb(Path(cfg.style))
    if cfg.content_dir is not None:
        folder = Path(cfg.content_dir)
        if not folder.is_dir():
            raise Refused(f"{folder}: no such folder (--content takes a folder of photos)")
        try:
            files = list_images(folder)
        except FileNotFoundError as exc:
            raise Refused(str(exc)) from None
        for f in files:
            _read_rgb(f)


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
    if result.final_losses:
        print("final losses (mean of the last steps): "
              + "  ".join(f"{k} {v:.4g}" for k, v in result.final_losses.items()))
    return 0


# -- stylize ----------------------------------------------------------------------------------

def _input_kind(path: Path) -> str:
    """'image' or 'video' (an animated GIF is a video); Refused for anything else."""
    if path.is_dir():
        raise Refused(f"{path}: is a folder, not an image or video file")
    if not path.is_file():
        raise Refused(f"{path}: no such file")
    frames = picture_count(path)
    if frames is not None:
        return "video" if frames > 1 else "image"
    import av

    try:
        with av.open(str(path)) as container:
            if container.streams.video:
                return "video"
    except (av.error.FFmpegError, OSError, ValueError):
        pass
    raise Refused(f"{path}: not an image or video (neither Pillow nor FFmpeg reads a picture in it)")


def _check_output(src: Path, out: Path, overwrite: bool) -> None:
    """Refused before any work: an output that is the input (through any link), a folder, a file that
    exists (unless --overwrite), or in a folder where no file can be made."""
    from stream.preflight import folder_problem

    refuse_overwrite([str(src)], str(out))
    if out.is_dir():
        raise Refused(f"{out}: is a folder; give the output file's name")
    if out.is_file() and not overwrite:
        raise Refused(f"{out}: exists; add --overwrite to replace it, or choose another path")
    if problem := folder_problem(out):
        raise Refused(problem)


def cmd_stylize(args: argparse.Namespace) -> int:
    if args.style_image and args.checkpoint:
        raise Refused(f"give a style (CKPT: {args.checkpoint}) or --style-image PAINTING, not both")
    if not args.style_image and not args.checkpoint:
        raise Refused("give a style (CKPT, a shipped style name) or --style-image PAINTING")
    src, out = Path(args.input), Path(args.output)
    kind = _input_kind(src)
    _check_output(src, out, args.overwrite)
    if kind == "video":
        return _stylize_video(args, src, out)
    return _stylize_image(args, src, out)


def _stylize_image(args: argparse.Namespace, src: Path, out: Path) -> int:
    """Stylize the picture (scaled to --max-side), put its alpha back (or flatten it onto white for JPEG/BMP)."""
    _writable_image(out)
    max_side = DEFAULT_MAX_SIDE if args.max_side is None else args.max_side
    if max_side < 0:
        raise Refused(f"--max-side {max_side}: give a number of pixels, or 0 for no bound")
    if args.style_image:
        from launch import universal_tools

        with refusing(ImageFileError):
            picture = read_image(src, max_side=max_side, min_side=MIN_SIDE)
        mask = _read_mask(Path(args.mask), picture.rgb.shape[:2]) if args.mask else None
        result, what = universal_tools.stylize_picture(args, picture.rgb, mask)
    else:
        result, what, picture = _stylize_with_model(args, src, max_side)
    if not _save_image(result, out, picture.alpha):
        return Exit.FAILED
    scaled = f" (scaled from {picture.source_size[0]}x{picture.source_size[1]} by --max-side {max_side})" \
        if picture.scaled else ""
    kept = "" if picture.alpha is None else \
        (", alpha kept" if WRITE_FORMATS[out.suffix.lower()] else ", transparency flattened onto white")
    print(f"{out}: {result.shape[1]}x{result.shape[0]}{scaled}{kept}, {what}")
    return Exit.OK


def _stylize_with_model(args: argparse.Namespace, src: Path, max_side: int):
    """(stylized frame, what did it, the picture read) with a trained stylizer."""
    from avatars.style.stylize import FastPathConfig, FrameStylizer

    set_threads(args.threads)
    device = device_option(args.device)
    model, path = _load_stylizer(args.checkpoint, device)
    with refusing(ImageFileError):  # the network's coarsest stage needs more than `multiple` pixels a side
        picture = read_image(src, max_side=max_side, min_side=max(MIN_SIDE, model.multiple + 1))
    frame = picture.rgb
    mask = _read_mask(Path(args.mask), frame.shape[:2]) if args.mask else None
    cfg = FastPathConfig(bf16=False if args.fp32 else None, channels_last=not args.fp32, compile=args.compile,
                         noise_scale=args.noise_scale, seed=args.seed, region=args.region if args.mask else "frame")
    start = time.perf_counter()
    stylizer = FrameStylizer(model, device, cfg)
    result = stylizer(frame, mask)
    seconds = time.perf_counter() - start
    return result, (f"{path.stem} ({'bf16' if stylizer.bf16 else 'fp32'}{'' if args.fp32 else ' fast path'}, "
                    f"{device}) in {seconds:.2f} s"), picture


def _stylize_video(args: argparse.Namespace, src: Path, out: Path) -> int:
    from stream.graph import GraphError, load_graph
    from stream.supervisor import Supervisor

    if out.suffix.lower() not in VIDEO_OUTPUTS:
        raise Refused(f"{src} is a video, so {out} must be one too ({', '.join(VIDEO_OUTPUTS)})")
    if args.max_side is not None:
        raise Refused("--max-side applies to images; a video is stylized at its own frame size")
    if args.mask:
        raise Refused("--mask applies to images; in a graph the stylize node takes the mask a message carries "
                      "(the pose node's segmentation, the avatar's) and its `region` parameter")
    if args.device != "auto":
        raise Refused(f"--device applies to images; videos run the graph {VIDEO_GRAPH}, whose stylizer "
                      f"picks the GPU where there is one (device: auto)")
    if args.style_image:
        from launch import universal_tools

        style = universal_tools.video_style_params(args)  # a bad painting or decoder fails here, not in a node
        made_with = Path(args.style_image).name
    else:
        _, checkpoint = _load_stylizer(args.checkpoint)  # a bad checkpoint fails here, not in a node process
        style = {"model": str(checkpoint.resolve()), "bf16": False if args.fp32 else None,
                 "channels_last": not args.fp32, "compile": args.compile, "noise_scale": args.noise_scale,
                 "seed": args.seed, "smoothing": args.smoothing, "smoothing_weight": args.smoothing_weight,
                 "threads": args.threads}
        made_with = checkpoint.stem
    sink = {"path": str(out.resolve()), "crf": args.crf, "preset": args.preset}
    overrides = {"source": {"path": str(src.resolve())}, "style": style, "sink": sink}
    try:
        graph = load_graph(graph_file(VIDEO_GRAPH), overrides)
        supervisor = Supervisor(graph, overrides, quiet=args.quiet, overwrite=args.overwrite)  # checks its files first
    except GraphError as exc:
        raise Refused(str(exc)) from None
    code = supervisor.run()
    if code == Exit.OK:
        print(f"{out}: {src.name} stylized with {made_with} (via {VIDEO_GRAPH}.yaml)")
    elif code in (Exit.INTERRUPTED, Exit.TERMINATED):
        log.error("stylizing %s was stopped (%s) before its end; %s was not written",
                  src, "Ctrl-C" if code == Exit.INTERRUPTED else "SIGTERM", out)
    else:
        log.error("stylizing %s failed (exit code %d); see the node errors above", src, code)
    return code


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


# -- synthesize-texture -----------------------------------------------------------------------

def _texture_outputs(output: Path, seeds: list[int]) -> list[Path]:
    """One texture: OUTPUT is the file. Several: OUTPUT_NNN.ext next to an OUTPUT with an image
    extension, else texture_NNN.png in the folder OUTPUT (NNN = the seed)."""
    if output.suffix:
        _writable_image(output)
        if len(seeds) == 1:
            return [output]
        return [output.with_name(f"{output.stem}_{s:03d}{output.suffix}") for s in seeds]
    return [output / f"texture_{s:03d}.png" for s in seeds]


def cmd_synthesize_texture(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    seeds = list(range(args.seed, args.seed + args.n))
    if args.n < 1 or args.iterations < 1:
        raise Refused("-n and --iterations must be at least 1")
    paths = _texture_outputs(Path(args.output), seeds)
    if args.model:
        images, how = _textures_from_model(args), f"sampled from {Path(args.model).name}"
    else:
        images, how = _textures_by_optimisation(args, seeds)
    for image, path in zip(images, paths):
        if not _save_image(image, path):
            return Exit.FAILED
    h, w = args.size
    where = paths[0] if len(paths) == 1 else f"{paths[0].parent}/ ({len(paths)} files: {paths[0].name} ...)"
    print(f"{where}: {w}x{h} texture{'s' if len(paths) > 1 else ''} {how}")
    return 0


def _textures_from_model(args: argparse.Namespace):
    from avatars.style.stylize import sample_textures
    from avatars.style.texturenet import TextureNet

    model, path = _load_stylizer(args.model, device_option(args.device))
    if not isinstance(model, TextureNet):
        raise Refused(f"{path}: a {type(model).__name__} stylizes images; --model needs a TextureNet "
                           f"trained without --content (train-style --model texturenet)")
    try:
        return sample_textures(model, args.size, args.n, args.seed, args.noise_scale)
    except ValueError as exc:
        raise Refused(f"{path}: {exc}") from None


def _textures_by_optimisation(args: argparse.Namespace, seeds: list[int]):
    from avatars.style.gatys import GatysConfig, synthesize_texture
    from avatars.style.losses import LossConfig, PerceptualLoss
    from avatars.style.training import load_image
    from avatars.style.stylize import to_uint8

    _read_rgb(Path(args.style))  # a clear error for a missing or unreadable style image
    device = device_option(args.device)
    style = load_image(args.style, args.style_size).to(device)
    loss_fn = PerceptualLoss(LossConfig(tv_weight=args.tv_weight), style).to(device)
    cfg = GatysConfig(steps=args.iterations, optimizer=args.optimizer, lr=args.lr,
                      time_limit_s=None if args.minutes is None else args.minutes * 60)
    images, last = [], None
    for seed in seeds:
        result = synthesize_texture(loss_fn, args.size, cfg, seed)
        images += to_uint8(result.image)
        last = result.history[-1]
        log.info("seed %d: %d %s iterations, style loss %.4g -> %.4g in %.1f s", seed, len(result.history),
                 args.optimizer, result.history[0][1], last[1], last[0])
    return images, f"by {args.optimizer} optimisation from {Path(args.style).name}"


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


def cmd_ship_style(args: argparse.Namespace) -> int:
    """Train (resumably) in RUN_DIR, then export weights, record and a how-it-was-made note."""
    import dataclasses
    import json

    from avatars.core.checkpoint import load_state, save_checkpoint
    from avatars.core.weights import WEIGHTS
    from avatars.style.checkpoint import read_style_record
    from avatars.style.losses import LossConfig
    from avatars.style.stylenet import StyleNetConfig
    from avatars.style.training import StyleTrainConfig, list_images, train_stylizer

    name = _shipped_name(args.name)
    with refusing(ValueError, TypeError):
        cfg = StyleTrainConfig(style=args.style, content_dir=args.content, steps=args.steps, batch_size=args.batch,
                               image_size=args.size, time_limit_s=args.minutes * 60,
                               lr_final=args.lr_final, stylenet=StyleNetConfig(tuple(args.channels), args.residual_blocks),
                               loss=LossConfig(bf16=None, style_weight=args.style_weight,
                                               content_layers=tuple(args.content_layers)),
                               device=device_option(args.device))
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
        + (f"--lr-final {args.lr_final:g} " if args.lr_final is not None else "") +
        f"--style-weight {args.style_weight:g} --size {args.size} --threads {args.threads}` on {cfg.device}\n"
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
    from avatars.core.weights import available

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

    p = sub.add_parser("stylize", help="stylize an image, or a video through the offline graph",
                       description="An image is stylized in this process; a video goes through "
                                   "the shipped graph stylize_video (every frame kept, audio kept, progress bar).")
    p.add_argument("checkpoint", metavar="CKPT", nargs="?", help="checkpoint file, or a shipped style ("
                   + ", ".join(available("style")) + "); left out with --style-image")
    p.add_argument("input", metavar="INPUT", help="image, or video file")
    p.add_argument("output", metavar="OUTPUT", help="image (.png, .jpg ...) for an image; .mp4/.mkv/.mov for a video")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists (otherwise refused)")
    p.add_argument("--max-side", "--size", dest="max_side", type=int, metavar="PX",
                   help=f"image: scale it down first (before decoding, from its header) so its longer side is "
                        f"at most PX (default {DEFAULT_MAX_SIDE}; 0 = no bound, up to "
                        f"{MAX_PIXELS // 1_000_000} megapixels decoded)")
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--fast", dest="fp32", action="store_false", help="channels-last + bf16 autocast where native (default)")
    speed.add_argument("--fp32", dest="fp32", action="store_true", help="plain fp32 (the reference)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (slow first frame)")
    p.add_argument("--mask", metavar="MASK", help="image: a mask, white where the person is; only --region is "
                   "painted, with the look of that region alone")
    p.add_argument("--region", choices=("person", "background"), default="person",
                   help="with --mask: what is painted (default person); the rest keeps the input")
    p.add_argument("--smoothing", choices=("none", "ema", "flow"), default="none",
                   help="video: temporal smoothing against flicker (flow: along the optical flow)")
    p.add_argument("--smoothing-weight", type=float, default=0.5, help="video: share of the previous output kept")
    p.add_argument("--noise-scale", type=float, default=1.0, help="TextureNet stylizers: style (high) vs content (low)")
    p.add_argument("--seed", type=int, default=0, help="TextureNet stylizers: the fixed noise")
    p.add_argument("--crf", type=int, default=18, help="video: x264 quality (lower is better)")
    p.add_argument("--preset", default="veryfast", help="video: x264 preset")
    p.add_argument("--device", default="auto", help="image: cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch; 0 = torch's default")
    p.add_argument("--quiet", action="store_true", help="video: no progress bar or final report")
    universal = p.add_argument_group("any painting (universal style transfer: VGG-19 features, a transform, "
                                     "a decoder trained only to reconstruct; no training per painting)")
    universal.add_argument("--style-image", metavar="PAINTING", help="stylize after this picture instead of CKPT")
    universal.add_argument("--method", choices=("wct", "adain"), default="wct",
                           help="wct: the painting's feature covariance (default); adain: its per-channel mean and spread")
    universal.add_argument("--alpha", type=float, default=1.0, help="share of the painting's statistics (default 1; "
                           "0 keeps the content)")
    universal.add_argument("--decoder", default=DEFAULT_DECODER, metavar="CKPT",
                           help=f"decoder checkpoint, or a shipped one (default {DEFAULT_DECODER}; train-decoder makes one)")
    p.set_defaults(func=cmd_stylize, fp32=False)

    p = sub.add_parser("ship-style", help="train a style and export it to the shipped weights",
                       description="Train a StyleNet-IN on STYLE_IMAGE (resumable: the run's checkpoint stays in "
                                   "--run-dir), then write the shipped weights NAME.safetensors, its record "
                                   "(.json) and a note of how it was made (.md) to the style weights.")
    p.add_argument("style", metavar="STYLE_IMAGE")
    p.add_argument("name", metavar="NAME", help="the shipped name (what --set style.model=NAME and stylize take)")
    p.add_argument("--content", default=str(media_root() / "content"), metavar="DIR",
                   help="folder of content photos (default: the shared media's content/)")
    p.add_argument("--minutes", type=float, default=55.0, help="training time limit (default 55)")
    p.add_argument("--steps", type=int, default=4000, help="step limit (default 4000)")
    p.add_argument("--batch", type=int, default=1, help="images per step (default 1)")
    p.add_argument("--size", type=int, default=256, metavar="PX", help="training crop size (default 256)")
    p.add_argument("--channels", type=int, nargs=3, default=(16, 32, 64), metavar="C", help="StyleNet widths")
    p.add_argument("--residual-blocks", type=int, default=5, metavar="N", help="StyleNet residual blocks (default 5)")
    p.add_argument("--content-layers", nargs="+", default=["relu4_2"], metavar="LAYER",
                   help="VGG-19 content layers (default relu4_2)")
    p.add_argument("--lr-final", type=float, metavar="LR", help="cosine decay of the learning rate to LR (default: constant)")
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

    p = sub.add_parser("synthesize-texture", help="texture images from a TextureNet or by Gatys optimisation",
                       description="Either sample a noise-only TextureNet (--model) or optimise pixels "
                                   "against a style image's Gram matrices (--style).")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="CKPT", help="a TextureNet trained without content (train-style --model texturenet)")
    source.add_argument("--style", metavar="IMAGE", help="optimise from noise to match this image's style")
    p.add_argument("-o", "--output", required=True, help="image file; a folder (or FILE_NNN.png names) for several")
    p.add_argument("-n", type=int, default=1, help="how many textures (seeds SEED, SEED+1, ...)")
    p.add_argument("--size", type=_size, default=(256, 256), metavar="N|WxH", help="texture size (default 256)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--noise-scale", type=float, default=1.0, help="--model: noise amplitude")
    p.add_argument("--iterations", type=int, default=200, help="--style: optimiser iterations (default 200)")
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs", help="--style: optimiser")
    p.add_argument("--lr", type=float, help="--style: step size (default 1 for L-BFGS, 0.02 for Adam)")
    p.add_argument("--minutes", type=float, help="--style: time limit per texture")
    p.add_argument("--style-size", type=int, default=320, metavar="PX", help="--style: longer side of the style image")
    p.add_argument("--tv-weight", type=float, default=0.0, help="--style: total-variation weight (default 0)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch; 0 = torch's default")
    p.set_defaults(func=cmd_synthesize_texture)
