"""Compositing arithmetic on known inputs, size reconciliation, and the node in a real graph."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from launch.cli import main
from stream.frames import as_alpha, blend, fit


def test_blend_is_foreground_times_mask_plus_background_times_one_minus_mask() -> None:
    rng = np.random.default_rng(1)
    fg = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    bg = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    mask = rng.random((5, 7), dtype=np.float32)
    out = blend(fg, mask, bg, np.empty_like(fg))
    expected = fg * mask[..., None].astype(np.float64) + bg * (1 - mask[..., None].astype(np.float64))
    assert np.abs(out.astype(np.float64) - expected).max() <= 0.5 + 1e-3


def test_blend_exact_values() -> None:
    fg = np.full((1, 3, 3), 200, np.uint8)
    bg = np.full((1, 3, 3), 100, np.uint8)
    out = blend(fg, np.array([[0.0, 0.25, 1.0]], np.float32), bg, np.empty_like(fg))
    assert out[0, :, 0].tolist() == [100, 125, 200]


def test_uint8_mask_is_scaled_and_resized() -> None:
    alpha = as_alpha(np.array([[0, 255], [255, 0]], np.uint8), 4, 4)
    assert alpha.shape == (4, 4) and alpha.dtype == np.float32
    assert alpha[0, 0] == 0.0 and alpha[0, 3] == 1.0 and alpha[3, 0] == 1.0 and alpha[3, 3] == 0.0
    assert as_alpha(np.array([[-1.0, 2.0]], np.float32), 1, 2).tolist() == [[0.0, 1.0]]


@pytest.mark.parametrize("mode, expected_bar", [("resize", False), ("letterbox", True), ("cover", False)])
def test_fit_modes(mode: str, expected_bar: bool) -> None:
    wide = np.full((10, 40, 3), 255, np.uint8)  # 4:1 into 2:1
    out = fit(wide, 20, 40, mode, color=(1, 2, 3))
    assert out.shape == (20, 40, 3)
    assert (out[0, 0].tolist() == [1, 2, 3]) == expected_bar
    assert out[10, 20].tolist() == [255, 255, 255]


def write_images(folder: Path, images: list[np.ndarray]) -> None:
    folder.mkdir()
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def test_compositor_node_in_a_graph(tmp_path: Path) -> None:
    """Foreground, matte and a background of another size from image folders -> PNGs, checked pixel by pixel."""
    rng = np.random.default_rng(2)
    fgs = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(3)]
    mattes = [np.repeat(rng.integers(0, 256, (24, 32, 1), dtype=np.uint8), 3, axis=2) for _ in range(3)]
    bgs = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3)]  # same aspect, twice the size
    for name, images in (("fg", fgs), ("matte", mattes), ("bg", bgs)):
        write_images(tmp_path / name, images)
    graph = tmp_path / "comp.yaml"
    graph.write_text(f"""
name: comp
nodes:
  - {{name: fg, kind: images, params: {{path: {tmp_path / 'fg'}}}}}
  - {{name: matte, kind: images, params: {{path: {tmp_path / 'matte'}}}}}
  - {{name: bg, kind: images, params: {{path: {tmp_path / 'bg'}}}}}
  - {{name: comp, kind: composite, params: {{background: stream, fit: resize}}}}
  - {{name: out, kind: image_seq, params: {{path: {tmp_path / 'out' / '%03d.png'}}}}}
edges:
  - fg.out -> comp.in
  - matte.out -> comp.mask
  - bg.out -> comp.background
  - comp.out -> out.in
""")
    assert main(["run", str(graph), "--quiet"]) == 0
    for i in range(3):
        got = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / f"{i:03d}.png")), cv2.COLOR_BGR2RGB)
        bg = cv2.resize(bgs[i], (32, 24), interpolation=cv2.INTER_AREA)
        expected = blend(fgs[i], mattes[i][..., 0] / np.float32(255), bg, np.empty_like(fgs[i]))
        assert np.array_equal(got, expected)


def test_mosaic_grid(tmp_path: Path) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text(f"""
name: layouts
nodes:
  - {{name: src, kind: synthetic, params: {{width: 64, height: 48, frames: 3}}}}
  - {{name: inv, kind: invert}}
  - {{name: mos, kind: mosaic, params: {{layout: grid, tile_width: 32, labels: [in, inv, again]}}}}
  - {{name: out, kind: image_seq, params: {{path: {tmp_path / 'grid' / '%d.png'}}}}}
edges:
  - src.out -> mos.a
  - src.out -> inv.in
  - inv.out -> mos.b
  - inv.out -> mos.c
  - mos.out -> out.in
""")
    assert main(["run", str(graph), "--quiet"]) == 0
    grid = cv2.imread(str(tmp_path / "grid" / "2.png"))
    assert grid.shape == (48, 64, 3)  # 2x2 tiles of 32x24
    assert grid[24:, 32:].max() == 0  # the fourth tile is empty
    assert grid[:24, :32].max() > 0


def test_blur_background_with_overlay_and_the_missing_mask_error(tmp_path: Path) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text("""
name: blur
nodes:
  - {name: src, kind: synthetic, params: {width: 64, height: 48, frames: 3}}
  - {name: inv, kind: invert}
  - {name: comp, kind: composite, params: {background: blur, overlay: true}}
  - {name: sink, kind: discard}
edges:
  - src.out -> comp.in
  - src.out -> inv.in
  - inv.out -> comp.mask
  - comp.out -> sink.in
""")
    report = tmp_path / "r.json"
    assert main(["run", str(graph), "--quiet", "--report", str(report)]) == 0
    graph.write_text(graph.read_text().replace("  - inv.out -> comp.mask\n", ""))
    assert main(["run", str(graph), "--quiet", "--report", str(report)]) != 0
    assert "no mask" in json.loads(report.read_text())["nodes"]["comp"]["error"]


@pytest.mark.parametrize("how", ["blur", "inpaint"])
def test_remove_person_fills_the_hole_from_its_surroundings(how: str) -> None:
    """A red 'person' on a background whose left half is blue and right half green: after removal no red
    is left (the margin takes the soft edge too), each side keeps its colour, the rest is untouched."""
    from stream.nodes.composite import remove_person

    background = np.zeros((120, 160, 3), np.uint8)
    background[:, :80] = (0, 0, 200)
    background[:, 80:] = (0, 200, 0)
    mask = np.zeros((120, 160), np.float32)
    mask[40:80, 60:100] = 1.0
    background[mask > 0] = (255, 0, 0)
    out = remove_person(background, mask, how, margin=0.03)
    assert out[..., 0].max() < 40                      # the person is gone
    assert out[60, 62, 2] > out[60, 62, 1] and out[60, 97, 1] > out[60, 97, 2]  # filled from each side
    assert np.array_equal(out[:30], background[:30])   # beyond the grown hole: untouched
    assert remove_person(background, np.zeros_like(mask), how, 0.03) is None  # no person: nothing to do
    assert remove_person(background, None, how, 0.03) is None
