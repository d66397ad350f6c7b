"""Bad paintings and style pictures, through the real command line and a real running graph.

`stylize --style-image` reads grey, CMYK and 16-bit paintings as 8-bit RGB and refuses unreadable,
truncated, float, tiny and huge ones naming them (exit 2, nothing written); the stylize node's style
port refuses a painting of the wrong type or size with a warning while the frames keep the previous
painting; train-style reads a style picture as stylize does and refuses one too small to train on.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avatars.style.training import load_image
from launch.cli import main
from launch.command import Exit
from test_runtime import run_graph
from test_universal import THREADS, _photo, needs_decoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _painting(h: int = 80, w: int = 120, colour=(230, 40, 30)) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((np.sin(xx / 3.0 + yy / 5.0) > 0)[..., None] * np.array(colour) + 20).clip(0, 255).astype(np.uint8)


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(float)


@needs_decoder
def test_stylize_reads_grey_cmyk_and_16_bit_paintings_and_refuses_unusable_ones(tmp_path, capsys):
    photo = _photo(tmp_path / "photo.png")
    grey = _painting().mean(axis=2).round().astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "grey16.png")
    Image.fromarray(_painting()).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    Image.fromarray(_painting()).save(tmp_path / "red.png")
    stylize = ["stylize", "--method", "wct", *THREADS]
    for name in ("grey8.png", "grey16.png", "cmyk.jpg", "red.png"):
        assert main([*stylize, "--style-image", str(tmp_path / name), str(photo), str(tmp_path / f"{name}.out.png")]) == 0
        assert name in capsys.readouterr().out
    np.testing.assert_array_equal(_rgb(tmp_path / "grey16.png.out.png"), _rgb(tmp_path / "grey8.png.out.png"))
    cmyk, red, grey_out = (_rgb(tmp_path / f"{n}.out.png") for n in ("cmyk.jpg", "red.png", "grey8.png"))
    assert np.abs(cmyk - red).mean() < 0.3 * np.abs(grey_out - red).mean()   # the CMYK painting's colours

    (tmp_path / "notes.png").write_text("not a picture")
    Image.fromarray(_painting()).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])
    Image.fromarray(_painting().mean(axis=2).astype(np.float32) / 255).save(tmp_path / "float.tif")
    Image.fromarray(_painting(20, 20)).save(tmp_path / "tiny.png")
    Image.new("RGB", (10_100, 10_000)).save(tmp_path / "huge.png", compress_level=1)  # 101 megapixels
    for name, says in (("notes.png", "not an image"), ("cut.png", "damaged or truncated"),
                       ("float.tif", "32-bit float pixels"), ("tiny.png", "20x20 pixels is too small"),
                       ("huge.png", "10100x10000 is 101 megapixels"), ("absent.png", "no such file")):
        out = tmp_path / "out.png"
        assert main([*stylize, "--style-image", str(tmp_path / name), str(photo), str(out)]) == Exit.REFUSED, name
        err = capsys.readouterr().err
        assert err.startswith("error: ") and name in err and says in err, (name, err)
        assert not out.exists()


@needs_decoder
def test_style_port_refuses_wrong_types_and_sizes_while_frames_keep_the_painting(tmp_path):
    """Paintings that are float, 16-bit, grey, RGBA, missing or 2100 pixels wide arrive on the style port
    of a running graph: each is refused with a warning saying what is wrong (by the node, or by the port's
    type before it), every frame comes out, all painted after the first painting."""
    red = tmp_path / "red.png"
    Image.fromarray(_painting()).save(red)
    frames = tmp_path / "frames"
    code, report, err = run_graph(tmp_path, f"""
        policy: block
        nodes:
          - {{name: source, kind: synthetic, params: {{width: 64, height: 64, frames: 24, fps: 8, realtime: true}}}}
          - {{name: pictures, kind: synthetic, params: {{width: 2100, height: 48, frames: 7, fps: 4, realtime: true}}}}
          - {{name: malform, kind: malform, params: {{forms: [float32, uint16, grey, grey1, rgba, none, rgb]}}}}
          - {{name: style, kind: stylize, params: {{style_image: {red}, method: wct, threads: 1}}}}
          - {{name: sink, kind: image_seq, params: {{path: {frames}/%03d.png}}}}
        edges: [source.out -> style.in, pictures.out -> malform.in, malform.out -> style.style, style.out -> sink.in]
    """, timeout=180)
    assert code == 0, err
    style = report["nodes"]["style"]
    assert style["extra"]["styles_refused"] == 5 and style["rejected"] == 2   # the port's type rejects 2 itself
    for says in ("(48, 2100, 3) float32 image is no RGB picture", "(48, 2100, 3) uint16", "(48, 2100, 1) uint8",
                 "(48, 2100, 4) uint8", "2100x48 is too large", "needs 3 dimensions, got shape (48, 2100)",
                 "a video message needs buffer 'image'"):
        assert says in err, says
    out = [np.array(Image.open(p)).astype(float) for p in sorted(frames.glob("*.png"))]
    assert len(out) == 24
    assert all(f[..., 0].mean() - f[..., 2].mean() > 30 for f in out)   # the red painting throughout


def test_train_style_reads_the_style_as_stylize_does_and_refuses_a_tiny_one(tmp_path, capsys):
    grey = _painting().mean(axis=2).round().astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "grey16.png")
    rgba = np.dstack([_painting(), np.zeros(grey.shape, np.uint8)])
    rgba[:, :60, 3] = 255                                     # the right half transparent: white, as viewers show it
    Image.fromarray(rgba).save(tmp_path / "cutout.png")
    assert np.array_equal(load_image(tmp_path / "grey16.png"), load_image(tmp_path / "grey8.png"))
    assert (load_image(tmp_path / "cutout.png")[..., 60:] == 1).all()

    content = tmp_path / "content"
    content.mkdir()
    Image.fromarray(_painting(72, 88, (40, 200, 90))).save(content / "photo.png")
    Image.fromarray(_painting(300, 12)).save(tmp_path / "thin.png")   # at --style-size 64: 3 pixels wide
    base = ["train-style", "--content", str(content), "--size", "32", "--style-size", "64", "--batch", "1",
            "--channels", "4", "8", "8", "--residual-blocks", "1", "--steps", "2", "--quiet", *THREADS]
    assert main([*base, "--style", str(tmp_path / "grey16.png"), "-o", str(tmp_path / "grey.safetensors")]) == 0
    assert json.loads((tmp_path / "grey.json").read_text())["step"] == 2
    assert main([*base, "--style", str(tmp_path / "thin.png"), "-o", str(tmp_path / "thin.safetensors")]) == Exit.REFUSED
    assert "thin.png: 3x64 pixels (scaled from 12x300 to a maximum side of 64) is too small" in capsys.readouterr().err
    assert not (tmp_path / "thin.safetensors").exists()
