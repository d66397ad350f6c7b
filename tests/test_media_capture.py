"""Capture nodes on real media: clip windows, looping with increasing timestamps, live pacing,
folders of images in natural order."""
from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import cv2
import numpy as np

from launch.cli import main
from launch.shipped import graph_file
from stream.media import probe

RERENDER = str(graph_file("rerender"))


def run(graph: str | Path, tmp_path: Path, *sets: str, seconds: float | None = None) -> dict:
    report = tmp_path / "report.json"
    extra = ["--for", str(seconds)] if seconds else []
    assert main(["run", str(graph), "--quiet", "--report", str(report), *extra,
                 *[a for s in sets for a in ("--set", s)]]) == 0
    return json.loads(report.read_text())


def test_loop_keeps_timestamps_increasing(media: Path, tmp_path: Path) -> None:
    out = tmp_path / "loop.mp4"
    run(RERENDER, tmp_path, f"source.path={media / 'video' / 'kinetics_ta_chi_340x256.mp4'}", "source.end=0.5",
        "source.loop=true", f"sink.path={out}", "sink.preset=ultrafast", "sink.finalize_on_stop=true", seconds=6)
    pts = probe(str(out))["pts"]
    assert len(pts) > 30  # more than two passes of the 15-frame clip
    assert np.all(np.diff(pts) > 0)
    assert np.allclose(np.diff(pts), 1001 / 30000, atol=1e-3)  # no jump or overlap where the loop restarts


def test_realtime_paces_at_the_clip_rate(media: Path, tmp_path: Path) -> None:
    report = run(RERENDER, tmp_path, f"source.path={media / 'video' / 'kinetics_ta_chi_340x256.mp4'}", "source.end=2",
                 "source.realtime=true", f"sink.path={tmp_path / 'rt.mp4'}", "sink.preset=ultrafast")
    assert report["duration_s"] >= 1.9
    assert report["nodes"]["sink"]["frames_in"] == 60


def test_image_folder_in_natural_order(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in (1, 2, 10):
        cv2.imwrite(str(folder / f"frame{i}.png"), np.full((16, 16, 3), i * 20, np.uint8))
    (folder / "notes.txt").write_text("ignored")
    graph = tmp_path / "g.yaml"
    graph.write_text(f"""
name: imgs
nodes:
  - {{name: src, kind: images, params: {{path: {folder}, fps: 10}}}}
  - {{name: out, kind: image_seq, params: {{path: {tmp_path / 'out' / '%d.png'}}}}}
edges:
  - src.out -> out.in
""")
    run(graph, tmp_path)
    values = [int(cv2.imread(str(tmp_path / "out" / f"{i}.png"))[0, 0, 0]) for i in range(3)]
    assert values == [20, 40, 200]


def test_http_url_with_auto_encoder(media: Path, tmp_path: Path) -> None:
    """A video served over HTTP is read like a file; codec auto picks NVENC where it opens, else x264."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(media / "video"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hybrik_taiji.mp4"  # index first: no range requests needed
        out = tmp_path / "http.mp4"
        run(RERENDER, tmp_path, f"source.path={url}", "source.end=1", f"sink.path={out}", "sink.codec=auto")
    finally:
        server.shutdown()
    assert probe(str(out))["frames"] == 24  # 1 s at 23.976 fps
