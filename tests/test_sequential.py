"""`bench pipeline`'s baseline: a graph's nodes one after another in one thread write what the runtime writes."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

from bench._sequential import SequentialGraph
from stream.graph import load_graph

REPO = Path(__file__).resolve().parents[1]
GRAPH = """
    name: sequential
    nodes:
      - {name: src, kind: synthetic, params: {width: 64, height: 48, frames: FRAMES}}
      - {name: inv, kind: invert}
      - {name: tile, kind: mosaic, params: {layout: row}}
      - {name: sink, kind: image_seq, params: {path: OUT/%03d.png}}
    edges: [src.out -> inv.in, src.out -> tile.a, inv.out -> tile.b, tile.out -> sink.in]
"""


def _graph(tmp_path: Path, name: str, frames: int) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(GRAPH).replace("FRAMES", str(frames)).replace("OUT", str(tmp_path / name)))
    return path


def _pictures(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_the_sequential_loop_writes_what_the_runtime_writes(tmp_path):
    run = subprocess.run([sys.executable, "-m", "launch", "run", str(_graph(tmp_path, "graph", 12)), "--quiet"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    taken = []
    SequentialGraph(load_graph(_graph(tmp_path, "loop", 12)), lambda sink, batch: taken.append(batch["in"].seq)).run()
    assert taken == list(range(12))
    graph, loop = _pictures(tmp_path / "graph"), _pictures(tmp_path / "loop")
    assert len(loop) == 12 and loop.keys() == graph.keys()
    for name, picture in loop.items():
        assert np.array_equal(picture, graph[name]), name
        left, right = np.hsplit(picture, 2)  # the join paired each frame with its own inverse
        assert np.array_equal(right, 255 - left), name
    assert len({p.tobytes() for p in loop.values()}) > 1  # frames differ, so a wrong pairing would show


def test_an_endless_source_runs_until_the_time_given_and_its_sink_is_finished(tmp_path):
    taken = []
    SequentialGraph(load_graph(_graph(tmp_path, "endless", 0)), lambda sink, batch: taken.append(1)).run(until=0.5)
    written = _pictures(tmp_path / "endless")
    assert len(written) == len(taken) > 0
