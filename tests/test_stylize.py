"""Stylizer networks, training, checkpoints and the fast inference path."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from avatars.style.losses import LossConfig, PerceptualLoss
from avatars.core.checkpoint import CheckpointError
from avatars.style.training import ContentCrops, StyleTrainConfig, load_image, train_stylizer
from avatars.style.stylenet import StyleNet, StyleNetConfig
from bench.baselines.transformer_net import TransformerNet
from avatars.style.stylize import FastPathConfig, FrameStylizer, sample_textures
from avatars.style.checkpoint import load_stylizer, read_style_record, save_stylizer
from avatars.style.texturenet import TextureNet, TextureNetConfig

TINY = StyleNetConfig(channels=(8, 16, 32), n_residual=1)


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_stylenet_any_size(norm):
    net = StyleNet(StyleNetConfig(channels=(8, 16, 32), n_residual=2, norm=norm)).eval()
    for h, w in [(64, 64), (37, 53), (5, 9)]:
        assert net(torch.rand(2, 3, h, w)).shape == (2, 3, h, w)


def test_transformer_net_is_the_pytorch_examples_size():
    # pytorch/examples fast_neural_style TransformerNet has exactly 1,679,235 parameters
    assert sum(p.numel() for p in TransformerNet().parameters()) == 1_679_235


def test_texturenet_synthesis_and_stylization():
    synth = TextureNet(TextureNetConfig(scales=4, width=4)).eval()
    z = synth.make_noise(2, 30, 41, torch.Generator().manual_seed(0))
    assert [t.shape[-2:] for t in z] == [(32, 48), (16, 24), (8, 12), (4, 6)]
    out = synth(noise=z, size=(30, 41))
    assert out.shape == (2, 3, 30, 41)
    torch.testing.assert_close(synth(noise=z, size=(30, 41)), out)         # fixed noise: deterministic
    assert not torch.allclose(out[0], out[1])                 # different noise: different sample
    assert synth(size=(16, 16)).shape == (1, 3, 16, 16)
    with pytest.raises(ValueError):
        synth(torch.rand(1, 3, 16, 16))
    styl = TextureNet(TextureNetConfig(scales=4, width=4, image_input=True, norm="instance", padding="reflect")).eval()
    y = torch.rand(1, 3, 45, 33)
    z = styl.make_noise(1, 45, 33)
    a, b = styl(y, z, noise_scale=0.0), styl(y, z, noise_scale=2.0)
    assert a.shape == (1, 3, 45, 33) and not torch.allclose(a, b)  # the noise scale acts at test time
    with pytest.raises(ValueError):
        styl(y, synth.make_noise(1, 8, 8))


def test_checkpoint_round_trip_is_safetensors_without_pickle(tmp_path):
    net = TextureNet(TextureNetConfig(scales=3, width=4, image_input=True, norm="instance", padding="reflect"))
    path = save_stylizer(tmp_path / "m.safetensors", net, {"step": 7})
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])                          # a safetensors header, plain JSON
    record = json.loads(header["__metadata__"]["record"])
    assert record["kind"] == "texturenet" and record["format"].startswith("avatars.checkpoint/")
    assert b"\x80\x02" not in raw[:8 + n] and b"pickle" not in raw
    assert json.loads(path.with_suffix(".json").read_text())["step"] == 7
    loaded, meta = load_stylizer(path), read_style_record(path)
    assert meta["model"]["scales"] == 3 and not loaded.training
    x, z = torch.rand(1, 3, 16, 16), net.make_noise(1, 16, 16)
    torch.testing.assert_close(loaded(x, z), net.eval()(x, z))
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_stylizer(_plain_safetensors(tmp_path))


def _plain_safetensors(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(1)}, p)
    return p


def test_training_lowers_the_loss_and_resumes(media, tmp_path):
    torch.manual_seed(0)
    cfg = StyleTrainConfig(style=str(media / "style" / "starry_night.jpg"), content_dir=str(media / "content"),
                           stylenet=TINY, image_size=64, style_size=96, batch_size=2, steps=12, lr=3e-3,
                           sample_every=6, checkpoint_every=6)
    ckpt = tmp_path / "s.safetensors"
    probe = ContentCrops(cfg.content_dir, 64, seed=5).sample(4)
    loss = PerceptualLoss(LossConfig(tv_weight=0), load_image(cfg.style, 96))

    def evaluate(model):
        with torch.no_grad():
            return loss(model.eval()(probe), probe)["total"].item()

    before = evaluate(StyleNet(TINY))   # the seed makes this the same init train_stylizer starts from
    result = train_stylizer(cfg, ckpt, progress=False)
    assert result.steps == 12 and set(result.final_losses) == {"style", "content", "tv", "total"}
    after = evaluate(load_stylizer(ckpt))
    assert after < 0.7 * before
    assert (tmp_path / "s_loss.png").stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "s_samples").iterdir())[:2] == ["step_000006.png", "step_000012.png"]
    cfg.steps = 15
    resumed = train_stylizer(cfg, ckpt, progress=False)       # continues from step 12 with Adam state
    assert resumed.steps == 15 and resumed.seconds > result.seconds
    assert (tmp_path / "s.optim.safetensors").is_file()


def test_fast_path_matches_fp32_and_takes_any_frame():
    """bf16 + channels-last against fp32: mean error under 1 grey level, 99.9th percentile under 8.

    The errors are whole grey levels, so the 99.9th percentile of one frame sits on an integer and
    moves by a level with the summation order: AVX-512-BF16 and AMX both round the operands to bf16
    and accumulate in fp32, in different orders, so they draw from one distribution, not the same
    sample. Measured here (AVX-512-BF16) over 20 random networks and frames like these: mean 0.36 ..
    0.87, 99.9th percentile 5 or 6 (the shipped styles on seven real frames: mean <= 0.86, <= 7).
    Before the image's own layer ran in fp32 (stylenet.ConvLayer) the same 20 gave 7 .. 8 and means
    up to 1.08, and an AMX machine drew the 8.0 that failed this test: the bounds now stand two levels
    above the measured tail, on several draws, instead of on it."""
    for seed in range(4):
        torch.manual_seed(seed)
        net = StyleNet(StyleNetConfig(channels=(16, 32, 64), n_residual=3))
        frame = (np.random.default_rng(seed).random((71, 90, 3)) * 255).astype(np.uint8)
        ref = FrameStylizer(net, cfg=FastPathConfig(bf16=False, channels_last=False))(frame).astype(np.float32)
        fast = FrameStylizer(net, cfg=FastPathConfig(bf16=True, channels_last=True))(frame).astype(np.float32)
        assert fast.shape == frame.shape
        err = np.abs(fast - ref)
        assert err.mean() < 1.0 and np.percentile(err, 99.9) < 8, (seed, err.mean(), np.percentile(err, 99.9))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net.net[0](torch.rand(1, 3, 8, 8)).dtype == torch.float32     # the image's layer stays fp32
        assert net.net[1](torch.rand(1, 16, 8, 8)).dtype == torch.bfloat16
    with pytest.raises(ValueError):
        FrameStylizer(net)(frame.astype(np.float32))


def test_fixed_noise_and_temporal_smoothing():
    torch.manual_seed(0)
    net = TextureNet(TextureNetConfig(scales=3, width=4, image_input=True, norm="instance", padding="reflect"))
    s = FrameStylizer(net, cfg=FastPathConfig(bf16=False))
    a = np.full((24, 32, 3), 100, np.uint8)
    np.testing.assert_array_equal(s(a), s(a))                  # same frame, same noise, same output
    b = a.copy()
    b[:, :16] = 200
    plain = [s(a), s(b)]
    ema = FrameStylizer(net, cfg=FastPathConfig(bf16=False, smoothing="ema", smoothing_weight=0.5))
    smoothed = [ema(a), ema(b)]
    jump = np.abs(plain[1].astype(int) - plain[0]).mean()
    assert np.abs(smoothed[1].astype(int) - smoothed[0]).mean() == pytest.approx(jump / 2, rel=0.05)
    with pytest.raises(ValueError):
        FastPathConfig(smoothing="blur")


def test_texture_synthesis_training_and_sampling(media, tmp_path):
    torch.manual_seed(0)
    cfg = StyleTrainConfig(style=str(media / "style" / "starry_night.jpg"), model="texturenet",
                           texturenet=TextureNetConfig(scales=3, width=4), image_size=48, style_size=64,
                           batch_size=2, steps=6, lr=1e-2, sample_every=6, checkpoint_every=6,
                           loss=LossConfig(diversity_weight=0.1))
    assert cfg.texturenet.image_input is False
    result = train_stylizer(cfg, tmp_path / "t.safetensors", progress=False)
    assert set(result.final_losses) == {"style", "tv", "diversity", "total"}
    model = load_stylizer(result.checkpoint)
    a = sample_textures(model, (40, 72), n=2, seed=3)
    assert len(a) == 2 and a[0].shape == (40, 72, 3) and a[0].dtype == np.uint8
    np.testing.assert_array_equal(sample_textures(model, (40, 72), n=2, seed=3)[1], a[1])
    assert not np.array_equal(a[0], a[1])
    with pytest.raises(ValueError):
        StyleTrainConfig(style="s.jpg", content_dir=None)   # texture synthesis needs a TextureNet


def test_bf16_is_used_where_native_unless_forced():
    """The fast paths default to bf16 only where the hardware computes in it (elsewhere it is slower than fp32)."""
    from avatars.avatar.model import AvatarConfig, AvatarRenderer, GeneratorConfig
    from avatars.avatar.crop import CropConfig
    from avatars.core.precision import native_bf16, use_bf16

    net = StyleNet(StyleNetConfig(channels=(8, 16, 16), n_residual=1))
    assert FrameStylizer(net).bf16 == native_bf16("cpu")
    assert FrameStylizer(net, cfg=FastPathConfig(bf16=True)).bf16 and not FrameStylizer(net, cfg=FastPathConfig(bf16=False)).bf16
    cfg = AvatarConfig("textured", GeneratorConfig.small(), 32, CropConfig(size=64))
    model = cfg.build()
    assert AvatarRenderer(model, cfg, fast=True).bf16 == native_bf16("cpu")
    assert not AvatarRenderer(model, cfg, fast=False, bf16=True).bf16  # bf16 belongs to the fast path
    assert use_bf16(True, "cpu") and not use_bf16(False, "cpu")


def test_instance_norm_matches_torch_in_any_layout_and_in_training():
    from avatars.core.layers import InstanceNorm

    torch.manual_seed(0)
    ours, ref = InstanceNorm(6, affine=True), torch.nn.InstanceNorm2d(6, affine=True)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2), ours.bias.uniform_(-1, 1)
    ref.load_state_dict(ours.state_dict())
    x, probe = torch.randn(2, 6, 9, 11) * 3 + 1, torch.randn(2, 6, 9, 11)
    for layout in (torch.contiguous_format, torch.channels_last):
        xl = x.clone().contiguous(memory_format=layout).requires_grad_()
        y = ours(xl)
        torch.testing.assert_close(y, ref(x), atol=1e-5, rtol=1e-5)
        (y * probe).sum().backward()
        xr = x.clone().requires_grad_()
        (ref(xr) * probe).sum().backward()
        torch.testing.assert_close(xl.grad, xr.grad, atol=1e-4, rtol=1e-4)
    far = torch.randn(1, 6, 16, 16) + 50  # mean 50 std away: the two-moment variance keeps its digits
    torch.testing.assert_close(ours(far), ref(far), atol=2e-3, rtol=1e-3)
    assert type(TransformerNet().net[0][1]) is torch.nn.InstanceNorm2d  # the baseline stays plain torch


def test_masked_statistics_come_from_the_region_only():
    """With weights, every instance norm uses the weighted moments; all-ones weights change nothing."""
    from avatars.core.layers import statistics_from

    torch.manual_seed(0)
    net = StyleNet(TINY).eval()
    x = torch.rand(1, 3, 32, 128)
    with torch.no_grad():
        plain = net(x)
        with statistics_from(net, torch.ones(1, 1, 32, 128)):
            torch.testing.assert_close(net(x), plain, atol=1e-5, rtol=1e-5)
        left = torch.zeros(1, 1, 32, 128)
        left[..., :64] = 1
        with statistics_from(net, left):
            masked = net(x)
        assert net(x).equal(plain)                              # the weights go when the block ends
        y = x.clone()
        y[..., 64:] = torch.rand(1, 3, 32, 64) * 0.2           # another right half
        with statistics_from(net, left):
            other = net(y)
        unmasked_change = (net(x) - net(y))[..., :16].abs().mean()
    assert not torch.allclose(masked, plain, atol=1e-3)
    # far from the border, the left half depends on the right half only through the convolutions' reach
    # (measured: 0.17 of the change with whole-frame statistics)
    assert (masked - other)[..., :16].abs().mean() < 0.3 * unmasked_change


@pytest.mark.parametrize("mode", ["fill", "stats"])
def test_region_paints_the_person_or_the_background_and_keeps_the_rest(mode):
    torch.manual_seed(0)
    net = StyleNet(TINY)
    rng = np.random.default_rng(0)
    frame = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    mask = np.zeros((48, 64), np.float32)
    mask[10:40, 20:44] = 1
    person = FrameStylizer(net, cfg=FastPathConfig(bf16=False, region="person", mask_mode=mode))
    background = FrameStylizer(net, cfg=FastPathConfig(bf16=False, region="background", mask_mode=mode))
    out = person(frame, mask)
    np.testing.assert_array_equal(out[mask == 0], frame[mask == 0])
    assert np.abs(out[mask == 1].astype(int) - frame[mask == 1]).mean() > 10
    np.testing.assert_array_equal(person(frame, (mask * 255).astype(np.uint8)), out)   # a uint8 mask alike
    np.testing.assert_array_equal(background(frame, mask)[mask == 1], frame[mask == 1])
    np.testing.assert_array_equal(person(frame), frame)              # no mask: no person to paint
    other = frame.copy()
    other[mask == 0] = 255 - other[mask == 0]                        # only the background changes
    change = np.abs(person(other, mask).astype(int) - out)[mask == 1].mean()
    if mode == "fill":
        assert change == 0                                           # the person is stylized alone
    with pytest.raises(ValueError, match="mask"):
        person(frame, mask[:10])
    with pytest.raises(ValueError):
        FastPathConfig(region="face")


def test_the_background_no_longer_decides_the_persons_look(media):
    """Real frames, MediaPipe's masks, the shipped style, six backgrounds (docs/stylize.md, section 6).

    Measured on this project's AVX-512 CPU over the seven clips (starry_night, bf16 and fp32 alike):
    mean change inside the person 7.3 grey levels, per person 5.4 .. 11.5; whole-frame statistics
    42.1 (37.7 .. 47.3). Bounds: the mean with 20% margin (the issue's target is 12), each person
    under 14, and the whole-frame path far above, so the test fails if the mask stops acting."""
    from avatars.core.weights import available, resolve_weights
    from avatars.style.evaluation import backgrounds, people, person_changes

    if "starry_night" not in available("style"):
        pytest.skip("shipped styles not present")
    model = load_stylizer(resolve_weights("starry_night", "style"))
    found, bgs = people(media), backgrounds(media)
    assert len(found) >= 6
    painted = FrameStylizer(model, cfg=FastPathConfig(region="person"))
    per_person = [np.mean(person_changes(painted, p, bgs)) for p in found]
    assert np.mean(per_person) < 9 and max(per_person) < 14, per_person
    whole = FrameStylizer(model)
    assert np.mean([np.mean(person_changes(whole, p, bgs[:3])) for p in found[:3]]) > 30


def test_learning_rate_decays_over_whichever_limit_ends_the_run():
    cfg = StyleTrainConfig(style="s.jpg", content_dir=".", steps=100, lr=1e-3, lr_final=1e-4)
    assert cfg.lr_at(0, 0.0) == pytest.approx(1e-3) and cfg.lr_at(100, 0.0) == pytest.approx(1e-4)
    assert cfg.lr_at(50, 0.0) == pytest.approx(5.5e-4)                 # cosine: halfway at the mean
    timed = StyleTrainConfig(style="s.jpg", content_dir=".", steps=10 ** 9, time_limit_s=60, lr_final=0.0)
    assert timed.lr_at(7, 30.0) == pytest.approx(5e-4) and timed.lr_at(7, 90.0) == 0.0
    assert StyleTrainConfig(style="s.jpg", content_dir=".").lr_at(50, 10.0) == 1e-3   # no lr_final: constant
    with pytest.raises(ValueError):
        StyleTrainConfig(style="s.jpg", content_dir=".", lr_final=1.0)


def test_texturenet_defaults_follow_the_mode_and_diversity_gets_one_crop_many_noises():
    stylizing = StyleTrainConfig(style="s.jpg", content_dir=".", model="texturenet")
    t = stylizing.texturenet
    assert (t.scales, t.norm, t.padding, t.image_input) == (6, "instance", "reflect", True)   # thesis, stylization
    t = StyleTrainConfig(style="s.jpg", model="texturenet").texturenet
    assert (t.scales, t.norm, t.padding, t.image_input) == (5, "batch", "circular", False)    # texture synthesis
    assert TextureNet(TextureNetConfig(image_input=True)).cfg.to_dict()["scales"] == 6
    assert stylizing.repeat_content == 1
    diverse = StyleTrainConfig(style="s.jpg", content_dir=".", model="texturenet", batch_size=4,
                               loss=LossConfig(diversity_weight=0.5))
    assert diverse.repeat_content == 4          # one crop, four noises: the term compares what the noise changes
    assert StyleTrainConfig(style="s.jpg", content_dir=".", model="texturenet", batch_size=4, repeat_content=2,
                            loss=LossConfig(diversity_weight=0.5)).repeat_content == 2


def test_warm_up_compiles_ahead_and_falls_back_to_eager_where_compiling_fails():
    """The live graph compiles in setup (no first-frame stall); a machine without a C++ compiler runs eagerly."""
    import torch._inductor.config as inductor

    torch.manual_seed(0)
    net = StyleNet(StyleNetConfig(channels=(4, 8, 8), n_residual=1))
    frame = np.full((16, 16, 3), 90, np.uint8)
    eager = FrameStylizer(net, cfg=FastPathConfig(bf16=False))
    assert eager.warm_up(16, 16) is None
    compiled = FrameStylizer(net, cfg=FastPathConfig(bf16=False, compile=True))
    with inductor.patch({"cpp.cxx": ("/nonexistent/c++",)}):
        error = compiled.warm_up(16, 16)
    assert "C++ compiler" in error and compiled.net is compiled.call
    np.testing.assert_array_equal(compiled(frame), eager(frame))
