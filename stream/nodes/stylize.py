"""Feed-forward stylization of every frame (StyleNet or TextureNet), any frame size; with a person mask
(buffers['mask']: the avatar's output, the pose node's segmentation) it paints the person, the
background or both, the look set by the painted region alone.

With ``style_image`` (any picture) it is universal style transfer instead (``avatars.style.universal``:
VGG-19 features, WCT or AdaIN, a decoder trained only to reconstruct), and a picture arriving on the
optional ``style`` port switches the painting for the frames after it, without a restart (also from a
``model``): its statistics are taken once, on arrival. A message there that is no RGB picture is
refused with a warning and counted (``styles_refused``); the frames keep the previous painting."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from stream.frames import as_alpha
from stream.message import Message
from stream.node import Node, NodeError, Port
from stream.params import param

log = logging.getLogger(__name__)


def compile_cache_dir() -> Path:
    """Where inductor keeps compiled kernels and FX graphs between runs (the first compile of the live
    stylizer took 166 s on two busy cores, the next start 4.4 s from this cache): the user's cache,
    ``$NEURAL_STREAM_CACHE`` or ``~/.cache/neural-stream``, unless TORCHINDUCTOR_CACHE_DIR says."""
    from avatars.core.weights import user_cache

    return user_cache("inductor")


class StylizeNode(Node):
    """Runs on the node's device and CUDA stream; channels-last, and bf16 autocast where the hardware has it."""

    inputs = {"in": Port("video"),
              "style": Port("video", required=False, doc="a painting (buffers['image'], RGB uint8): the frames after "
                                                         "it take its style (universal style transfer)")}
    outputs = {"out": Port("video", doc="stylized image; the input's other buffers (mask) pass through")}
    join = "any"  # frames and paintings each handled on arrival (one input alone: as before)

    @dataclass
    class Params:
        model: str = param("starry_night", "checkpoint file, or the name of a shipped style", weights="style")
        bf16: bool | None = param(None, "bf16 autocast; null = where native (GPU, AVX-512-BF16/AMX CPU), else fp32")
        channels_last: bool = param(True, "channels-last activations")
        compile: bool = param(False, "torch.compile the network (each new frame size compiles: minutes on a CPU the "
                                     "first time, seconds once inductor's cache under the user's cache has it)")
        warmup_size: list[int] = param([], "[width, height]: stylize one blank frame of this size in setup "
                                           "(compiles it there, so the first real frame does not stall)")
        noise_scale: float = param(1.0, "TextureNet: style (high) vs content (low)")
        seed: int = param(0, "TextureNet: the fixed noise across frames")
        smoothing: Literal["none", "ema", "flow"] = param("none", "temporal smoothing against flicker")
        smoothing_weight: float = param(0.5, "share of the previous output kept")
        threads: int = param(0, "CPU threads for torch; 0 = the process's share of the host's cores")
        region: Literal["frame", "person", "background"] = param(
            "frame", "with a mask: what is painted (the rest keeps the input); no mask = no person")
        mask_mode: Literal["fill", "stats"] = param(
            "fill", "region's statistics on its crop over grey (fill), or amid the real surroundings (stats)")
        style_image: str = param("", "a painting (any picture): universal style transfer after it instead of `model`",
                                 file="input")
        method: Literal["wct", "adain"] = param("wct", "universal: the feature transform (wct: covariance, adain: "
                                                       "per-channel mean and spread)")
        alpha: float = param(1.0, "universal: share of the painting's statistics (0: the content reconstructed)")
        decoder: str = param("vgg_relu3_1", "universal: decoder checkpoint, or a shipped decoder's name",
                             weights="universal")

        def __post_init__(self) -> None:
            if not 0 <= self.smoothing_weight < 1:
                raise ValueError(f"smoothing_weight must be in [0, 1), got {self.smoothing_weight}")
            if self.threads < 0:
                raise ValueError("threads must be >= 0")
            if not 0 <= self.alpha <= 1:
                raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
            if self.warmup_size and (len(self.warmup_size) != 2 or min(self.warmup_size) < 8):
                raise ValueError(f"warmup_size is [width, height], each >= 8, got {self.warmup_size}")

    def setup(self) -> None:
        # Threads that wait at OpenMP barriers sleep instead of spinning: on cores shared with other
        # work a spinning pool starves itself (2 threads on 2 busy cores: 1.5-1.8 fps against 7-12
        # passive and 9-10 with 1 thread, bench/live.py). Read when torch's OpenMP starts, so only
        # where nothing in this process loaded torch before; the environment's own setting wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
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
        if p.style_image:
            self._universal(self._painting(p.style_image))
            return
        try:
            model = load_stylizer(resolve_weights(p.model, "style"), self.dev.device)
        except (FileNotFoundError, ValueError, KeyError) as exc:
            raise NodeError(f"{self.ctx.name}: cannot load style model: {exc}") from None
        cfg = FastPathConfig(bf16=p.bf16, channels_last=p.channels_last, compile=p.compile, noise_scale=p.noise_scale,
                             seed=p.seed, smoothing=p.smoothing, smoothing_weight=p.smoothing_weight,
                             region=p.region, mask_mode=p.mask_mode)
        self.stylizer = FrameStylizer(model, self.dev.device, cfg)
        if p.warmup_size:
            started = time.monotonic()
            self.ctx.metrics.state = "compiling" if p.compile else None  # the live status shows it
            with self.dev:
                error = self.stylizer.warm_up(p.warmup_size[1], p.warmup_size[0])
            self.ctx.metrics.state = None
            if error:
                log.warning("%s: torch.compile failed, running uncompiled: %s", self.ctx.name, error)
                self.ctx.metrics.extra["compile_error"] = error
            elif p.compile:
                self.ctx.metrics.extra["compile_s"] = round(time.monotonic() - started, 1)

    def _painting(self, path: str) -> np.ndarray:
        from stream.image_files import ImageFileError, read_image

        try:
            return read_image(path, max_side=2048, min_side=32).rgb
        except ImageFileError as exc:
            raise NodeError(f"{self.ctx.name}: style_image: {exc}") from None

    def _universal(self, painting: np.ndarray) -> None:
        """Switch to universal style transfer after ``painting`` (the decoder loaded on first use)."""
        from avatars.style.universal import UniversalConfig, UniversalStylizer

        if not isinstance(getattr(self, "stylizer", None), UniversalStylizer):
            from avatars.core.weights import resolve_weights
            from avatars.style.decoder import load_decoder

            p = self.params
            try:
                decoder = load_decoder(resolve_weights(p.decoder, "universal"), self.dev.device)
            except (FileNotFoundError, ValueError, KeyError) as exc:
                raise NodeError(f"{self.ctx.name}: cannot load the universal decoder: {exc}") from None
            cfg = UniversalConfig(method=p.method, alpha=p.alpha, region=p.region)
            self.stylizer = UniversalStylizer(decoder, self.dev.device, cfg)
        started = time.perf_counter()
        with self.dev:
            self.stylizer.set_style(painting)
        self.ctx.metrics.extra["style_switch_ms"] = round(1000 * (time.perf_counter() - started), 1)

    def _switch_style(self, msg: Message) -> None:
        """A painting from the ``style`` port; one that is no RGB picture is refused, the previous one kept."""
        image = np.asarray(msg.buffers.get("image"))
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 32:
            self.ctx.metrics.extra["styles_refused"] += 1
            log.warning("%s: style port: refused a painting of shape %s, dtype %s (needs (H, W, 3) uint8, sides >= 32); "
                        "keeping the previous style", self.ctx.name, image.shape, image.dtype)
            return
        self._universal(np.array(image))  # a copy: the producer's shared-memory slot is not ours to keep

    def process(self, inputs: dict[str, Message]) -> None:
        if "style" in inputs:
            self._switch_style(inputs["style"])
            return
        msg = inputs["in"]
        image = msg.buffers["image"]
        mask = msg.buffers.get("mask") if self.params.region != "frame" else None
        if mask is not None:
            mask = as_alpha(mask, *image.shape[:2])
        if self.params.smoothing == "flow":
            image = np.array(image)  # kept as the previous frame: do not pin the producer's slot
        with self.dev:
            out = self.stylizer(image, mask)
        self.emit("out", msg.derive(**{**msg.buffers, "image": out}))
