"""Live stylization at 256x256 on this machine's CPU: the live graph's fps and latency, lever by lever.

graphs/stylize_live.yaml as shipped, except that a video clip (the camera node's `device`, paced at its
30 fps, looping) stands in for the camera and a sink that discards for the browser preview.
Each variant runs in turn for ``--seconds``
after ``--warmup`` seconds (model loading; counted out of fps and drops); fps is the rate at which
stylized frames reach the sink, latency runs from the capture timestamp to the sink, drops are the
stale frames the `latest` edges discarded. Variants (the stylize node's parameters), one lever each:

    equal share   eager, no smoothing, threads: 1 (what the old equal share per process gave it)
    weighted      eager, no smoothing, the supervisor's share by compute (the one compute node: both cores)
    + flow        weighted, with flow-guided smoothing (less flicker)
    + compile     weighted, compiled for 256x256 (ahead of time, in the background: eager frames until then)
    shipped       the graph as shipped (weighted + compile; the same as + compile)

and with ``--before CKPT`` the shipped graph with that stylizer instead (the network lever).

A compiled variant gets ``--compile-warmup`` seconds of warm-up: the first compile takes minutes on
two cores, later starts load the package from the user's cache in seconds.

First frames (``--first-frame S``, 0 skips it): the shipped graph from its start, for each way of
compiling (the stylize node's ``compile_in``: ``setup``, torch.compile before the first frame; and
``background``, the eager network while a child process builds an AOTInductor package, then the
swap), each with a cold cache (a fresh temporary user cache) and then warm (the same cache again):
when the first stylized frame reached the sink, when the compiled network was in use (``compile_s``),
and the fps over ``--after-compile`` seconds from then on; a run ends then, or after S seconds. The
eager network alone (``compile: false``) first: the floor of the first frame (processes starting,
torch imported, the model loaded) and the eager fps:

    compile in setup, cache cold: first frame A s, compiled from C s, then F fps

Flicker: the warping error (avatars.style.flicker) of the same clip, resized by the graph's own
geometry and stylized with and without flow smoothing, taking every k-th frame where k follows the
fps the live graph reached (the frames it drops are the frames it does not smooth across).

and, with ``--paths``, the same 256x256 frame through each inference path in this process, one
thread, against the torch fast path: torch fp32, ONNX Runtime fp32, OpenVINO fp32 and bf16 (each
where its package is installed), with the error against fp32 torch. The machine is shared: compare
the ratios within one run. The last line is the shipped graph's (the `weighted` variant):

    live stylize 256x256: F fps, latency p50 A ms p99 B ms, drops D

    python -m launch bench live [--seconds 20] [--warmup 8] [--clip PATH] [--first-frame 300] [--after-compile 15]
                                [--paths] [--before CKPT]
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from launch.media import media_root
from launch.shipped import graph_file
from stream.graph import load_graph
from stream.supervisor import Supervisor

CLIP = "video/kinetics_ta_chi_340x256.mp4"       # 29.97 fps, a person dancing
EAGER = {"compile": False, "warmup_size": [], "smoothing": "none"}
VARIANTS: dict[str, dict[str, Any]] = {
    "equal share": {**EAGER, "threads": 1},
    "weighted": EAGER,
    "+ flow": {**EAGER, "smoothing": "flow"},
    "+ compile": {**EAGER, "compile": True, "warmup_size": [256, 256]},
    "shipped": {},
}
SHIPPED = "shipped"
FIRST_FRAME_MODES = {"eager only": {"compile": False}, "compile in setup": {"compile_in": "setup"},
                     "eager, then swap": {"compile_in": "background"}}
BEFORE = "shipped, --before's stylizer"


@dataclass
class LiveResult:
    fps: float
    p50_ms: float
    p99_ms: float
    drops: int
    style: dict[str, Any]    # the stylize node's extra metrics at the end
    report: dict[str, Any]   # the supervisor's, at the end

    def line(self) -> str:
        return (f"{self.fps:.1f} fps, latency p50 {self.p50_ms:.0f} ms p99 {self.p99_ms:.0f} ms, "
                f"drops {self.drops}")


class _Recorder:
    """Stands in for the supervisor's status view: notes the counters once the warm-up is over."""

    def __init__(self, warmup: float):
        self.warmup, self.at_warmup, self.report = warmup, None, None

    def update(self, handles: list[Any], elapsed: float) -> None:
        nodes = {n: dict(s.get("metrics", {})) for h in handles for n, s in h.node_status.items()}
        if self.at_warmup is None and elapsed >= self.warmup:
            self.at_warmup = (elapsed, nodes)

    def close(self, report: dict[str, Any]) -> None:
        self.report = report


def live_graph(clip: Path, folder: Path) -> Path:
    """The shipped live graph with the clip as its camera and a discarding sink as its preview."""
    doc = yaml.safe_load(graph_file("stylize_live").read_text())
    kinds = {n["name"]: n for n in doc["nodes"]}
    kinds["camera"]["params"].update(device=str(clip), loop=True)
    kinds["preview"].update(kind="discard", params={})
    path = folder / "stylize_live_bench.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def any_painting_graph(clip: Path, folder: Path, painting: Path, every: float) -> Path:
    """graphs/stylize_any.yaml with the clip as its camera, a discarding sink, and ``painting`` from the start and
    again every ``every`` seconds on the style port (each arrival is a new painting to the stylizer)."""
    doc = yaml.safe_load(graph_file("stylize_any").read_text())
    nodes = {n["name"]: n for n in doc["nodes"]}
    nodes["camera"]["params"].update(device=str(clip), loop=True)
    nodes["preview"].update(kind="discard", params={})
    paintings = folder / "paintings"
    paintings.mkdir()
    (paintings / painting.name).symlink_to(painting.resolve())
    nodes["paintings"]["params"].update(folder=str(paintings), every=every)
    nodes["style"]["params"]["style_image"] = str(painting.resolve())
    path = folder / "stylize_any_bench.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_live(graph_path: Path, style: dict[str, Any], seconds: float, warmup: float) -> LiveResult:
    overrides = {"style": style}
    sup = Supervisor(load_graph(graph_path, overrides), overrides, duration=warmup + seconds, quiet=True)
    sup.view = recorder = _Recorder(warmup)
    if sup.run() != 0:
        raise RuntimeError(f"the live graph failed: {sup.last_report}")
    (t0, before), report = recorder.at_warmup, recorder.report
    nodes = report["nodes"]
    sink = nodes["preview"]
    frames = sink["frames_in"] - before.get("preview", {}).get("frames_in", 0)
    drops = sum(n["drops"] for n in nodes.values()) - sum(m.get("drops", 0) for m in before.values())
    return LiveResult(frames / (report["duration_s"] - t0), sink["latency"]["p50_ms"], sink["latency"]["p99_ms"], drops,
                      nodes["style"].get("extra", {}), report)


class _FirstFrames:
    """The status view of a run from its start: when the first frame reached the sink, when the stylizer's
    compiled network was in use (and the sink's count then); it ends the run ``after`` seconds later."""

    def __init__(self, sup: Supervisor, after: float, compiled: bool):
        self.sup, self.after, self.report, self.compiling = sup, after, None, compiled
        self.first_frame: float | None = None
        self.compiled: tuple[float, int] | None = None

    def update(self, handles: list[Any], elapsed: float) -> None:
        nodes = {n: dict(s.get("metrics", {})) for h in handles for n, s in h.node_status.items()}
        frames = nodes.get("preview", {}).get("frames_in", 0)
        if self.first_frame is None and frames:
            self.first_frame = elapsed
        extra = nodes.get("style", {}).get("extra", {})
        # compiled ahead: once a frame ran the package; compiled in setup: from the first frame; eager: likewise
        in_use = extra["compiled_frames"] > 0 if "compiled_frames" in extra else "compile_s" in extra
        in_use = in_use or not self.compiling
        if self.compiled is None and frames and in_use:
            self.compiled = (elapsed, frames)
            self.sup.duration = min(self.sup.duration, elapsed + self.after)

    def close(self, report: dict[str, Any]) -> None:
        self.report = report


@contextlib.contextmanager
def _user_cache(folder: Path):
    """The node processes started meanwhile keep what they compile in ``folder`` (a user cache of their own)."""
    saved = {k: os.environ.pop(k, None) for k in ("NEURAL_STREAM_CACHE", "TORCHINDUCTOR_CACHE_DIR")}
    os.environ["NEURAL_STREAM_CACHE"] = str(folder)
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v


def first_frames(graph_path: Path, seconds: float, after: float) -> None:
    """The shipped graph from its start, eager only, then each way of compiling, cold then warm cache: a line each."""
    for name, style in FIRST_FRAME_MODES.items():
        compiled = style.get("compile", True)
        with tempfile.TemporaryDirectory() as cache, _user_cache(Path(cache)):
            for state in ("cold", "warm") if compiled else ("",):
                overrides = {"style": style}
                sup = Supervisor(load_graph(graph_path, overrides), overrides, duration=seconds, quiet=True)
                sup.view = seen = _FirstFrames(sup, after, compiled)
                sup.run()  # exit 1 when nothing arrived within the seconds: the line says so
                style_node, sink = seen.report["nodes"]["style"], seen.report["nodes"]["preview"]
                if seen.first_frame is None:
                    line = f"no frame in {seconds:g} s (still {style_node.get('state') or 'starting'})"
                else:
                    line = f"first frame {seen.first_frame:.1f} s, "
                    if seen.compiled is None:
                        error = style_node.get("extra", {}).get("compile_error")
                        line += f"not compiled in {seconds:g} s" + (f" ({error})" if error else "")
                    else:
                        t, frames = seen.compiled
                        fps = (sink["frames_in"] - frames) / max(seen.report["duration_s"] - t, 1e-3)
                        line += (f"compiled from {t:.1f} s, then " if compiled else "then ") + f"{fps:.1f} fps"
                print(f"  {name}{f', cache {state}' if compiled else ''}: {line}", flush=True)


def flicker(clip: Path, graph_path: Path, fps: float, frames: int = 30) -> dict[str, float]:
    """Warping error of the clip through the graph's resize and the stylizer, smoothing none and flow,
    at the frame spacing of a live graph running at ``fps``."""
    import av
    import numpy as np

    from avatars.core.weights import resolve_weights
    from avatars.style.checkpoint import load_stylizer
    from avatars.style.flicker import warping_error
    from avatars.style.stylize import FastPathConfig, FrameStylizer
    from stream.nodes.resize import Geometry

    small = load_graph(graph_path).nodes["small"].params
    step = max(1, round(30 / max(fps, 1e-3)))
    with av.open(str(clip)) as c:
        decoded = [f.to_ndarray(format="rgb24") for i, f in zip(range(frames * step), c.decode(video=0))][::step]
    g = Geometry.of(decoded[0].shape[:2], tuple(small.crop), (small.height, small.width), small.scale, small.fit)
    inputs = [g.apply(f) for f in decoded]
    model = load_stylizer(resolve_weights("starry_night", "style"))
    errors = {"input": warping_error(inputs, inputs)}
    for smoothing in ("none", "flow"):
        s = FrameStylizer(model, cfg=FastPathConfig(smoothing=smoothing))
        errors[smoothing] = warping_error(inputs, [s(np.array(f)) for f in inputs])
    return errors


def inference_paths(seconds: float) -> None:
    """Each CPU inference path on one 256x256 frame, one thread: fps and error against fp32 torch."""
    import io

    import numpy as np
    import torch
    from PIL import Image

    from avatars.core.weights import resolve_weights
    from avatars.style.checkpoint import load_stylizer
    from avatars.style.stylize import FastPathConfig, FrameStylizer

    torch.set_num_threads(1)
    model = load_stylizer(resolve_weights("starry_night", "style"))
    frame = np.asarray(Image.open(media_root() / "content" / "skimage_astronaut.png").convert("RGB").resize((256, 256)))
    reference = FrameStylizer(model, cfg=FastPathConfig(bf16=False, channels_last=False))
    ref = reference(frame).astype(np.float32)
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float().div(255).contiguous()

    def rate(run) -> float:
        run(), run()
        n, start = 0, time.perf_counter()
        while n < 3 or time.perf_counter() - start < seconds:
            run()
            n += 1
        return n / (time.perf_counter() - start)

    def to_uint8(y) -> np.ndarray:
        return (np.clip(np.asarray(y)[0].transpose(1, 2, 0), 0, 1) * 255).round().astype(np.float32)

    fast = FrameStylizer(model)
    base = rate(lambda: fast(frame))
    print(f"  torch fast path ({'bf16' if fast.bf16 else 'fp32'}, channels-last): {base:.1f} fps")
    paths = {"torch fp32": lambda: reference(frame)}
    out = {"torch fp32": lambda: ref}
    try:
        import openvino as ov

        converted = ov.convert_model(model.eval(), example_input=x)
        for precision in ("f32", "bf16"):
            compiled = ov.Core().compile_model(converted, "CPU", {"INFERENCE_NUM_THREADS": 1,
                                                                   "INFERENCE_PRECISION_HINT": precision})
            paths[f"OpenVINO {precision}"] = out[f"OpenVINO {precision}"] = \
                (lambda c=compiled: to_uint8(c({0: x.numpy()})[0]))
    except ImportError:
        print("  (openvino not installed: skipped)")
    try:
        import onnxruntime as ort

        buf = io.BytesIO()
        torch.onnx.export(model.eval(), (x,), buf, dynamo=False, input_names=["x"], opset_version=17)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])
        paths["ONNX Runtime fp32"] = out["ONNX Runtime fp32"] = \
            lambda: to_uint8(session.run(None, {"x": x.numpy()})[0])
    except Exception as exc:  # ImportError, or the exporter's error without the onnx package
        print(f"  (ONNX Runtime skipped: {type(exc).__name__}: {exc})")
    for name, run in paths.items():
        err = np.abs(out[name]() - ref) if name in out and name != "torch fp32" else None
        acc = f", error vs fp32 mean {err.mean():.2f} p99.9 {np.percentile(err, 99.9):.1f}" if err is not None else ""
        fps = rate(run)
        print(f"  {name}: {fps:.1f} fps ({fps / base:.2f}x the fast path){acc}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m launch bench live", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds per variant")
    ap.add_argument("--warmup", type=float, default=8.0, help="seconds before measuring (model loading)")
    ap.add_argument("--clip", type=Path, default=None, help=f"video standing in for the camera (default {CLIP})")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--compile-warmup", type=float, default=240.0, help="warm-up of the + compile variant")
    ap.add_argument("--first-frame", type=float, default=300.0, metavar="S",
                    help="at most this many seconds of each first-frame run (0: skip them)")
    ap.add_argument("--after-compile", type=float, default=15.0, metavar="S",
                    help="seconds of each first-frame run once the compiled network is in use (its fps)")
    ap.add_argument("--paths", action="store_true", help="also compare the CPU inference paths in this process")
    ap.add_argument("--before", type=Path, metavar="CKPT", help="also the shipped graph with this stylizer "
                    "(e.g. the wider network a narrower one replaced), measured just before `shipped`")
    ap.add_argument("--style-image", type=Path, metavar="PAINTING",
                    help="instead: the any-painting graph (graphs/stylize_any.yaml, the fast universal stylizer) on this "
                         "painting, against the per-style StyleNet (eager), and a new painting's first frame")
    ap.add_argument("--every", type=float, default=5.0, help="--style-image: seconds between paintings arriving")
    args = ap.parse_args(argv)
    variants = VARIANTS | ({BEFORE: {"model": str(args.before)}} if args.before else {})
    clip = args.clip or media_root() / CLIP
    if not clip.is_file():
        print(f"error: {clip}: no such clip (set STREAM_MEDIA or give --clip)")
        return 2
    if args.style_image:
        return any_painting(args, clip)
    if args.paths:
        print("inference paths, 256x256, 1 thread, in this process:")
        inference_paths(3.0)
    results: dict[str, LiveResult] = {}
    with tempfile.TemporaryDirectory() as tmp:
        graph = live_graph(clip, Path(tmp))
        if args.first_frame:
            print("from the start:", flush=True)
            first_frames(graph, args.first_frame, args.after_compile)
        for name in dict.fromkeys([*args.variants, *([BEFORE] if args.before else []), SHIPPED]):
            style = copy.deepcopy(variants[name])
            compiled = {**load_graph(graph).nodes["style"].raw_params, **style}.get("compile")
            results[name] = run_live(graph, style, args.seconds, args.compile_warmup if compiled else args.warmup)
            ratio = results[name].fps / next(iter(results.values())).fps
            print(f"  {name}: {results[name].line()} ({ratio:.2f}x {next(iter(results))})", flush=True)
        fps = results[SHIPPED].fps
        errors = flicker(clip, graph, fps)                     # at the spacing the shipped graph reaches
        print(f"flicker at {fps:.0f} fps (warping error, MSE in [0, 1]): input {errors['input']:.5f}, "
              f"per frame {errors['none']:.5f}, flow-smoothed {errors['flow']:.5f}")
    print(f"live stylize 256x256: {results[SHIPPED].line()}")
    return 0


def any_painting(args: argparse.Namespace, clip: Path) -> int:
    """The fast universal stylizer live, against the per-style StyleNet's eager graph in the same run."""
    if not args.style_image.is_file():
        print(f"error: {args.style_image}: no such painting")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        per_style = run_live(live_graph(clip, Path(tmp)), dict(EAGER), args.seconds, args.warmup)
        print(f"  StyleNet starry_night (per-style, eager): {per_style.line()}", flush=True)
        fast = run_live(any_painting_graph(clip, Path(tmp), args.style_image, args.every), {}, args.seconds, args.warmup)
        print(f"  fast universal, {args.style_image.name}: {fast.line()} ({fast.fps / per_style.fps:.2f}x StyleNet)")
    extra = fast.style
    if "style_first_frame_ms" not in extra:
        print(f"error: no painting reached the stylizer's style port in {args.warmup + args.seconds:g} s")
        return 1
    print(f"a new painting's statistics: {extra['style_switch_ms']:.0f} ms")
    print(f"first frame of a new painting: {extra['style_first_frame_ms']:.0f} ms (the slowest switch: the painting sent "
          f"to the first frame after it)")
    print(f"live stylize any painting 256x256: {fast.line()}")
    return 0
