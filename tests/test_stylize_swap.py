"""The live stylizer compiled ahead while frames flow: the eager network from the first frame while a child
process builds an AOTInductor package, then the package; a failed build leaves it eager and says why; no
build outlives the node. A tiny network at 32x32 (a build still takes about a minute on two busy cores)."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from PIL import Image

from avatars.core.precision import use_bf16
from avatars.style.aot import TOLERANCE, AheadTarget, load_package
from avatars.style.checkpoint import load_stylizer, save_stylizer
from avatars.style.stylenet import StyleNet, StyleNetConfig
from avatars.style.stylize import FastPathConfig, FrameStylizer
from stream.graph import load_graph
from stream.supervisor import Supervisor

SIZE = 32
LIMIT_S = 600  # how long a run may wait for what it waits for (a build on a loaded machine), then it fails


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_stylizer(tmp_path_factory.mktemp("tiny") / "tiny.safetensors",
                         StyleNet(StyleNetConfig(channels=(4, 8, 8), n_residual=1)), {})


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A cold user cache for this test (packages under aot/, inductor's files under inductor/)."""
    monkeypatch.setenv("NEURAL_STREAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    return tmp_path / "cache"


class _Watch:
    """The supervisor's status view: keeps every status of the style node, and ends the run (its duration
    set to now) once ``until`` holds for it and the sink has reported a frame (a live run whose sink got
    nothing fails, and the sink's status can lag the stylizer's by a beat)."""

    def __init__(self, sup: Supervisor, until: Callable[[dict[str, Any]], bool], also: Callable[[], None] = None):
        self.sup, self.until, self.also = sup, until, also
        self.seen: list[dict[str, Any]] = []
        self.report: dict[str, Any] | None = None

    def update(self, handles: list[Any], elapsed: float) -> None:
        status = {n: s for h in handles for n, s in h.node_status.items()}
        style = dict(status.get("style", {}).get("metrics", {}))
        if style:
            self.seen.append(style)
            if self.until(style) and status.get("sink", {}).get("metrics", {}).get("frames_in", 0):
                self.sup.duration = elapsed
        if self.also:
            self.also()

    def close(self, report: dict[str, Any]) -> None:
        self.report = report


def _run_until(tmp_path: Path, checkpoint: Path, until: Callable[[dict[str, Any]], bool],
               also: Callable[[], None] = None) -> _Watch:
    """A live graph (a paced 30 fps source, the stylizer compiling ahead, a sink) until ``until`` holds."""
    path = tmp_path / "live.yaml"
    path.write_text(textwrap.dedent(f"""
        name: live
        policy: latest
        nodes:
          - {{name: source, kind: synthetic, params: {{width: {SIZE}, height: {SIZE}, frames: 0, fps: 30,
                                                       realtime: true}}}}
          - {{name: style, kind: stylize, params: {{model: {checkpoint}, compile: true, warmup_size: [{SIZE}, {SIZE}],
                                                    threads: 1}}}}
          - {{name: sink, kind: discard}}
        edges: [source.out -> style.in, style.out -> sink.in]
    """))
    sup = Supervisor(load_graph(path), {}, duration=LIMIT_S, quiet=True)
    sup.view = watch = _Watch(sup, until, also)
    assert sup.run() == 0, sup.last_report
    assert watch.until(watch.seen[-1]), f"not reached in {LIMIT_S} s: {watch.seen[-1]}"
    return watch


def _extra(style: dict[str, Any]) -> dict[str, Any]:
    return style.get("extra", {})


def _builds(cache: Path) -> list[int]:
    """Live processes building a package into ``cache`` (its path is in their command line)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if "avatars.style.aot" in cmd and str(cache) in cmd and state != "Z":
            found.append(int(proc.name))
    return found


def test_frames_flow_eagerly_while_compiling_then_from_the_compiled_network(tmp_path, tiny, cache, media):
    watch = _run_until(tmp_path, tiny, lambda s: _extra(s).get("compiled_frames", 0) >= 5)
    style = watch.report["nodes"]["style"]
    assert "compile_error" not in style["extra"], style["extra"]
    assert any(s.get("state") == "compiling" and _extra(s).get("eager_frames", 0) >= 3 for s in watch.seen), \
        "no frames while compiling"
    assert style["extra"]["compiled_frames"] >= 5 and style["state"] != "compiling"
    assert watch.report["nodes"]["sink"]["frames_in"] > 0

    # the swapped network's frames are the eager network's, within what bf16/kernel order change
    bf16 = use_bf16(None, "cpu")
    package = AheadTarget(str(tiny), (1, 3, SIZE, SIZE), "cpu", bf16).package(cache / "aot")
    assert [p.name for p in (cache / "aot").iterdir()] == [package.name]   # the build's partial files are gone
    picture = np.asarray(Image.open(media / "content" / "skimage_astronaut.png").convert("RGB").resize((SIZE, SIZE)))
    x = torch.tensor(picture).permute(2, 0, 1)[None].float() / 255
    stylizer = FrameStylizer(load_stylizer(tiny), cfg=FastPathConfig(bf16=bf16))
    eager = stylizer.stylize_tensor(x)
    stylizer.use_compiled(tuple(x.shape), load_package(package, "cpu"))
    assert stylizer.compiled_for(tuple(x.shape))
    assert (stylizer.stylize_tensor(x) - eager).abs().max().item() <= TOLERANCE[bf16]

    # the next start finds it in the cache: no build, the compiled network within the run
    again = _run_until(tmp_path, tiny, lambda s: _extra(s).get("compiled_frames", 0) >= 3,
                       also=lambda: _builds(cache) and pytest.fail("a build started though the cache had the package"))
    assert "compile_error" not in again.report["nodes"]["style"]["extra"]


def test_a_failed_compile_leaves_the_stylizer_eager_saying_why(tmp_path, tiny, cache, monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/c++")  # inductor's compiler, for the child as for anyone
    errors: list[int] = []

    def eager_after_the_error(style: dict[str, Any]) -> bool:
        if "compile_error" in _extra(style) and not errors:
            errors.append(_extra(style)["eager_frames"])
        return bool(errors) and _extra(style)["eager_frames"] >= errors[0] + 5

    watch = _run_until(tmp_path, tiny, eager_after_the_error)
    style = watch.report["nodes"]["style"]
    assert "C++ compiler" in style["extra"]["compile_error"], style["extra"]
    assert style["extra"]["compiled_frames"] == 0 and style["state"] != "compiling"
    assert not list((cache / "aot").glob("*.pt2"))


def test_no_compile_process_outlives_the_node(tmp_path, tiny, cache):
    seen: set[int] = set()
    watch = _run_until(tmp_path, tiny, lambda s: bool(seen) and _extra(s).get("eager_frames", 0) >= 3,
                       also=lambda: seen.update(_builds(cache)))
    assert watch.seen[-1].get("state") == "compiling" and seen   # stopped mid-build
    assert _builds(cache) == [], "the compile process outlived its node"
    assert not list((cache / "aot").glob("*.pt2"))
