"""``stylize-avatar AVATAR (STYLE | --style-image PAINTING) -o NAME``: an avatar whose textures are painted once.

The library does the work (``avatars.avatar.stylize_textures``): the texels the avatar samples are
found over mannequin poses, the rest filled from them, the textures painted in one atlas by a
shipped per-style StyleNet or by the universal stylizer on any painting, and stored with the
source's generator as a new avatar in the shipped format (network fp16, textures 8-bit). NAME is
a name (stored in the user's avatar folder, where ``--set avatar.model=NAME`` finds it, as
``make-avatar`` stores) or a ``.safetensors`` path.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from launch.command import Exit, Refused, refuse_overwrite, refusing, set_threads
from launch.make_avatar import NAME
from launch.style_tools import load_style_model
from launch.universal_tools import STYLE_READ_SIDE, read_painting

DEFAULT_DECODER = "vgg_relu3_1"    # the shipped VGG-19 decoder: the universal stylizer's textures are painted once,
                                   # so its quality, not the compact pair's speed, is what counts


def _output(name: str) -> Path:
    """The avatar file NAME stands for: a name in the user's avatar folder, or a .safetensors path."""
    from avatars.core.weights import available, user_folder

    if NAME.match(name):
        if name in available("avatar"):
            raise Refused(f"{name!r} is a shipped avatar's name; give yours another one")
        return user_folder("avatar") / f"{name}.safetensors"
    if name.endswith(".safetensors"):
        return Path(name)
    raise Refused(f"-o {name!r}: an avatar name (lower-case letters, digits and _, up to 40) or a .safetensors path")


def _source_avatar(name_or_path: str):
    """(model, config, path) of a textured avatar; Refused saying what the file is otherwise."""
    from avatars.avatar.model import load_avatar
    from avatars.core.checkpoint import CheckpointError
    from avatars.core.weights import resolve_weights

    try:
        path = resolve_weights(name_or_path, "avatar")
        model, cfg = load_avatar(path)
    except (FileNotFoundError, CheckpointError) as exc:
        raise Refused(str(exc)) from None
    if cfg.kind != "textured":
        raise Refused(f"{path.stem} is a {cfg.kind} avatar: it has no textures to paint (a textured one is needed)")
    return model, cfg, path


def _stylenet(name_or_path: str):
    """(tensor stylizer, record, path) of a per-style StyleNet (a shipped name or a checkpoint)."""
    from avatars.style.stylize import FrameStylizer

    model, path = load_style_model(name_or_path)
    return FrameStylizer(model).stylize_tensor, {"stylizer": path.stem, "kind": "per-style network"}, path


def universal_tensor_stylizer(painting, decoder: str, method: str, alpha: float):
    """The universal stylizer set to a painting, as a tensor stylizer; the one place that builds it
    (swap the model here). Returns (stylize_tensor, what it is)."""
    from avatars.core.checkpoint import CheckpointError
    from avatars.core.weights import resolve_weights
    from avatars.style.universal import UniversalConfig, UniversalStylizer, load_codec

    with refusing(ValueError):
        cfg = UniversalConfig(method=method, alpha=alpha)
    try:
        path = resolve_weights(decoder, "universal")
        codec = load_codec(path)
    except (FileNotFoundError, CheckpointError) as exc:
        raise Refused(str(exc)) from None
    stylizer = UniversalStylizer(codec, "cpu", cfg)
    with refusing(ValueError):
        stylizer.set_style(painting)
    return stylizer.stylize_tensor, {"decoder": path.stem, "method": method, "alpha": alpha}


def _painting(args: argparse.Namespace):
    """(tensor stylizer, record, path) of the universal stylizer on --style-image."""
    from avatars.core.checkpoint import describe_data

    path = Path(args.style_image)
    painting = read_painting(path, STYLE_READ_SIDE)
    stylize, what = universal_tensor_stylizer(painting, args.decoder, args.method, args.alpha)
    return stylize, {"painting": path.name, "sha256": describe_data(path)["sha256"], "kind": "universal", **what}, path


def cmd_stylize_avatar(args: argparse.Namespace) -> int:
    from avatars.avatar.model import save_avatar
    from avatars.avatar.stylize_textures import TextureStyleConfig, style_record, stylize_textures, with_textures
    from avatars.core.checkpoint import describe_data
    from stream.preflight import folder_problem

    if (args.style is None) == (args.style_image is None):
        raise Refused("give a style (a shipped style name or a StyleNet checkpoint) or --style-image PAINTING, "
                      "one of them")
    out = _output(args.output)
    if out.is_dir():
        raise Refused(f"{out}: is a folder; give the avatar's name or file")
    if out.exists() and not args.overwrite:
        raise Refused(f"{out} exists; --overwrite replaces it")
    if problem := folder_problem(out):
        raise Refused(problem)
    with refusing(ValueError):
        given = {"texel_scale": args.texel_scale, "frames_per_clip": args.frames}
        cfg = TextureStyleConfig(**{k: v for k, v in given.items() if v is not None})
    model, acfg, source = _source_avatar(args.avatar)
    refuse_overwrite([str(source)] + ([args.style_image] if args.style_image else []), str(out))
    set_threads(args.threads)
    stylize, style, style_path = _painting(args) if args.style_image else _stylenet(args.style)
    refuse_overwrite([str(style_path)], str(out))

    t0 = time.perf_counter()
    print(f"painting {source.stem}'s textures with {style.get('stylizer') or style['painting']}", flush=True)
    result = stylize_textures(model, acfg, stylize, cfg)
    info = {"name": out.stem, "made_by": "python -m launch stylize-avatar",
            "stylized": style_record(describe_data(source), style, result, cfg)}
    partial = save_avatar(out.with_name(f"{out.stem}.part.safetensors"),
                          with_textures(model, acfg, result.textures), acfg, info, half=True)
    for suffix in (".safetensors", ".json"):
        shutil.move(partial.with_suffix(suffix), out.with_suffix(suffix))
    seen = result.coverage.shares()
    print(f"texels seen {min(seen):.0%}-{max(seen):.0%} a part (the rest filled from them), "
          f"{time.perf_counter() - t0:.1f} s")
    print(f"avatar    {out}  ({out.stat().st_size / 1e6:.1f} MB)")
    print(f"use it    python -m launch run demo --set avatar.model={args.output if NAME.match(args.output) else out}")
    return Exit.OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stylize-avatar", help="an avatar whose part textures are painted once in a style",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("avatar", metavar="AVATAR", help="a textured avatar: a shipped or your own name, or a file")
    p.add_argument("style", nargs="?", metavar="STYLE", help="a shipped style name or a StyleNet checkpoint")
    p.add_argument("--style-image", metavar="PAINTING", help="any painting, with the universal stylizer instead")
    p.add_argument("-o", "--output", required=True, metavar="NAME",
                   help="the new avatar's name (then: --set avatar.model=NAME) or a .safetensors path")
    p.add_argument("--method", choices=("wct", "adain"), default="wct", help="with --style-image (wct)")
    p.add_argument("--alpha", type=float, default=1.0, help="with --style-image: share of the style (1)")
    p.add_argument("--decoder", default=DEFAULT_DECODER, metavar="NAME",
                   help=f"with --style-image: the universal decoder ({DEFAULT_DECODER})")
    p.add_argument("--texel-scale", type=float, metavar="S",
                   help="paint the textures at S x their size: smaller, larger strokes (0.5)")
    p.add_argument("--frames", type=int, metavar="N",
                   help="mannequin frames per motion and side that find the texels the avatar samples (4)")
    p.add_argument("--overwrite", action="store_true", help="replace an avatar of that name")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads (default: torch's)")
    p.set_defaults(func=cmd_stylize_avatar)
