"""A stylizer's network compiled ahead of time for one input shape (an AOTInductor package), built in a child
process and kept in a cache, so a live stylizer runs the eager network from its first frame and swaps.

Why a child process: compiling in a thread of the running process is unsafe with torch 2.14 (FX tracing
patches ``torch.nn.Module.__call__`` process-wide: an eager call during the trace failed with
``NameError: module is not installed as a submodule``), and the compile's Python work starved the eager
frames of the interpreter lock (4 frames in 20 s). A child shares neither; it exports ``NetworkCall``
(the same network call the eager stylizer makes: autocast, channels-last, TextureNet's noise), builds the
package, checks its output against the eager network's, and only then moves it into the cache. Loading
the package takes milliseconds (no tracing, no compiling), so the swap happens between two frames.

The cache key holds everything the package depends on: the checkpoint's bytes (sha256), the input shape,
bf16, channels-last, TextureNet's noise scale, torch's version, and the device (CPU: the instruction set
torch dispatches to and the machine; CUDA: the GPU's name and compute capability, CUDA's version). A key
that matches a package in the cache needs no child at all.

The child runs ``python -m avatars.style.aot BUILD.json`` in its own session (so its C++ compiler goes
with it when it is killed), niced (the live frames come first), one thread and one compile thread; it dies
with its parent (PR_SET_PDEATHSIG). Its failure is the first line of its error, for the caller to report and carry on
eagerly.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from avatars.core.precision import native_bf16

log = logging.getLogger(__name__)

NICE = 5     # the child's niceness above its parent's
FORMAT = 1   # bumped when what is built (NetworkCall, the inductor options) changes
#: Largest difference between the package's output and the eager network's (RGB in [0, 1]) for the package
#: to be used. Measured on four photos through the shipped starry_night at 256x256 and a tiny test network at
#: 32x32: fp32 at most 1.8e-5 (kernel order), bf16 up to 0.027 (7 levels of 255, where a value rounds to bf16
#: differently): margins of 16x and 2.2x.
TOLERANCE = {False: 3e-4, True: 0.06}


@dataclass(frozen=True)
class AheadTarget:
    """What one package is compiled for: a stylizer checkpoint under the fast path's settings, one input shape."""
    checkpoint: str
    shape: tuple[int, int, int, int]     # (N, 3, H, W)
    device: str = "cpu"                  # "cpu" or "cuda:N"
    bf16: bool = False
    channels_last: bool = True
    noise_scale: float = 1.0             # TextureNet: fixed in the package
    seed: int = 0                        # TextureNet: the noise the check uses (an input of the package)

    def key(self) -> str:
        """Hex digest of all the package depends on (the module docstring)."""
        digest = hashlib.sha256()
        with open(self.checkpoint, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        fields = {"format": FORMAT, "weights": digest.hexdigest(), "shape": list(self.shape), "bf16": self.bf16,
                  "channels_last": self.channels_last, "noise_scale": self.noise_scale,
                  "torch": torch.__version__, "device": device_signature(self.device)}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def package(self, cache: Path) -> Path:
        """Where its package lives in ``cache``: readable name, then the key."""
        n, _, h, w = self.shape
        return cache / f"{Path(self.checkpoint).stem}-{n}x{h}x{w}-{self.key()[:20]}.pt2"


def device_signature(device: str) -> str:
    """What compiled code for ``device`` depends on beyond torch's version."""
    dev = torch.device(device)
    if dev.type == "cuda":
        major, minor = torch.cuda.get_device_capability(dev)
        return f"cuda {torch.cuda.get_device_name(dev)} sm_{major}{minor} cuda {torch.version.cuda}"
    return f"cpu {platform.machine()} {torch.backends.cpu.get_cpu_capability()} bf16 {native_bf16('cpu')}"


def load_package(path: Path, device: str) -> Callable[..., torch.Tensor]:
    """A built package as a callable taking ``NetworkCall``'s inputs (milliseconds: no compiling). On CUDA it runs
    on the caller's current stream (the AOTI runner takes ``getCurrentCUDAStream`` when given none)."""
    from torch._inductor import aoti_load_package  # imports inductor: seconds, the first time in a process

    dev = torch.device(device)
    index = (dev.index if dev.index is not None else torch.cuda.current_device()) if dev.type == "cuda" else -1
    return aoti_load_package(str(path), device_index=index)


class AheadBuild:
    """The compiled network for ``target``: its package taken from ``cache`` where it is there, else built by a
    child process; then loaded in a thread (the first load in a process imports inductor: 4.6 s on two busy
    cores, which would stall the frames; later loads take 0.02 s).

    ``poll()`` returns the loaded network once ready, None until then, and raises ``RuntimeError`` (the child's
    error, or why the package would not load) when it cannot be had; ``stop()`` kills the child and what it
    started."""

    def __init__(self, target: AheadTarget, cache: Path):
        self.target, self.path = target, target.package(cache)
        self.proc: subprocess.Popen | None = None
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="aot-load")
        self._loaded: Future | None = None
        if self.path.is_file():
            self._loaded = self._loader.submit(load_package, self.path, target.device)
            return
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="build-", dir=cache, delete=False) as job:
            json.dump({"target": asdict(target), "out": str(self.path), "parent": os.getpid()}, job)
        self._job, self._stderr = Path(job.name), tempfile.TemporaryFile()
        env = {**os.environ, "TORCHINDUCTOR_COMPILE_THREADS": os.environ.get("TORCHINDUCTOR_COMPILE_THREADS", "1")}
        self.proc = subprocess.Popen([sys.executable, "-m", "avatars.style.aot", str(self._job)], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
                                     start_new_session=True)
        try:  # niced from its first import on: the frames of the processes starting beside it come first
            os.setpriority(os.PRIO_PROCESS, self.proc.pid, os.getpriority(os.PRIO_PROCESS, 0) + NICE)
        except OSError:  # gone already: poll() says why
            pass
        log.info("compiling the stylizer for %s in child %d -> %s", target.shape, self.proc.pid, self.path)

    def poll(self) -> Callable[..., torch.Tensor] | None:
        if self._loaded is None:
            code = self.proc.poll()
            if code is None:
                return None
            self._job.unlink(missing_ok=True)
            if code != 0 or not self.path.is_file():
                self._stderr.seek(0)
                lines = self._stderr.read().decode(errors="replace").strip().splitlines()
                error = next((ln for ln in reversed(lines) if ln.startswith("error: ")), lines[-1] if lines else "")
                raise RuntimeError(error.removeprefix("error: ") or f"the compile process exited with {code}")
            self._loaded = self._loader.submit(load_package, self.path, self.target.device)
        if not self._loaded.done():
            return None
        try:
            return self._loaded.result()
        except Exception as exc:  # a package torch cannot load (truncated, another build's)
            raise RuntimeError(f"cannot load {self.path}: {type(exc).__name__}: {exc}") from exc

    def stop(self) -> None:
        """Kill the child's whole session (its compiler and any workers) and wait for it: no orphan is left."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self._job.unlink(missing_ok=True)
        self._loader.shutdown(wait=False)


def build(target: AheadTarget, out: Path) -> None:
    """Export ``NetworkCall`` for ``target``, compile it with AOTInductor, check it against the eager network
    within ``TOLERANCE``, and move it to ``out`` (atomic: a reader never sees half a package)."""
    from torch._inductor import aoti_compile_and_package

    from avatars.style.checkpoint import load_stylizer
    from avatars.style.stylize import FastPathConfig, FrameStylizer

    device = torch.device(target.device)
    cfg = FastPathConfig(bf16=target.bf16, channels_last=target.channels_last, noise_scale=target.noise_scale,
                         seed=target.seed)
    stylizer = FrameStylizer(load_stylizer(target.checkpoint, device), device, cfg)
    # a smooth picture with edges, not noise: what the check compares is what frames look like
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(target.shape[0], 3, 8, 8, generator=g), target.shape[-2:],
                                        mode="bilinear").to(device)
    with torch.no_grad():
        program = torch.export.export(stylizer.call, stylizer.network_inputs(x))
    partial = out.with_name(f"{out.stem}.partial-{os.getpid()}.pt2")  # its suffix must be .pt2
    try:
        aoti_compile_and_package(program, package_path=str(partial))
        eager = stylizer.stylize_tensor(x)
        stylizer.use_compiled(tuple(x.shape), load_package(partial, target.device))
        error = (stylizer.stylize_tensor(x) - eager).abs().max().item()
        if not error <= TOLERANCE[target.bf16]:
            raise RuntimeError(f"the compiled network differs from the eager one by {error:.3g} "
                               f"(more than {TOLERANCE[target.bf16]:g})")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    log.info("built %s (largest difference from eager %.3g)", out, error)


def main(job_file: str) -> int:
    """The child: die with the parent, one thread (the live frames keep the other cores), build, report an error's
    first line."""
    job = json.loads(Path(job_file).read_text())
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the node's death takes this build along
    if os.getppid() != job["parent"]:  # the parent died before the prctl
        return 1
    torch.set_num_threads(1)
    target = AheadTarget(**{**job["target"], "shape": tuple(job["target"]["shape"])})
    try:
        build(target, Path(job["out"]))
    except Exception as exc:  # inductor's and export's failures have no common base class
        print(f"error: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main(sys.argv[1]))
