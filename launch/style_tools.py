"""Stylizing commands of the command line (stylize, synthesize-texture): thin wrappers over `avatars.style`.

- ``stylize``: an image through `avatars.style.stylize.FrameStylizer` in this process; a video through
  the shipped offline graph ``stylize_video`` (rerender with a stylize node: lossless, audio kept,
  progress bar), exit code from the supervisor. ``--style-image PAINTING`` stylizes after any picture
  (`launch.universal_tools`).
- ``synthesize-texture``: samples of a noise-only TextureNet, or Gatys optimisation from a style image.

The style commands come in one module per family: this one (stylizing), `launch.style_training`
(train-style, ship-style and their content frames), `launch.universal_tools` (universal style transfer).

Bad input (missing or unreadable files, a checkpoint that is not a stylizer) is refused
(`launch.command`): ``error: ...`` on stderr, exit code 2.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from launch.command import Exit, Refused, device_option, refuse_overwrite, refusing, set_threads
from launch.shipped import graph_file
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


def read_rgb(path: Path):
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


def load_style_model(name_or_path: str, device: str = "cpu"):
    """(model, checkpoint path) from a checkpoint file or a shipped style name; Refused saying what is wrong
    otherwise (the one place the style commands open a per-style network)."""
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
    model, path = load_style_model(args.checkpoint, device)
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
        _, checkpoint = load_style_model(args.checkpoint)  # a bad checkpoint fails here, not in a node process
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

    model, path = load_style_model(args.model, device_option(args.device))
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

    read_rgb(Path(args.style))  # a clear error for a missing or unreadable style image
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

# -- the parsers ------------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the command line."""
    from avatars.core.weights import available

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
    universal = p.add_argument_group("any painting (universal style transfer: an encoder, a transform, decoders "
                                     "trained only to reconstruct; no training per painting)")
    universal.add_argument("--style-image", metavar="PAINTING", help="stylize after this picture instead of CKPT")
    universal.add_argument("--method", choices=("fast", "wct", "adain"), default="fast",
                           help="fast: the compact encoder/decoders distilled from VGG-19 (default, live on a CPU); "
                                "wct: VGG-19 and the painting's feature covariance; adain: VGG-19 and its per-channel "
                                "mean and spread")
    universal.add_argument("--alpha", type=float, default=1.0, help="share of the painting's statistics (default 1; "
                           "0 keeps the content)")
    universal.add_argument("--levels", nargs="+", metavar="LEVEL", choices=("relu1_1", "relu2_1", "relu3_1"),
                           help="the cascade's levels (default: every level the decoder has)")
    universal.add_argument("--decoder", default="", metavar="CKPT",
                           help="encoder/decoder checkpoint, or a shipped one (default: the method's own, "
                                "compact_universal for fast, vgg_relu3_1 otherwise; train-decoder and "
                                "train-compact make them)")
    p.set_defaults(func=cmd_stylize, fp32=False)

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
