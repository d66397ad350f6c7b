"""Feed-forward stylization of every frame (StyleNet or TextureNet), any frame size; with a person mask
(buffers['mask']: the avatar's output, the pose node's segmentation) it paints the person, the
background or both, the look set by the painted region alone.

With ``style_image`` (any picture) it is universal style transfer instead (``avatars.style.universal``:
by default the fast compact encoder and decoders distilled from VGG-19, or VGG-19 itself with WCT or
AdaIN), and a picture arriving on the optional ``style`` port switches the painting for the frames
after it, without a restart (also from a ``model``): its statistics are taken once, on arrival
(``style_switch_ms``; ``style_first_frame_ms``: the slowest time from a painting's send to the first
frame after it). A message there that is no RGB picture is refused with a warning and counted
(``styles_refused``); the frames keep the previous painting.

``frames_at_once`` (offline graphs, on a CPU): that many frames stylized side by side, each on its share
of the node's threads (``stream.ordered_pool``), emitted in order."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from stream.frames import as_alpha
from stream.message import Message
from stream.node import Node, NodeError, Port
from stream.params import param

if TYPE_CHECKING:
    from avatars.style.aot import AheadBuild
    from stream.ordered_pool import OrderedPool

log = logging.getLogger(__name__)
PAINTING_MAX_SIDE = 2048   # a painting's longer side: a style_image is read scaled to it, the style port refuses more
                           # (an 8000x8000 one cost 7.5 s and 1.5 GB in the float conversion before its scaling)


def compile_cache_dir() -> Path:
    """Where inductor keeps compiled kernels and FX graphs between runs (the first compile of the live
    stylizer took 166 s on two busy cores, the next start 4.4 s from this cache): the user's cache,
    ``$NEURAL_STREAM_CACHE`` or ``~/.cache/neural-stream``, unless TORCHINDUCTOR_CACHE_DIR says."""
    from avatars.core.weights import user_cache

    return user_cache("inductor")


def painting_problem(image: np.ndarray) -> str | None:
    """Why an image from the style port cannot be a painting (None: it can): an (H, W, 3) uint8 RGB picture
    with sides from 32 (fewer feature pixels than a covariance needs) to PAINTING_MAX_SIDE. (The port's
    type already rejects a message without an image, or one of other than 3 dimensions.)"""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        return (f"a {image.shape} {image.dtype} image is no RGB picture (needs (H, W, 3) uint8: grey, alpha, "
                f"16-bit or float pictures converted first, as stream.image_files reads them)")
    h, w = image.shape[:2]
    if min(h, w) < 32:
        return f"{w}x{h} is too small (sides of at least 32 pixels)"
    if max(h, w) > PAINTING_MAX_SIDE:
        return (f"{w}x{h} is too large (sides of at most {PAINTING_MAX_SIDE} pixels: scale it down before sending "
                f"it, as the paintings source does)")
    return None


class StylizeNode(Node):
    """Runs on the node's device and CUDA stream; channels-last, and bf16 autocast where the hardware has it."""

    inputs = {"in": Port("video"),
              "style": Port("video", required=False, doc="a painting (buffers['image'], RGB uint8): the frames after "
                                                         "it take its style (universal style transfer)")}
    outputs = {"out": Port("video", doc="stylized image; the input's other buffers (mask) pass through")}
    join = "any"  # frames and paintings each handled on arrival (one input alone: as before)
    # compile ahead (compile_in=background): what setup sets where compile is on
    _ahead = False                       # frames of one size run a package built by a child process, once built
    _compile_first_frame = False         # the first frame's size is compiled, once that frame is out
    _build: AheadBuild | None = None     # the child building it
    _pool: OrderedPool[Message, np.ndarray] | None = None  # frames_at_once > 1: the frames in flight

    @dataclass
    class Params:
        model: str = param("starry_night", "checkpoint file, or the name of a shipped style", weights="style")
        bf16: bool | None = param(None, "bf16 autocast; null = where native (GPU, AVX-512-BF16/AMX CPU), else fp32")
        channels_last: bool = param(True, "channels-last activations")
        compile: bool = param(False, "compile the network for the frames' size (see compile_in)")
        compile_in: Literal["background", "setup"] = param(
            "background", "background: frames run the eager network from the start; once the first is out, a child "
                          "process builds an AOTInductor package for its size (a minute or more on a CPU, once: kept "
                          "in the user's cache, then loaded in seconds), swapped in between two frames; setup: "
                          "torch.compile before the first frame (every size; with warmup_size)")
        warmup_size: list[int] = param([], "[width, height]: stylize one blank frame of this size in setup "
                                           "(allocates ahead; with compile_in=setup, compiles it there)")
        noise_scale: float = param(1.0, "TextureNet: style (high) vs content (low)")
        seed: int = param(0, "TextureNet: the fixed noise across frames")
        smoothing: Literal["none", "ema", "flow"] = param("none", "temporal smoothing against flicker")
        smoothing_weight: float = param(0.5, "share of the previous output kept")
        threads: int = param(0, "CPU threads for torch; 0 = the process's share of the host's cores")
        frames_at_once: int = param(1, "CPU: frames stylized side by side, the threads split between them, "
                                       "emitted in order (throughput for offline graphs: 2 on 2 cores; 1 = "
                                       "lowest latency); 1 with smoothing (it needs the frame before), a region or "
                                       "compile")
        region: Literal["frame", "person", "background"] = param(
            "frame", "with a mask: what is painted (the rest keeps the input); no mask = no person")
        mask_mode: Literal["fill", "stats"] = param(
            "fill", "region's statistics on its crop over grey (fill), or amid the real surroundings (stats)")
        style_image: str = param("", "a painting (any picture): universal style transfer after it instead of `model`",
                                 file="input")
        method: Literal["fast", "wct", "adain"] = param(
            "fast", "universal: fast (the compact pair distilled from VGG-19, live on a CPU), or VGG-19 with wct "
                    "(covariance) or adain (per-channel mean and spread)")
        alpha: float = param(1.0, "universal: share of the painting's statistics (0: the content reconstructed)")
        decoder: str = param("", "universal: the encoder/decoder checkpoint or shipped name; empty: the method's own "
                                 "(compact_universal for fast, vgg_relu3_1 otherwise)", weights="universal")
        levels: list[str] = param([], "universal: the cascade's levels (relu1_1, relu2_1, relu3_1); empty: every "
                                      "level the decoder has")

        def __post_init__(self) -> None:
            if not 0 <= self.smoothing_weight < 1:
                raise ValueError(f"smoothing_weight must be in [0, 1), got {self.smoothing_weight}")
            if self.threads < 0:
                raise ValueError("threads must be >= 0")
            if not 1 <= self.frames_at_once <= 8:
                raise ValueError(f"frames_at_once must be in 1..8, got {self.frames_at_once}")
            if not 0 <= self.alpha <= 1:
                raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
            if self.warmup_size and (len(self.warmup_size) != 2 or min(self.warmup_size) < 8):
                raise ValueError(f"warmup_size is [width, height], each >= 8, got {self.warmup_size}")

    def setup(self) -> None:
        if self.params.compile:  # read by inductor when it compiles: its artefacts kept between runs
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache_dir()))
        import torch

        from avatars.core.weights import resolve_weights
        from avatars.style.stylize import FastPathConfig, FrameStylizer
        from avatars.style.checkpoint import load_stylizer
        from stream.devices import open_device

        p = self.params
        if p.threads:
            torch.set_num_threads(p.threads)
        self.ctx.metrics.extra["threads"] = torch.get_num_threads()
        self.dev = open_device(self.ctx.device)
        self.ctx.metrics.extra["styles_refused"] = 0
        self._painting_sent: float | None = None  # capture time of a painting whose first frame is not out yet
        self._frames_out = False
        self._open_pool(torch.get_num_threads())
        if p.style_image:
            self._universal(self._painting(p.style_image))
            return
        try:
            model = load_stylizer(resolve_weights(p.model, "style"), self.dev.device)
        except (FileNotFoundError, ValueError, KeyError) as exc:
            raise NodeError(f"{self.ctx.name}: cannot load style model: {exc}") from None
        in_setup = p.compile and p.compile_in == "setup"
        cfg = FastPathConfig(bf16=p.bf16, channels_last=p.channels_last, compile=in_setup, noise_scale=p.noise_scale,
                             seed=p.seed, smoothing=p.smoothing, smoothing_weight=p.smoothing_weight,
                             region=p.region, mask_mode=p.mask_mode)
        self.stylizer = FrameStylizer(model, self.dev.device, cfg)
        self._started = time.monotonic()
        # compiled ahead in the background: whole frames only (a person's crop changes size every frame)
        self._ahead = p.compile and not in_setup and p.region == "frame"
        if self._ahead:
            self.ctx.metrics.extra.update(eager_frames=0, compiled_frames=0)
            self._compile_first_frame = True
        elif p.compile and not in_setup:
            log.info("%s: region %s stylizes crops of changing sizes: not compiled ahead", self.ctx.name, p.region)
        if p.warmup_size:
            if in_setup:
                self.ctx.metrics.state = "compiling"  # the live status shows it
            with self.dev:
                error = self.stylizer.warm_up(p.warmup_size[1], p.warmup_size[0])
            if in_setup:
                self.ctx.metrics.state = None
                if error:
                    self._compile_failed(error)
                else:
                    self.ctx.metrics.extra["compile_s"] = round(time.monotonic() - self._started, 1)

    def _compile_ahead(self, shape: tuple[int, int, int, int]) -> None:
        """Start building the package for frames of ``shape``, or loading it where the cache has it."""
        from avatars.core.weights import resolve_weights, user_cache
        from avatars.style.aot import AheadBuild, AheadTarget

        s, p = self.stylizer, self.params
        target = AheadTarget(str(resolve_weights(p.model, "style")), shape, str(self.dev.device), s.bf16,
                             s.cfg.channels_last, s.cfg.noise_scale, s.cfg.seed)
        try:
            self._build = AheadBuild(target, user_cache("aot"))
        except OSError as exc:  # no cache folder, no process
            self._compile_failed(f"{type(exc).__name__}: {exc}")
            return
        self.ctx.metrics.state = "compiling"
        self._swap_when_built()

    def _swap_when_built(self) -> None:
        """Between two frames: once the child has built the package and a thread has loaded it, run it."""
        try:
            network = self._build.poll()
            if network is None:
                return
            self.stylizer.use_compiled(self._build.target.shape, network)
        except RuntimeError as exc:  # the child's error, or a package torch cannot load
            self._compile_failed(str(exc))
        else:
            self.ctx.metrics.extra["compile_s"] = round(time.monotonic() - self._started, 1)
            log.info("%s: compiled network in use after %.1f s", self.ctx.name, time.monotonic() - self._started)
        self._build, self.ctx.metrics.state = None, None

    def _compile_failed(self, error: str) -> None:
        log.warning("%s: compiling failed, running uncompiled: %s", self.ctx.name, error)
        self.ctx.metrics.extra["compile_error"] = error

    def _painting(self, path: str) -> np.ndarray:
        from stream.image_files import ImageFileError, read_image

        try:
            return read_image(path, max_side=PAINTING_MAX_SIDE, min_side=32).rgb
        except ImageFileError as exc:
            raise NodeError(f"{self.ctx.name}: style_image: {exc}") from None

    def _universal(self, painting: np.ndarray) -> None:
        """Switch to universal style transfer after ``painting`` (the decoder loaded on first use)."""
        from avatars.style.universal import UniversalConfig, UniversalStylizer, load_codec, resolve_choice

        if not isinstance(getattr(self, "stylizer", None), UniversalStylizer):
            from avatars.core.weights import resolve_weights

            p = self.params
            codec, method = resolve_choice(p.method, p.decoder)
            try:
                cfg = UniversalConfig(method=method, alpha=p.alpha, region=p.region, levels=tuple(p.levels) or None)
                self.stylizer = UniversalStylizer(load_codec(resolve_weights(codec, "universal"), self.dev.device),
                                                  self.dev.device, cfg)
            except (FileNotFoundError, ValueError, KeyError) as exc:
                raise NodeError(f"{self.ctx.name}: cannot load the universal decoder: {exc}") from None
        started = time.perf_counter()
        with self.dev:
            self.stylizer.set_style(painting)
        self.ctx.metrics.extra["style_switch_ms"] = round(1000 * (time.perf_counter() - started), 1)

    def _switch_style(self, msg: Message) -> None:
        """A painting from the ``style`` port; one the stylizer cannot use is refused, the previous one kept."""
        image = msg.buffers["image"]
        if problem := painting_problem(image):
            self.ctx.metrics.extra["styles_refused"] += 1
            log.warning("%s: style port: refused a painting: %s; keeping the previous style", self.ctx.name, problem)
            return
        self._universal(np.array(image))  # a copy: the producer's shared-memory slot is not ours to keep
        if self._frames_out:  # its first frame out measures a switch as a viewer sees it (not one queued at start)
            self._painting_sent = msg.capture_ts

    def _open_pool(self, threads: int) -> None:
        """frames_at_once > 1: the pool that stylizes them, where it can: on a CPU, whole frames (a region's
        statistics are set on the shared network per call), no temporal state, no compiling."""
        p = self.params
        if p.frames_at_once == 1:
            return
        held = ("the device is not a CPU" if self.dev.device.type != "cpu" else
                f"smoothing {p.smoothing} needs the frame before" if p.smoothing != "none" else
                "the network is compiled" if p.compile else
                f"region {p.region} sets the network's statistics per frame" if p.region != "frame" else None)
        if held:
            log.info("%s: one frame at a time: %s", self.ctx.name, held)
            return
        from stream.ordered_pool import OrderedPool

        self._pool = OrderedPool(p.frames_at_once, threads // p.frames_at_once, self.ctx.name)
        self.ctx.metrics.extra["frames_at_once"] = p.frames_at_once

    def process(self, inputs: dict[str, Message]) -> None:
        from avatars.style.stylize import FrameStylizer  # loaded in setup already

        if "style" in inputs:
            self._emit_all(self._pool.drain() if self._pool else [])  # the frames before it keep the painting before
            self._switch_style(inputs["style"])
            if self._ahead and not isinstance(self.stylizer, FrameStylizer):  # universal now: nothing to swap into
                self._stop_compiling()
            return
        msg = inputs["in"]
        image = msg.buffers["image"]
        if self._pool is not None:  # in flight after process returns: its own copies, not the producer's slots
            own = msg.derive(**{name: np.array(b) for name, b in msg.buffers.items()})
            self._emit_all(self._pool.submit(own, self._stylize, own.buffers["image"], None))
            return
        mask = msg.buffers.get("mask") if self.params.region != "frame" else None
        if mask is not None:
            mask = as_alpha(mask, *image.shape[:2])
        if self.params.smoothing == "flow":
            image = np.array(image)  # kept as the previous frame: do not pin the producer's slot
        if self._build is not None:
            self._swap_when_built()
        self._emit_frame(msg, self._stylize(image, mask))
        if self._ahead:
            shape = (1, 3, *image.shape[:2])
            self.ctx.metrics.extra["compiled_frames" if self.stylizer.compiled_for(shape) else "eager_frames"] += 1
            if self._compile_first_frame:  # only now: starting the child or the loader does not delay this frame
                self._compile_first_frame = False
                self._compile_ahead(shape)

    def _stylize(self, image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        with self.dev:  # the device's stream is per thread: entered in the pool's threads too
            return self.stylizer(image, mask)

    def _emit_frame(self, msg: Message, out: np.ndarray) -> None:
        self.emit("out", msg.derive(**{**msg.buffers, "image": out}))
        self._frames_out = True
        if self._painting_sent is not None:
            extra, ms = self.ctx.metrics.extra, round(1000 * (time.time() - self._painting_sent), 1)
            extra["style_first_frame_ms"] = max(ms, extra.get("style_first_frame_ms", 0.0))  # the slowest switch
            self._painting_sent = None

    def _emit_all(self, done: list[tuple[Message, np.ndarray]]) -> None:
        for msg, out in done:
            self._emit_frame(msg, out)

    def finish(self) -> None:
        if self._pool is not None:
            self._emit_all(self._pool.drain())

    def _stop_compiling(self) -> None:
        """Kill the compile process, if one runs, and compile nothing more."""
        if self._build is not None:
            self._build.stop()
            self._build, self.ctx.metrics.state = None, None
        self._ahead = self._compile_first_frame = False

    def close(self) -> None:
        self._stop_compiling()  # no compile process outlives the node
        if self._pool is not None:
            self._pool.close()
