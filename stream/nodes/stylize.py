"""Feed-forward stylization of every frame (StyleNet or TextureNet), any frame size; with a person mask
(buffers['mask']: the avatar's output, the pose node's segmentation) it paints the person, the
background or both, the look set by the painted region alone."""
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

    inputs = {"in": Port("video")}
    outputs = {"out": Port("video", doc="stylized image; the input's other buffers (mask) pass through")}

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

        def __post_init__(self) -> None:
            if not 0 <= self.smoothing_weight < 1:
                raise ValueError(f"smoothing_weight must be in [0, 1), got {self.smoothing_weight}")
            if self.threads < 0:
                raise ValueError("threads must be >= 0")
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

    def process(self, inputs: dict[str, Message]) -> None:
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
