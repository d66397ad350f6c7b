"""Benchmark: an avatar with painted textures against the same avatar stylized frame by frame.

    python -m launch bench avatar_style [--frames 30] [--threads 1] [--repeats 2] [--style starry_night]
                                        [--figure docs/figures/avatar_style.png]

The shipped mannequin_avatar driven by the mannequin's dance at 256x256 (the demo's graph), three ways:
(a) the plain avatar, (b) the avatar stylized every frame by the StyleNet on its person region (the
demo's stylize node), (c) the avatar whose textures that StyleNet painted once (``stylize-avatar``,
made here with the library's defaults). Each composited over the demo's plain background.

* fps: the avatar renderer (fast path, as the avatar node runs it), plus the stylizer for (b);
  interleaved frame by frame (``bench.avatar._time``) so the load of other jobs hits all alike.
* warping error (``avatars.style.flicker``, ``bench flicker``'s measure): the optical flow of the plain
  avatar's frames (the same bodies in all three) warps each output's previous frame onto the current.
* near-black person pixels: the share of pixels with mask >= 0.5 whose brightest channel is under 16
  (unseen texels bleeding black would raise it over the plain avatar's).

Ratios are against (a) in the same run. The figure: frames of (a) | (b) | (c), and (c)'s textures.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from avatars.avatar.evaluation import texture_atlas
from avatars.avatar.model import AvatarRenderer, RenderedAvatar, load_avatar
from avatars.avatar.stylize_textures import TextureStyleConfig, stylize_textures, with_textures
from avatars.body.mannequin import Camera, MannequinSequence
from avatars.core.training_loop import save_png
from avatars.core.weights import resolve_weights
from avatars.style.checkpoint import load_stylizer
from avatars.style.flicker import warping_error
from avatars.style.stylize import FastPathConfig, FrameStylizer
from bench.avatar import _time

SIZE = 256
BACKGROUND = np.array([236, 228, 210], np.float32)   # the demo's composite colour
DARK = 16                                             # brightest channel under this: near-black
MIN_FIGURE_MASK = 0.05                                # the figure's crop holds the pixels of at least this mask


def composite(out: RenderedAvatar) -> np.ndarray:
    m = out.mask[..., None]
    return (out.rgb * m + BACKGROUND * (1 - m) + 0.5).astype(np.uint8)


def dark_share(outs: list[RenderedAvatar]) -> float:
    person = [o.rgb[o.mask >= 0.5] for o in outs]
    pixels = np.concatenate(person)
    return float((pixels.max(1) < DARK).mean())


def figure(path: Path, rows: list[list[np.ndarray]], masks: list[np.ndarray], textures: np.ndarray) -> None:
    """Frames (a) | (b) | (c) cropped to the person and doubled, above the painted textures."""
    ys, xs = np.nonzero(np.any(np.stack(masks) >= MIN_FIGURE_MASK, 0))
    m = 6
    box = (slice(max(ys.min() - m, 0), ys.max() + m), slice(max(xs.min() - m, 0), xs.max() + m))
    grid = np.concatenate([np.concatenate([f[box] for f in row], 1) for row in rows], 0)
    grid = grid.repeat(2, 0).repeat(2, 1)
    from PIL import Image

    w = grid.shape[1]
    tex = np.array(Image.fromarray(textures).resize((w, round(textures.shape[0] * w / textures.shape[1])),
                                                    Image.LANCZOS))
    save_png(path, np.concatenate([grid, np.full((8, w, 3), 255, np.uint8), tex], 0))



def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench avatar_style", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=30, help="frames of the dance at 30 fps (30)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2, help="timed passes over the frames (2)")
    p.add_argument("--style", default="starry_night", help="a shipped style name or a StyleNet checkpoint")
    p.add_argument("--figure", type=Path, default=Path("docs/figures/avatar_style.png"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    model, cfg = load_avatar(resolve_weights("mannequin_avatar", "avatar"))
    net = load_stylizer(resolve_weights(a.style, "style"))

    t0 = time.perf_counter()
    painted = stylize_textures(model, cfg, FrameStylizer(net).stylize_tensor, TextureStyleConfig())
    seconds = time.perf_counter() - t0
    styled_model = with_textures(model, cfg, painted.textures)
    seen = painted.coverage.shares()
    print(f"avatar_style bench: mannequin_avatar, dance, {a.frames} frames at {SIZE}x{SIZE}, {a.threads} thread(s); "
          f"textures painted by {a.style} once in {seconds:.1f} s (texels seen {min(seen):.0%}-{max(seen):.0%} a part)")

    poses = [f.joints2d for f in MannequinSequence("dance", a.frames, 30.0, Camera(width=SIZE, height=SIZE))]
    plain, styled = AvatarRenderer(model, cfg, fast=True), AvatarRenderer(styled_model, cfg, fast=True)
    stylizer = FrameStylizer(net, cfg=FastPathConfig(region="person"))

    def per_frame(kp: np.ndarray) -> RenderedAvatar:
        out = plain(kp, (SIZE, SIZE))
        return RenderedAvatar(stylizer(out.rgb, out.mask), out.mask)

    variants = {"(a) plain avatar": lambda kp: plain(kp, (SIZE, SIZE)),
                f"(b) per-frame {a.style}": per_frame,
                "(c) painted textures": lambda kp: styled(kp, (SIZE, SIZE))}
    fps = dict(zip(variants, _time(list(variants.values()), poses, a.repeats)))
    outs = {}
    for name, fn in variants.items():
        plain.reset()
        styled.reset()
        outs[name] = [fn(kp) for kp in poses]
    frames = {name: [composite(o) for o in v] for name, v in outs.items()}
    flow_inputs = frames["(a) plain avatar"]
    errors = {name: warping_error(flow_inputs, v) for name, v in frames.items()}

    base = list(variants)[0]
    print(f"  {'':28s} {'fps':>7s} {'x (a)':>6s}   {'warping error':>13s} {'x (a)':>6s}   near-black person px")
    for name in variants:
        print(f"  {name:28s} {fps[name]:7.2f} {fps[name] / fps[base]:6.2f}   {errors[name]:13.6f} "
              f"{errors[name] / errors[base]:6.2f}   {dark_share(outs[name]):.4%}")
    b, c = list(variants)[1:]
    print(f"  painted textures against per-frame: {fps[c] / fps[b]:.2f}x the fps, "
          f"{errors[c] / errors[b]:.2f}x the warping error")

    picks = [0, len(poses) // 2, len(poses) - 1]
    rows = [[frames[name][i] for name in variants] for i in picks]
    figure(a.figure, rows, [outs[base][i].mask for i in picks], texture_atlas(styled_model))
    print(f"  figure: {a.figure} (rows: frames {', '.join(map(str, picks))}; columns: (a) | (b) | (c); "
          f"below: (c)'s textures)")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
