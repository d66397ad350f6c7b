"""Benchmark: the avatar renderer's frames/s at 256x256, against baselines timed in the same process.

    python -m launch bench avatar [--threads 1] [--frames 6] [--repeats 2]

1. Generators alone (random weights, bone stacks at 256 px): paper-size vs small, fp32 vs the
   fast path (channels-last + bf16 autocast, forced here so its cost shows even where bf16 is
   not native; ``avatars.core.precision``), with the fast path's error against fp32.
2. The run-time renderer with the shipped avatar (keypoints -> crop -> generator at its crop ->
   textures sampled at the person's size on the 256x256 frame -> paste back), fp32 and fast,
   against the baseline: the same model rendered as the renderer did before textures were
   sampled at the output resolution (all parts blended at the crop size, the crop pasted and
   upsampled by the paste). The ratio is new / baseline: >= 1 means no slower.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from avatars.avatar.crop import CropConfig, person_crop
from avatars.avatar.model import AvatarConfig, AvatarRenderer, GeneratorConfig, load_avatar
from avatars.body.bones import rasterize_bones
from avatars.body.mannequin import Camera, MannequinSequence
from avatars.core.weights import resolve_weights


def _time(fns: list, inputs: list, repeats: int) -> list[float]:
    """Frames/s of each function, interleaved frame by frame so that load from other jobs hits all alike."""
    for fn in fns:
        fn(inputs[0])  # warm-up (oneDNN picks kernels on the first call)
    spent = [0.0] * len(fns)
    for _ in range(repeats):
        for x in inputs:
            for i, fn in enumerate(fns):
                t = time.perf_counter()
                fn(x)
                spent[i] += time.perf_counter() - t
    return [repeats * len(inputs) / s for s in spent]


def _crop_size_render(r: AvatarRenderer, keypoints: np.ndarray, size: int) -> np.ndarray:
    """The baseline: eq. 6.1 over all parts at the crop size, colour pasted into the frame."""
    crop = person_crop(keypoints, r.cfg.crop)
    s = r.cfg.crop.size
    bones = torch.from_numpy(rasterize_bones(crop.keypoints(keypoints, s), s, s, r.cfg.bones))[None]
    x = bones.contiguous(memory_format=torch.channels_last) if r.fast else bones
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=r.bf16):
        out = r.model(x)
    colour = (out.colour()[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    return crop.paste(colour, size, size), crop.paste(out.mask[0, 0].numpy(), size, size)


def generators(bones: list[torch.Tensor], repeats: int, size: int) -> None:
    for name, gen in (("paper", GeneratorConfig.paper()), ("small", GeneratorConfig.small())):
        cfg = AvatarConfig("textured", gen, 256, CropConfig(size=size))
        model = cfg.build()
        params = sum(q.numel() for q in model.net.parameters()) / 1e6
        ref, fast = AvatarRenderer(model, cfg), AvatarRenderer(model, cfg, fast=True, bf16=True)
        fps32, fps16 = _time([ref.render_bones, fast.render_bones], bones, repeats)
        err = torch.cat([(fast.render_bones(x).rgb - ref.render_bones(x).rgb).abs().flatten() for x in bones[:2]])
        print(f"  {name:5s} ({params:5.2f}M params, random weights): fp32 {fps32:6.2f} fps | fast {fps16:6.2f} fps"
              f" | ratio {fps16 / fps32:4.2f}x | fast-vs-fp32 |err| mean {255 * err.mean():.2f} max {255 * err.max():.1f}")


def renderer(poses: list, repeats: int, size: int) -> None:
    model, cfg = load_avatar(resolve_weights("mannequin_avatar", "avatar"))
    side = person_crop(poses[0].joints2d, cfg.crop).side
    print(f"  shipped avatar: {cfg.crop.size} px crop, {cfg.texture_size} px textures; the person's crop is "
          f"{side:.0f} px on the {size}x{size} frame")
    for fast in (False, True):
        r = AvatarRenderer(model, cfg, fast=fast)
        mode = f"fast ({'bf16' if r.bf16 else 'fp32'}, channels-last)" if fast else "fp32"
        new, base = _time([lambda f: r(f.joints2d, (size, size)), lambda f: _crop_size_render(r, f.joints2d, size)],
                          poses, repeats)
        print(f"  renderer {mode:28s}: textures sampled at the output {new:6.2f} fps | baseline (sampled at "
              f"the crop) {base:6.2f} fps | ratio {new / base:4.2f}x")
    outs = [[AvatarRenderer(model, cfg, fast=fast, bf16=fast)(f.joints2d, (size, size)) for f in poses[:2]]
            for fast in (False, True)]
    d = np.concatenate([np.abs(x.rgb.astype(np.int16) * x.mask[..., None] - y.rgb.astype(np.int16)
                               * y.mask[..., None]).ravel() for x, y in zip(*outs)])
    print(f"  shipped bf16-vs-fp32 composited |err| (0-255): mean {d.mean():.2f} max {d.max():.1f}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench avatar", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--skip-generators", action="store_true", help="only the renderer rows")
    a = p.parse_args(argv)
    size = 256
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    poses = list(MannequinSequence("walk", a.frames, fps=5.0, camera=Camera.orbit(20.0, width=size, height=size)))
    print(f"avatar bench: {size}x{size}, {a.threads} thread(s), {a.frames} frames x {a.repeats}")
    if not a.skip_generators:
        generators([torch.from_numpy(rasterize_bones(f.joints2d, size, size))[None] for f in poses], a.repeats, size)
    renderer(poses, a.repeats, size)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
