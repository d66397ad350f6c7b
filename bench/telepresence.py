"""Benchmark: what telepresence sends over the network (keypoints) against what a video call sends.

For the same clip at a webcam's 640x480 and 30 fps, a real person from ../shared/media where it is
there (default hybrik_taiji.mp4: real backgrounds and sensor noise are what video codecs pay for)
and the mannequin dancing otherwise (flat shading on black: the codec's best case), bytes per frame of:

* the keypoint message exactly as the runtime puts it on a cross-host edge (wire header and a
  (33, 4) float32 array, from real MediaPipe on every frame): the telepresence graph's traffic;
* the H.264 stream a video call would send instead, with the live settings of the `netstream`
  node (x264 zerolatency, no B-frames, a keyframe a second), at crf 23 and at 1 Mbit/s;
* the raw RGB frame.

Ratios are against the keypoint message, all measured in this one process. Also the compute the
graph splits between the hosts: pose per frame (laptop), avatar and stylizer per frame (render host).

    python -m launch bench telepresence [--video PATH | --mannequin] [--frames 90] [--threads 1]
"""
from __future__ import annotations

import argparse
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from avatars.avatar.model import AvatarRenderer
from avatars.body.mannequin import Camera, MannequinSequence
from avatars.body.pose import PoseEstimator
from avatars.core.weights import resolve_weights
from avatars.style.stylize import FastPathConfig, FrameStylizer
from avatars.style.checkpoint import load_stylizer
from launch.media import media_root
from stream.keypoints import keypoint_message
from stream.media import encoder_options
from stream.wire import encode, wire_array

WIDTH, HEIGHT, FPS = 640, 480, 30
VIDEO = media_root() / "video" / "hybrik_taiji.mp4"


def clip_frames(video: Path | None, n: int) -> tuple[str, list[np.ndarray]]:
    """(what, frames): the first `n` frames of `video` scaled to 640x480, or the mannequin's."""
    if video is None:
        seq = MannequinSequence("dance", n, FPS, Camera(width=WIDTH, height=HEIGHT), seed=1)
        return "mannequin dance", [np.ascontiguousarray(f.rgb) for f in seq]
    with av.open(str(video)) as c:
        frames = []
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(width=WIDTH, height=HEIGHT, format="rgb24"))
            if len(frames) == n:
                break
    return video.name, frames


def h264_bytes(frames: list[np.ndarray], crf: int | None, bitrate: int | None) -> float:
    """Mean bytes per frame of the live-tuned x264 stream of `frames`."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    ctx.time_base, ctx.framerate, ctx.gop_size = Fraction(1, FPS), Fraction(FPS), FPS
    options, bit_rate = encoder_options("libx264", crf, "veryfast", bitrate, low_latency=True)
    ctx.options = options
    if bit_rate:
        ctx.bit_rate = bit_rate
    total = 0
    for i, image in enumerate([*frames, None]):
        frame = None
        if image is not None:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
        total += sum(p.size for p in ctx.encode(frame))
    return total / len(frames)


def per_frame_ms(fn, items: list) -> float:
    fn(items[0])  # warm-up
    start = time.perf_counter()
    for x in items:
        fn(x)
    return (time.perf_counter() - start) / len(items) * 1e3


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench telepresence", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=VIDEO if VIDEO.is_file() else None)
    ap.add_argument("--mannequin", action="store_true", help="the mannequin instead of a real video")
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    what, frames = clip_frames(None if args.mannequin else args.video, args.frames)

    pose = PoseEstimator()
    results = [pose.process(f, i / FPS) for i, f in enumerate(frames)]
    pose.close()
    detected = [r for r in results if r.detected]
    sizes = []
    for i, r in enumerate(detected):
        msg = keypoint_message(None, r.keypoints, WIDTH, HEIGHT, True, seq=i, pts=i / FPS)
        wire = encode(msg, {n: wire_array(v) for n, v in msg.buffers.items()})
        sizes.append(sum(len(bytes(part)) for part in wire))
    keypoints = float(np.mean(sizes))
    rows = [("keypoint message (telepresence)", keypoints),
            ("H.264 live, crf 23", h264_bytes(frames, 23, None)),
            ("H.264 live, 1 Mbit/s", h264_bytes(frames, None, 1_000_000)),
            (f"raw RGB frame {WIDTH}x{HEIGHT}", float(frames[0].nbytes))]
    print(f"telepresence bench: {what}, {len(frames)} frames {WIDTH}x{HEIGHT} at {FPS} fps, "
          f"MediaPipe detected {len(detected)}/{len(frames)}")
    for name, size in rows:
        print(f"  {name:<34} {size:10.0f} B/frame  {size * FPS * 8 / 1e3:9.1f} kbit/s  "
              f"x{size / keypoints:8.1f} the keypoints")

    pose = PoseEstimator()
    pose_ms = per_frame_ms(lambda f: pose.process(f), frames[:30])
    pose.close()
    renderer = AvatarRenderer.open(resolve_weights("mannequin_avatar", "avatar"), fast=True)
    avatar_ms = per_frame_ms(lambda r: renderer(r.keypoints, (HEIGHT, WIDTH)), detected[:30])
    stylizer = FrameStylizer(load_stylizer(resolve_weights("starry_night", "style")), cfg=FastPathConfig())
    style_ms = per_frame_ms(stylizer, frames[:10])
    print(f"  compute per frame ({args.threads} thread(s)): laptop pose {pose_ms:.1f} ms | render host avatar "
          f"{avatar_ms:.1f} ms + stylizer {style_ms:.1f} ms ({'bf16' if stylizer.bf16 else 'fp32'}) at {WIDTH}x{HEIGHT}")

    return 0
