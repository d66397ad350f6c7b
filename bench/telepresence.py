"""Benchmark: telepresence as a viewer gets it (glass to glass), what crosses the network, and what the
quantised keypoint message changes in the render.

For one clip at a webcam's 640x480 and 30 fps (a real person from ../shared/media where it is there,
default hybrik_taiji.mp4 cut to 4:3, not stretched; the mannequin dancing otherwise):

1. Bytes a frame on the uplink: the keypoint message exactly as the runtime puts it on a cross-host
   edge (wire header and the quantised (17, 9) uint8 landmarks, from real MediaPipe on every frame),
   against the float32 (33, 4) message it replaced (the baseline), the H.264 stream a video call would
   send instead (the `netstream` node's live settings: x264 zerolatency, no B-frames, a keyframe a
   second; crf 23 and 1 Mbit/s) and the raw frame.
2. The render difference of quantising: the avatar rendered at 640x480 from MediaPipe's keypoints and
   from the same keypoints through the wire form: mean absolute pixel difference over the frame and
   SSIM over the person's box; beside it, as the baseline, the same for keypoints moved by a random
   +-0.25 px and +-1 px (how sensitive the render is to where a joint is).
3. Compute per frame: pose (laptop), and the render host's stages (avatar, stylizer on the person's
   region as the graph paints it, composite, scaling to 640x480 and the JPEG) in this process, at
   640x480, at the graph's render size and at 320x240, with the SSIM of each size's picture against
   the 640x480 one's (what working smaller costs the viewer).
4. Glass to glass: graphs/telepresence.yaml run as two hosts (two supervisors, CurveZMQ on loopback,
   this machine's cores shared by both as on a loaded CI runner), the camera replaced by the clip paced
   at its timestamps and looping; a viewer (this process) reads /stream.mjpg after a warm-up; the
   preview records capture-to-served for each frame it writes to the viewer. p50/p99, uplink bytes a
   frame at the render host's input, the frames a second the viewer received, and where the time
   goes (each node's input age and processing time, and their sum: the floor this machine allows).
   The graph as shipped (rendering at 480x360, scaled up for the viewer), and as the baseline the same
   graph rendering at the full 640x480 (--no-baseline skips it); for the shipped mannequin avatar, and
   for a trained real avatar with --avatar PATH.

The last line reads `glass-to-glass p50 A ms p99 B ms, uplink N B/frame, render F fps` (the shipped
avatar and style).

    python -m launch bench telepresence [--video PATH | --mannequin] [--frames 90] [--threads 1]
                                        [--seconds 45] [--warmup 12] [--avatar CKPT] [--no-baseline]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import yaml

from avatars.avatar.model import AvatarRenderer
from avatars.body.mannequin import Camera, MannequinSequence
from avatars.body.pose import PoseEstimator
from avatars.core.metrics import person_box, ssim
from avatars.core.weights import resolve_weights
from avatars.style.checkpoint import load_stylizer
from avatars.style.stylize import FastPathConfig, FrameStylizer
from launch.media import media_root
from stream.keypoints import Keypoints, fit_keypoints, keypoint_message, pack_keypoints, unpack_keypoints
from stream.frames import as_alpha, blend
from stream.media import encoder_options, write_video
from stream.message import Message
from stream.nodes.preview import mjpeg_frames
from stream.wire import encode, wire_array

WIDTH, HEIGHT, FPS = 640, 480, 30
VIDEO = media_root() / "video" / "hybrik_taiji.mp4"
GRAPH = Path(__file__).resolve().parents[1] / "graphs" / "telepresence.yaml"
FULL_SIZE = ["--set", f"avatar.width={WIDTH}", "--set", f"avatar.height={HEIGHT}"]   # the baseline: no scaling up
CHAIN = ("avatar", "style", "composite", "display", "preview")                       # the render host's nodes in order
BACKGROUND = (236, 228, 210)                                                         # the graph's composite colour


def render_size() -> tuple[int, int]:
    """(W, H) the shipped graph renders, stylizes and composites at."""
    avatar = next(n for n in yaml.safe_load(GRAPH.read_text())["nodes"] if n["name"] == "avatar")["params"]
    return avatar["width"], avatar["height"]


def webcam_view(image: np.ndarray) -> np.ndarray:
    """The centre 4:3 of a frame, scaled to 640x480: what a webcam would see (never a stretch)."""
    import cv2

    h, w = image.shape[:2]
    cw, ch = min(w, h * 4 // 3), min(h, w * 3 // 4)
    x, y = (w - cw) // 2, (h - ch) // 2
    return cv2.resize(image[y:y + ch, x:x + cw], (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)


def clip_frames(video: Path | None, n: int) -> tuple[str, list[np.ndarray]]:
    """(what, frames): the first `n` frames of `video` as a webcam at 640x480 sees them, or the mannequin's."""
    if video is None:
        seq = MannequinSequence("dance", n, FPS, Camera(width=WIDTH, height=HEIGHT), seed=1)
        return "mannequin dance", [np.ascontiguousarray(f.rgb) for f in seq]
    with av.open(str(video)) as c:
        frames = []
        for f in c.decode(video=0):
            frames.append(webcam_view(f.to_ndarray(format="rgb24")))
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


def wire_bytes(msg: Message) -> int:
    return sum(len(bytes(part)) for part in encode(msg, {n: wire_array(v) for n, v in msg.buffers.items()}))


def float32_message(keypoints: np.ndarray, seq: int) -> Message:
    """The keypoint message before quantisation (the baseline): float32 (33, 4) and its four meta fields."""
    return Message(seq=seq, pts=seq / FPS, buffers={"keypoints": np.ascontiguousarray(keypoints, np.float32)},
                   meta={"detected": True, "held": False, "width": WIDTH, "height": HEIGHT})


def per_frame_ms(fn, items: list) -> float:
    fn(items[0])  # warm-up
    start = time.perf_counter()
    for x in items:
        fn(x)
    return (time.perf_counter() - start) / len(items) * 1e3


def render_difference(avatar: str, poses: list[np.ndarray], change) -> tuple[float, float, float]:
    """(mean abs pixel difference over the frame, over the person's box, person-box SSIM) between renders
    from `poses` and from `change(pose)`; two renderers, so each keeps its own scale smoothing over the
    sequence as a node would."""
    exact, changed = (AvatarRenderer.open(resolve_weights(avatar, "avatar"), fast=True) for _ in range(2))
    frame_diff, box_diff, scores = [], [], []
    for kp in poses:
        a, b = exact(kp, (HEIGHT, WIDTH)), changed(change(kp), (HEIGHT, WIDTH))
        x, y = (torch.from_numpy(r.rgb).permute(2, 0, 1)[None].float() / 255 for r in (a, b))
        box = person_box(torch.from_numpy(np.maximum(a.mask, b.mask))[None])
        diff = np.abs(a.rgb.astype(np.float32) - b.rgb.astype(np.float32))
        frame_diff.append(diff.mean())
        box_diff.append(diff[box[0].numpy()].mean())
        scores.append(float(ssim(x, y, region=box)[0]))
    return float(np.mean(frame_diff)), float(np.mean(box_diff)), float(np.mean(scores))


def through_the_wire(kp: np.ndarray) -> np.ndarray:
    return unpack_keypoints(pack_keypoints(kp, WIDTH, HEIGHT), WIDTH, HEIGHT)


def jitter(pixels: float, seed: int = 0):
    """x and y moved by up to `pixels` at random: the sensitivity baseline (MediaPipe's own frame-to-frame noise
    is a few pixels)."""
    rng = np.random.default_rng(seed)

    def change(kp: np.ndarray) -> np.ndarray:
        out = kp.copy()
        out[:, :2] += rng.uniform(-pixels, pixels, (len(kp), 2)).astype(np.float32)
        return out
    return change


def render_host_compute(poses: list[np.ndarray], w: int, h: int) -> tuple[dict[str, float], list[np.ndarray], list]:
    """The render host's work a frame at a w x h working size, in this process, each stage timed as the graph
    runs it (avatar; stylizer on the person's region; composite over the graph's colour; scaled to 640x480
    and JPEG-encoded as the display and preview do): (p50 ms by stage, the viewer's pictures, the masks)."""
    import cv2

    renderer = AvatarRenderer.open(resolve_weights("mannequin_avatar", "avatar"), fast=True)
    stylizer = FrameStylizer(load_stylizer(resolve_weights("starry_night", "style")), cfg=FastPathConfig(region="person"))
    background = np.empty((h, w, 3), np.uint8)
    background[:] = BACKGROUND
    times: dict[str, list[float]] = {"avatar": [], "stylizer": [], "composite": [], "scale + JPEG": []}
    pictures, masks = [], []
    for i, kp in enumerate(poses):
        t0 = time.perf_counter()
        out = renderer(fit_keypoints(Keypoints(kp, WIDTH, HEIGHT, True), w, h), (h, w))
        t1 = time.perf_counter()
        painted = stylizer(out.rgb, out.mask)
        t2 = time.perf_counter()
        picture = blend(painted, as_alpha(out.mask, h, w), background, np.empty_like(background))
        t3 = time.perf_counter()
        shown = cv2.resize(picture, (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR) if (w, h) != (WIDTH, HEIGHT) else picture
        cv2.imencode(".jpg", cv2.cvtColor(shown, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
        t4 = time.perf_counter()
        if i:  # the first frame allocates
            for name, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[name].append(dt * 1e3)
        pictures.append(shown)
        masks.append(out.mask)
    return {name: float(np.median(v)) for name, v in times.items()}, pictures, masks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Viewer(threading.Thread):
    """A browser's part: reads /stream.mjpg from `start_at` until `stop_at` (monotonic), counting frames."""

    def __init__(self, url: str, start_at: float, stop_at: float):
        super().__init__(daemon=True)
        self.url, self.start_at, self.stop_at = url, start_at, stop_at
        self.frames, self.began, self.ended = 0, 0.0, 0.0

    def run(self) -> None:
        time.sleep(max(0.0, self.start_at - time.monotonic()))
        self.began = time.monotonic()
        try:
            for _ in mjpeg_frames(self.url, timeout=10):
                self.frames += 1
                if time.monotonic() >= self.stop_at:
                    break
        except OSError:
            pass
        self.ended = time.monotonic()

    @property
    def fps(self) -> float:
        return self.frames / max(self.ended - self.began, 1e-9)


def glass_to_glass(clip: Path, avatar: str, seconds: float, warmup: float, work: Path, extra: list[str] = ()) -> dict:
    """Both hosts of graphs/telepresence.yaml (with the `--set`s of `extra`) on loopback for `seconds`; their
    reports and what the viewer saw."""
    work.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "launch", "keys", str(work / "keys"), "--hosts", "laptop", "render"],
                   check=True, capture_output=True)
    graph = yaml.safe_load(GRAPH.read_text())
    nodes = {n["name"]: n for n in graph["nodes"]}
    nodes["camera"].update(kind="video", params={"path": str(clip), "realtime": True, "loop": True})
    path = work / "telepresence.yaml"
    path.write_text(yaml.safe_dump(graph))
    port, http = _free_port(), _free_port()
    sets = ["--set", f"hosts.render.port_base={port}", "--set", f"security.keys={work / 'keys'}",
            "--set", f"preview.port={http}", "--set", f"avatar.model={avatar}", *extra]

    def host(name: str) -> tuple[subprocess.Popen, Path]:
        report = work / f"{name}.json"
        proc = subprocess.Popen([sys.executable, "-m", "launch", "run", str(path), "--host", name, "--for", str(seconds),
                                 "--quiet", "--report", str(report), *sets], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        return proc, report

    render, render_report = host("render")
    deadline = time.monotonic() + 60
    while not _listening(port):  # the render host binds the keypoint edge before loading its models
        if render.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the render host did not start: {render.communicate()[1][-2000:]}")
        time.sleep(0.1)
    started = time.monotonic()
    laptop, laptop_report = host("laptop")
    viewer = Viewer(f"http://127.0.0.1:{http}/stream.mjpg", started + warmup, started + seconds - 3)
    viewer.start()
    for proc in (render, laptop):
        _, err = proc.communicate(timeout=seconds + 120)
        if proc.returncode != 0:
            raise RuntimeError(f"a host failed ({proc.returncode}): {err[-2000:]}")
    viewer.join(15)
    return {"render": json.loads(render_report.read_text())["nodes"],
            "laptop": json.loads(laptop_report.read_text())["nodes"], "fps": viewer.fps, "frames": viewer.frames}


def report_run(what: str, run: dict) -> tuple[float, float, float, float]:
    """Print one run's figures; (p50, p99, uplink bytes a frame, fps)."""
    render, laptop = run["render"], run["laptop"]
    ages = render["preview"]["extra"]["glass_to_glass"]
    avatar = render["avatar"]
    uplink = avatar["net_bytes_in"] / max(avatar["frames_in"] + avatar["drops"], 1)
    print(f"  {what}: glass-to-glass p50 {ages['p50_ms']:.0f} ms, p99 {ages['p99_ms']:.0f} ms over "
          f"{render['preview']['extra']['served']} frames served; viewer got {run['frames']} frames "
          f"({run['fps']:.1f} fps); uplink {uplink:.0f} B/frame; poses dropped as stale at the render host "
          f"{avatar['drops']} of {avatar['frames_in'] + avatar['drops']}")
    chain = [("pose", laptop["pose"]), *((n, render[n]) for n in CHAIN)]
    print("    where the time goes (input age at arrival p50 / processing p50, ms): " + ", ".join(
        f"{n} {m['latency']['p50_ms'] or 0:.0f}/{m['process']['p50_ms'] or 0:.0f}" for n, m in chain)
        + f"; floor (the processing times' sum) {sum(m['process']['p50_ms'] or 0 for _, m in chain):.0f} ms")
    return ages["p50_ms"], ages["p99_ms"], uplink, run["fps"]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench telepresence", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=VIDEO if VIDEO.is_file() else None)
    ap.add_argument("--mannequin", action="store_true", help="the mannequin instead of a real video")
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the in-process compute figures")
    ap.add_argument("--seconds", type=float, default=45.0, help="length of each two-host run")
    ap.add_argument("--warmup", type=float, default=12.0, help="seconds before the viewer connects")
    ap.add_argument("--avatar", help="a trained real avatar (checkpoint) to run beside the shipped one")
    ap.add_argument("--no-baseline", action="store_true", help="skip the baseline run rendering at 640x480")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    what, frames = clip_frames(None if args.mannequin else args.video, args.frames)

    pose = PoseEstimator()
    results = [pose.process(f, i / FPS) for i, f in enumerate(frames)]
    pose.close()
    detected = [r for r in results if r.detected]
    keypoints = float(np.mean([wire_bytes(keypoint_message(None, r.keypoints, WIDTH, HEIGHT, True, seq=i, pts=i / FPS))
                               for i, r in enumerate(detected)]))
    before = float(np.mean([wire_bytes(float32_message(r.keypoints, i)) for i, r in enumerate(detected)]))
    rows = [("keypoint message (telepresence)", keypoints),
            ("float32 keypoint message (before)", before),
            ("H.264 live, crf 23", h264_bytes(frames, 23, None)),
            ("H.264 live, 1 Mbit/s", h264_bytes(frames, None, 1_000_000)),
            (f"raw RGB frame {WIDTH}x{HEIGHT}", float(frames[0].nbytes))]
    print(f"telepresence bench: {what}, {len(frames)} frames {WIDTH}x{HEIGHT} at {FPS} fps, "
          f"MediaPipe detected {len(detected)}/{len(frames)}")
    for name, size in rows:
        print(f"  {name:<34} {size:10.0f} B/frame  {size * FPS * 8 / 1e3:9.1f} kbit/s  "
              f"x{size / keypoints:8.1f} the keypoints")

    avatars = [("mannequin_avatar", "shipped mannequin avatar")] + ([(args.avatar, Path(args.avatar).name)] if args.avatar else [])
    poses = [r.keypoints for r in detected[:30]]
    print(f"  render difference against the float32 keypoints, {len(poses)} frames at {WIDTH}x{HEIGHT} (mean abs "
          f"difference of 255 over the frame / the person's box, person-box SSIM):")
    for model, name in avatars:
        for change, label in ((through_the_wire, "quantised (the wire form)"), (jitter(0.25), "x, y +-0.25 px at random"),
                              (jitter(1.0), "x, y +-1 px at random")):
            frame_diff, box_diff, score = render_difference(model, poses, change)
            print(f"    {name}, {label:<26} {frame_diff:6.3f} / {box_diff:5.2f}, SSIM {score:.4f}")

    pose = PoseEstimator()
    pose_ms = per_frame_ms(lambda f: pose.process(f), frames[:30])
    pose.close()
    print(f"  compute per frame ({args.threads} thread(s)): laptop pose {pose_ms:.1f} ms | render host, by the size it "
          f"works at (the viewer's picture scaled to {WIDTH}x{HEIGHT}; SSIM of that picture against the {WIDTH}x{HEIGHT} "
          f"render's, over the person's box / the frame):")
    full = None
    for w, h in sorted({(WIDTH, HEIGHT), render_size(), (WIDTH // 2, HEIGHT // 2)}, reverse=True):
        stages, pictures, masks = render_host_compute([r.keypoints for r in detected[:16]], w, h)
        x = torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).float() / 255
        full = full or (x, person_box(torch.from_numpy(np.stack(masks))))
        box_ssim, frame_ssim = float(ssim(full[0], x, region=full[1]).mean()), float(ssim(full[0], x).mean())
        print(f"    at {w}x{h}{' (shipped)' if (w, h) == render_size() else ''}: " + " + ".join(
            f"{name} {ms:.1f}" for name, ms in stages.items()) + f" = {sum(stages.values()):.1f} ms; "
            f"SSIM {box_ssim:.2f} / {frame_ssim:.2f}")

    with tempfile.TemporaryDirectory(prefix="bench-telepresence-") as tmp:
        work = Path(tmp)
        clip = write_video(work / "webcam.mp4", frames, fps=FPS)
        (w, h) = render_size()
        print(f"  both hosts on loopback, {os.cpu_count()} cores shared, {args.seconds:.0f} s a run, the viewer from "
              f"{args.warmup:.0f} s (shipped style starry_night, {WIDTH}x{HEIGHT} to the viewer):")
        runs = [(model, name, f"{name}, rendered at {w}x{h} (as shipped)", []) for model, name in avatars]
        if not args.no_baseline:  # the baseline: the shipped avatar rendered at the viewer's size
            runs.insert(1, ("mannequin_avatar", "baseline", f"baseline: {avatars[0][1]}, rendered at "
                                                            f"{WIDTH}x{HEIGHT}", FULL_SIZE))
        figures = {name: report_run(label, glass_to_glass(clip, model, args.seconds, args.warmup, work / name, extra))
                   for model, name, label, extra in runs}
    p50, p99, uplink, fps = figures[avatars[0][1]]
    if "baseline" in figures:
        b50, b99, _, bfps = figures["baseline"]
        print(f"  shipped against the baseline: p50 x{p50 / b50:.2f}, p99 x{p99 / b99:.2f}, viewer fps x{fps / bfps:.2f}")
    print(f"glass-to-glass p50 {p50:.0f} ms p99 {p99:.0f} ms, uplink {uplink:.0f} B/frame, render {fps:.1f} fps")
    return 0
