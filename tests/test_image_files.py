"""Still image files (`stream.image_files`) and the nodes that read and write them: every mode read as
correct 8-bit RGB with its alpha, EXIF orientation, the size bounds read from the header (a 10000x10000
PNG, a decompression bomb, a 1x1 image), damaged files, atomic writes. Files are made here, small."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from stream.image_files import MAX_PIXELS, ImageFileError, read_image, write_image

REPO = Path(__file__).resolve().parents[1]


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height, with one tiny IDAT: what a bomb looks like before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def gradient(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) * 255 // (h + w - 2)], -1).astype(np.uint8)


# -- modes ------------------------------------------------------------------------------------

def test_a_16_bit_grey_png_is_scaled_not_clipped_to_white(tmp_path):
    grey = np.linspace(0, 65535, 48 * 64).reshape(48, 64).round().astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")  # what Pillow's convert("RGB") clipped
    picture = read_image(tmp_path / "g16.png")
    expected = np.round(grey / 257).astype(np.uint8)
    assert picture.rgb.shape == (48, 64, 3) and picture.alpha is None
    for c in range(3):
        np.testing.assert_array_equal(picture.rgb[..., c], expected)
    assert (picture.rgb == 255).mean() < 0.01  # was 99.6% white


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("channels", [3, 4])
def test_rgb_and_rgba_of_8_and_16_bits(tmp_path, bits, channels):
    rgb = gradient(32, 40)
    alpha = np.tile(np.linspace(0, 255, 40).round().astype(np.uint8), (32, 1))
    pixels = np.dstack([rgb, alpha])[..., :channels]
    stored = pixels.astype(np.uint16) * 257 if bits == 16 else pixels
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), cv2.cvtColor(stored, cv2.COLOR_RGB2BGR if channels == 3 else cv2.COLOR_RGBA2BGRA))
    picture = read_image(path)
    if channels == 3:
        assert picture.alpha is None
        np.testing.assert_array_equal(picture.rgb, rgb)
    else:
        np.testing.assert_array_equal(picture.alpha, alpha)
        a = alpha[..., None].astype(int)
        np.testing.assert_allclose(picture.rgb, (rgb * a + 255 * (255 - a)) / 255, atol=0.51)  # over white


def test_transparent_pixels_never_show_the_colours_under_them(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., :3] = (255, 0, 255)           # garbage under the transparent half
    rgba[:, :15] = (10, 200, 30, 255)
    rgba[:, 15:, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "a.png")
    picture = read_image(tmp_path / "a.png")
    assert (picture.rgb[:, 15:] == 255).all() and (picture.rgb[:, :15] == (10, 200, 30)).all()
    np.testing.assert_array_equal(picture.alpha, rgba[..., 3])
    np.testing.assert_array_equal(read_image(tmp_path / "a.png", backdrop=(0, 177, 64)).rgb[:, 15:],
                                  np.broadcast_to((0, 177, 64), (20, 15, 3)))


@pytest.mark.parametrize("mode", ["L", "LA", "P", "P with a transparent index", "CMYK", "1",
                                  "I;16 with a transparent grey"])
def test_grey_palette_cmyk_and_bilevel_become_rgb(tmp_path, mode):
    rgb = gradient(24, 24)
    image = Image.fromarray(rgb)
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    if mode == "I;16 with a transparent grey":
        grey = np.full((24, 24), 30000, np.uint16)
        grey[:, :12] = 1234
        Image.fromarray(grey).save(path, transparency=1234)
        picture = read_image(path)
        assert (picture.alpha[:, :12] == 0).all() and (picture.alpha[:, 12:] == 255).all()
        assert (picture.rgb[:, 12:] == round(30000 / 257)).all() and (picture.rgb[:, :12] == 255).all()
        return
    converted = image.convert(mode.split()[0])
    converted.save(path, **({"transparency": int(np.asarray(converted)[0, 0])} if " " in mode else {}))
    expected = np.asarray(converted.convert("RGB")).copy()
    picture = read_image(path)
    assert picture.rgb.shape == (24, 24, 3) and picture.rgb.dtype == np.uint8
    assert (picture.alpha is not None) == (mode in ("LA", "P with a transparent index"))
    if " " in mode:  # the pixels of the transparent index are white, the others their palette colour
        clear = np.asarray(converted) == np.asarray(converted)[0, 0]
        np.testing.assert_array_equal(picture.alpha, np.where(clear, 0, 255))
        expected[clear] = 255
    np.testing.assert_array_equal(picture.rgb, expected)


def test_exif_orientation_is_applied_also_when_scaled(tmp_path):
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, :40] = 255                       # stored: white on the left
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 6                          # shown turned 90 degrees clockwise: white on top
    for name in ("phone.jpg", "phone.png"):
        Image.fromarray(wide).save(tmp_path / name, exif=exif.tobytes())
        picture = read_image(tmp_path / name)
        assert picture.rgb.shape == (80, 40, 3) and picture.source_size == (40, 80)
        assert picture.rgb[:30].mean() > 240 and picture.rgb[-30:].mean() < 15
        small = read_image(tmp_path / name, max_side=40)
        assert small.rgb.shape == (40, 20, 3) and small.scaled


# -- size bounds ------------------------------------------------------------------------------

def _child(code: str, *args: str) -> object:
    """Run `code` in a fresh Python (its memory its own) and return what it prints, as JSON."""
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_a_10000_square_png_is_scaled_to_the_bound_within_bounded_memory(tmp_path):
    """The file is ~350 KB; the old reader took 1.4 GB to read it and 23 GB to stylize it. Made and read
    in child processes; the peak is VmHWM, the high-water mark of the reader's own address space."""
    path = tmp_path / "big.png"
    _child("import sys, numpy as np; from PIL import Image; a = np.zeros((10000, 10000), np.uint8); "
           "a[::50], a[:, ::70] = 255, 128; Image.fromarray(a).convert('RGB').save(sys.argv[1], compress_level=9); "
           "print(0)", str(path))
    assert path.stat().st_size < 600_000
    shape, source, peak_kb = _child(
        "import json, re, sys; from pathlib import Path; from stream.image_files import read_image; "
        "p = read_image(sys.argv[1], max_side=2048); "
        "peak = int(re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text()).group(1)); "
        "print(json.dumps([p.rgb.shape, p.source_size, peak]))", str(path))
    assert shape == [2048, 2048, 3] and source == [10000, 10000]
    assert peak_kb < 800_000, f"peak {peak_kb / 1e3:.0f} MB"  # 10^8 pixels decoded at 4 bytes: ~400 MB


def test_more_pixels_than_the_limit_are_refused_from_the_header(tmp_path):
    path = png_header_only(tmp_path / "huge.png", 12000, 9000)  # 108 MP: over MAX_PIXELS, under Pillow's bomb error
    assert 12000 * 9000 > MAX_PIXELS
    for max_side in (0, 2048):  # a PNG cannot be decoded at reduced size
        with pytest.raises(ImageFileError, match=r"huge.png: 12000x9000 is 108 megapixels to decode; the limit is 100"):
            read_image(path, max_side=max_side)


def test_a_large_jpeg_is_decoded_at_reduced_size(tmp_path):
    """draft(): a 4000x3000 JPEG read at a maximum side of 500 decodes 500x375 pixels, so a pixel limit
    of 1 MP refuses it only when it is read at full size."""
    Image.fromarray(cv2.resize(gradient(30, 40), (4000, 3000))).save(tmp_path / "photo.jpg", quality=80)
    small = read_image(tmp_path / "photo.jpg", max_side=500, max_pixels=1_000_000)
    assert small.rgb.shape == (375, 500, 3) and small.source_size == (4000, 3000)
    np.testing.assert_allclose(small.rgb.astype(float), cv2.resize(gradient(30, 40), (500, 375)), atol=12)
    with pytest.raises(ImageFileError, match="photo.jpg: 4000x3000 is 12 megapixels"):
        read_image(tmp_path / "photo.jpg", max_side=0, max_pixels=1_000_000)


def test_a_decompression_bomb_is_refused_naming_the_file(tmp_path):
    path = png_header_only(tmp_path / "bomb.png", 40000, 40000)
    with pytest.raises(ImageFileError, match=r"bomb.png: refused as a possible decompression bomb"):
        read_image(path, max_side=2048)


def test_tiny_images_are_refused(tmp_path):
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    with pytest.raises(ImageFileError, match=r"dot.png: 1x1 pixels is too small; images need at least 16"):
        read_image(tmp_path / "dot.png")
    assert read_image(tmp_path / "dot.png", min_side=1).rgb.shape == (1, 1, 3)
    Image.new("RGB", (4000, 40)).save(tmp_path / "strip.png")
    with pytest.raises(ImageFileError, match=r"strip.png: 1000x10 pixels \(scaled from 4000x40 to a maximum side of"):
        read_image(tmp_path / "strip.png", max_side=1000)


# -- bad files --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["jpg", "png"])
def test_a_truncated_file_is_an_error_naming_it(tmp_path, kind):
    path = tmp_path / f"cut.{kind}"
    Image.fromarray(cv2.resize(gradient(30, 40), (400, 300))).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageFileError, match=rf"cut.{kind}: damaged or truncated image"):
        read_image(path)


def test_missing_folder_and_non_image_are_errors_naming_them(tmp_path):
    (tmp_path / "notes.txt").write_text("not a picture")
    for path, message in ((tmp_path / "none.png", "none.png: no such file"),
                          (tmp_path, "is a folder, not an image file"),
                          (tmp_path / "notes.txt", "notes.txt: not an image")):
        with pytest.raises(ImageFileError, match=message):
            read_image(path)


# -- writing ----------------------------------------------------------------------------------

def test_write_keeps_alpha_where_the_format_has_it_and_flattens_onto_white_elsewhere(tmp_path):
    rgb = gradient(20, 30)
    alpha = np.zeros((20, 30), np.uint8)
    alpha[:, :10] = 255
    alpha[:, 10:20] = 128
    for name in ("x.png", "x.webp", "x.tif"):
        write_image(tmp_path / "nested" / name, rgb, alpha, quality=100)
        assert Image.open(tmp_path / "nested" / name).mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "nested" / name))[..., 3], alpha)
    write_image(tmp_path / "x.bmp", rgb, alpha)
    flat = np.asarray(Image.open(tmp_path / "x.bmp"))
    assert (flat[:, 20:] == 255).all() and (flat[:, :10] == rgb[:, :10]).all()
    np.testing.assert_allclose(flat[:, 10:20], (rgb[:, 10:20] * 128.0 + 255 * 127) / 255, atol=0.51)
    assert sorted(p.name for p in tmp_path.rglob("*.part")) == []


def test_a_failed_write_leaves_no_partial_file_and_keeps_what_was_there(tmp_path):
    target = tmp_path / "taken.png"
    target.mkdir()                              # the rename over a folder fails after the bytes were written
    (target / "keep").write_text("mine")
    with pytest.raises(ImageFileError, match="taken.png: cannot write"):
        write_image(target, gradient(16, 16))
    assert (target / "keep").read_text() == "mine" and not list(tmp_path.glob("*.part"))
    (tmp_path / "file").write_text("a file")
    with pytest.raises(ImageFileError, match="cannot write"):
        write_image(tmp_path / "file" / "x.png", gradient(16, 16))
    with pytest.raises(ImageFileError, match="cannot write images of type '.gif'"):
        write_image(tmp_path / "x.gif", gradient(16, 16))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "taken.png"]


# -- the nodes --------------------------------------------------------------------------------

def test_a_folder_of_16_bit_and_transparent_images_through_image_seq(tmp_path):
    """images -> image_seq: the 16-bit grey arrives scaled, the transparent pixels white, every
    frame complete under its final name; a composite's background picture is read the same way."""
    frames = tmp_path / "in"
    frames.mkdir()
    grey = np.full((24, 32), 40000, np.uint16)
    Image.fromarray(grey).save(frames / "f1.png")
    rgba = np.zeros((24, 32, 4), np.uint8)
    rgba[..., :3] = (255, 0, 0)
    Image.fromarray(rgba).save(frames / "f2.png")                       # fully transparent red
    Image.new("RGB", (1, 1)).save(frames / "f3.png")                    # tiny is fine for a stream
    graph = tmp_path / "g.yaml"
    graph.write_text(f"""name: stills
policy: block
nodes:
  - {{name: src, kind: images, params: {{path: {frames}, on_error: fail}}}}
  - {{name: out, kind: image_seq, params: {{path: {tmp_path / 'out' / '%d.png'}}}}}
edges:
  - src.out -> out.in
""")
    run = subprocess.run([sys.executable, "-m", "launch", "run", str(graph), "--quiet"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["0.png", "1.png", "2.png"]
    assert (np.asarray(Image.open(tmp_path / "out" / "0.png")) == round(40000 / 257)).all()
    assert (np.asarray(Image.open(tmp_path / "out" / "1.png")) == 255).all()


def test_composite_background_picture_is_read_upright_and_over_the_colour(tmp_path):
    from stream.node import NodeError
    from stream.nodes.composite import Compositor

    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[:10] = (0, 0, 255, 255)               # top half blue, bottom half transparent
    Image.fromarray(rgba).save(tmp_path / "bg.png")
    node = Compositor(Compositor.Params(background="image", image=str(tmp_path / "bg.png"), color=[0, 177, 64]), None)
    node.setup()  # setup needs no runtime context
    assert (node.still[:10] == (0, 0, 255)).all() and (node.still[10:] == (0, 177, 64)).all()
    node = Compositor(Compositor.Params(background="image", image=str(tmp_path / "missing.png")), None)
    with pytest.raises(NodeError, match="cannot read background image .*missing.png: no such file"):
        node.setup()
