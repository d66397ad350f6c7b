"""Textured neural avatar: shapes, the sampling/blending maths, initialisation (every part used,
a lost part refused), training, checkpoints, textures sampled at the output resolution, the
run-time renderer (crop and paste-back, empty frames, no colour without mask), scoring at any
resolution and the bf16 fast path."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avatars.avatar.crop import CropConfig, person_crop
from avatars.avatar.data import AvatarDataset, make_mannequin_dataset
from avatars.avatar.init import accumulate_texels, mean_textures, skeleton_labels, surface_targets
from avatars.avatar.model import (MIN_MASK, AvatarConfig, AvatarOutput, AvatarRenderer, DirectAvatar,
                                  GeneratorConfig, TexturedAvatar, blend, load_avatar, save_avatar)
from avatars.avatar.parts import LOST_RATIO, PartLostError
from avatars.avatar.evaluation import evaluate_avatars
from avatars.avatar.training import AvatarTrainConfig, train_avatar
from avatars.body.mannequin import Camera, MannequinSequence
from avatars.body.skeleton import NUM_CHANNELS, NUM_PARTS, PART

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = GeneratorConfig(base_channels=8, max_channels=16, num_down=2, res_encoder=1, res_decoder=1, outer_kernel=3)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("mannequin")
    make_mannequin_dataset(out, ("walk", "turn_around"), (0.0, 90.0), frames_per_clip=4, fps=5.0,
                           crop=CropConfig(size=64), progress=False)
    return str(out)


FAST_TRAIN = dict(generator=TINY, texture_size=16, batch_size=4, lr=2e-3, init_frames=16, vgg_weights="random",
                  vgg_taps=(1, 6), vgg_bf16=False, sample_every=1000, checkpoint_every=10)


def test_mannequin_data_carries_the_exact_part_and_uv_maps(dataset):
    ds = AvatarDataset(dataset)
    b = ds.batch([0, 9], crop_size=32)
    assert b.bones.shape[-1] == 32 and b.rgb.shape[-1] == 64 and b.part.shape == (2, 64, 64)
    body = b.mask > 0.5
    assert (b.part[~(b.mask > 0)] == NUM_PARTS).all()            # labels only on the body
    assert (b.part[body] < NUM_PARTS).float().mean() > 0.9   # measured 0.95 (64 px: nearest label vs area mask)
    assert set(b.part.unique().tolist()) == set(range(NUM_PARTS + 1))  # every part is in these two frames
    assert 0 <= b.uv.min() and b.uv.max() <= 1


def test_output_shapes_and_mask_consistency():
    torch.manual_seed(0)
    x = torch.rand(2, NUM_CHANNELS, 32, 48)
    t = TexturedAvatar(TINY, texture_size=16)(x)
    assert t.rgb.shape == (2, 3, 32, 48) and t.mask.shape == (2, 1, 32, 48)
    assert t.parts.shape == (2, NUM_PARTS + 1, 32, 48) and t.uv.shape == (2, 2 * NUM_PARTS, 32, 48)
    torch.testing.assert_close(t.parts.sum(1), torch.ones(2, 32, 48))
    torch.testing.assert_close(t.mask_logit.sigmoid(), t.mask)  # the BCE sees the same mask
    d = DirectAvatar(TINY)(x)
    assert d.rgb.shape == (2, 3, 32, 48) and d.parts is None
    assert (d.rgb <= d.mask + 1e-6).all()  # premultiplied colour
    with pytest.raises(ValueError, match="multiple of 4"):
        TexturedAvatar(TINY)(torch.rand(1, NUM_CHANNELS, 30, 32))


def test_paper_size_has_about_17M_parameters():
    n = sum(p.numel() for p in TexturedAvatar(GeneratorConfig.paper()).net.parameters())
    assert 16e6 < n < 18e6


def test_blend_with_one_hot_parts_samples_the_texture_exactly():
    g = torch.Generator().manual_seed(1)
    tex = torch.rand(NUM_PARTS, 3, 8, 8, generator=g)
    h, w = 5, 7
    part = torch.randint(0, NUM_PARTS + 1, (1, h, w), generator=g)
    parts = torch.nn.functional.one_hot(part, NUM_PARTS + 1).permute(0, 3, 1, 2).float()
    # uv at texel centres: texel (row i, col j) is at ((j + 0.5) / 8, (i + 0.5) / 8)
    rows, cols = torch.randint(0, 8, (2, NUM_PARTS, h, w), generator=g)
    uv = torch.stack([(cols + 0.5) / 8, (rows + 0.5) / 8], 1).reshape(1, 2 * NUM_PARTS, h, w)
    out = blend(parts, uv, tex)
    for y in range(h):
        for x in range(w):
            k = int(part[0, y, x])
            want = torch.zeros(3) if k == NUM_PARTS else tex[k, :, rows[k, y, x], cols[k, y, x]]
            torch.testing.assert_close(out[0, :, y, x], want)
    # half-way between two texel centres along u: their average (bilinear)
    uv2 = uv.clone()
    uv2[:, 0::2] = (3 + 0.5 + 0.5) / 8  # between columns 3 and 4
    rows0 = rows
    out2 = blend(parts, uv2, tex)
    k = int(part[0, 0, 0])
    if k < NUM_PARTS:
        torch.testing.assert_close(out2[0, :, 0, 0], tex[k, :, rows0[k, 0, 0], 3:5].mean(-1))


def test_texture_init_is_the_mean_of_mapped_pixels():
    n, size = NUM_PARTS, 4
    parts = torch.zeros(1, n + 1, 1, 3)
    parts[0, PART["torso"]] = 1.0
    uv = torch.zeros(1, 2 * n, 1, 3)
    t = PART["torso"]
    uv[0, 2 * t] = torch.tensor([0.1, 0.1, 0.9])      # u -> columns 0, 0, 3
    uv[0, 2 * t + 1] = torch.tensor([0.3, 0.3, 0.6])  # v -> rows 1, 1, 2
    rgb = torch.tensor([[0.2, 0.4, 0.9], [0.0, 0.6, 0.3], [1.0, 1.0, 0.5]]).T.reshape(1, 3, 1, 3)
    sums, counts = torch.zeros(n, 3, size, size), torch.zeros(n, size, size)
    accumulate_texels(parts, uv, rgb, torch.ones(1, 1, 3), sums, counts)
    tex = mean_textures(sums, counts)
    torch.testing.assert_close(tex[t, :, 1, 0], torch.tensor([0.1, 0.5, 0.6]))  # mean of pixels 0 and 1
    torch.testing.assert_close(tex[t, :, 2, 3], torch.tensor([1.0, 1.0, 0.5]))
    assert counts.sum() == 3 and tex[PART["head"]].abs().sum() == 0  # unmapped texels black


def test_skeleton_labels_follow_the_mannequins_parts():
    """Nearest-bone labels agree with the mannequin's true part map on most body pixels."""
    f = MannequinSequence("walk", 1, camera=Camera.orbit(20.0, width=128, height=128))[0]
    labels, uv = skeleton_labels(torch.from_numpy(f.joints2d)[None], torch.from_numpy(f.mask.astype(np.float32))[None])
    fg = f.mask
    assert (labels[0].numpy()[~fg] == NUM_PARTS).all()
    agree = (labels[0].numpy()[fg] == f.part[fg]).mean()
    assert agree > 0.7, agree
    assert uv.min() >= 0 and uv.max() <= 1


def test_surface_targets_at_the_generators_crop_are_centred_and_soft_at_part_borders():
    """The exact maps area-resampled 64 -> 32: a uv ramp keeps its value at each target pixel's centre (a
    nearest downsampling shifted it by half a pixel), a pixel straddling a part border gets both parts in
    proportion, and its uv is the mean over its likeliest part's source pixels only."""
    part = torch.full((1, 64, 64), NUM_PARTS)
    part[:, 16:48, 16:48] = PART["torso"]
    part[:, 16:48, 31:48] = PART["pelvis"]        # the border at column 31: odd, so it cuts target pixel 15
    x = (torch.arange(64) + 0.5) / 64
    uv = torch.stack([x.expand(64, 64), x[:, None].expand(64, 64)])[None].clone()
    uv[:, 0, :, 31:] = 0.9                          # pelvis u: constant, far from the torso's ramp
    probs, tuv = surface_targets(part, uv, 32)
    assert probs.shape == (1, NUM_PARTS + 1, 32, 32) and torch.allclose(probs.sum(1), torch.ones(1, 32, 32))
    centre = (torch.arange(32) + 0.5) / 32
    assert torch.allclose(tuv[0, 1, 8:24, 10], centre[8:24], atol=1e-6)           # v ramp, centred
    assert torch.allclose(tuv[0, 0, 10, 8:15], centre[8:15], atol=1e-6)           # u ramp inside the torso
    assert probs[0, PART["torso"], 10, 15] == 0.5 and probs[0, PART["pelvis"], 10, 15] == 0.5
    assert probs[0, NUM_PARTS, 10, 7] == 1 and probs[0, PART["torso"], 10, 8] == 1
    k = probs[0, :, 10, 15].argmax()                                               # a tie: one of the two
    assert tuv[0, 0, 10, 15] == pytest.approx(30.5 / 64 if k == PART["torso"] else 0.9, abs=1e-6)


def test_initialisation_on_exact_maps_uses_every_part(dataset, tmp_path):
    """Pre-training on the mannequin's exact maps (class-balanced): every part is predicted, close to its
    true share of the body, and its texture is sampled; the table is reported."""
    torch.manual_seed(0)
    lines = []
    cfg = AvatarTrainConfig(dataset, steps=0, pretrain_steps=150, **FAST_TRAIN)
    train_avatar(cfg, tmp_path / "i.safetensors", progress=False, report=lines.append)
    parts = __import__("json").loads((tmp_path / "i.json").read_text())["init"]["parts"]
    share, expected = np.array(parts["share"]), np.array(parts["expected"])
    assert (share > LOST_RATIO * expected).all(), (share, expected)   # measured: ratios 0.22-2.3 at 150 steps
    assert (np.array(parts["coverage"]) > 0).sum() >= NUM_PARTS - 1   # measured: one forearm never the likeliest
    assert "left_hand" in lines[0] and "predicted" in lines[0]


def test_a_generator_that_loses_a_part_is_refused(dataset, tmp_path):
    torch.manual_seed(0)
    cfg = AvatarConfig("textured", TINY, 16, CropConfig(size=64))
    model = cfg.build()
    with torch.no_grad():
        model.net.decoder_a[-1].bias[PART["left_hand"]] = -1e4   # never the likeliest part, no weight
    src = save_avatar(tmp_path / "lost.safetensors", model, cfg)
    with pytest.raises(PartLostError, match="left_hand"):
        train_avatar(AvatarTrainConfig(dataset, steps=1, init_from=str(src), **FAST_TRAIN),
                     tmp_path / "x.safetensors", progress=False, report=lambda _: None)


def test_training_lowers_the_loss_and_checkpoints_round_trip(dataset, tmp_path):
    torch.manual_seed(0)
    cfg = AvatarTrainConfig(dataset, steps=20, pretrain_steps=6, **FAST_TRAIN)
    out = tmp_path / "a.safetensors"
    r = train_avatar(cfg, out, progress=False, report=lambda _: None)
    assert r.steps == 20 and out.is_file() and (tmp_path / "a.json").is_file() and (tmp_path / "a_loss.png").is_file()
    import json
    record = json.loads((tmp_path / "a.json").read_text())
    hist = record["history"]
    assert hist[-1]["total"] < hist[0]["total"]
    assert [h["step"] for h in record["part_history"]] == [10, 20]     # per-part shares logged with the losses
    assert len(record["part_history"][0]["share"]) == NUM_PARTS
    assert 0 <= load_avatar(out)[0].textures.min() and load_avatar(out)[0].textures.max() <= 1  # projected
    model, acfg = load_avatar(out)
    assert isinstance(model, TexturedAvatar) and acfg.generator == TINY and acfg.crop.size == 64
    ds = AvatarDataset(dataset)
    b = ds.batch([0, 1])
    # resuming continues from the saved step, with the same weights
    cfg2 = AvatarTrainConfig(**{**cfg.__dict__, "steps": 22})
    before = model(b.bones).rgb
    r2 = train_avatar(cfg2, out, progress=False, report=lambda _: None)
    assert r2.steps == 22
    after = load_avatar(out)[0](b.bones).rgb
    assert 0 < (after - before).abs().max() < 0.5
    scores = evaluate_avatars([out], dataset, tmp_path / "eval", progress=False).scores["a"]
    assert 0 < scores["ssim"] <= 1 and scores["psnr"] > 5
    assert scores["parts"] == NUM_PARTS and 0 <= scores["parts_used"] <= NUM_PARTS
    assert (tmp_path / "eval" / "grid.png").is_file() and (tmp_path / "eval" / "a_textures.png").is_file()


def test_learning_rates_decay_along_a_cosine_to_lr_final(dataset, tmp_path):
    """With ``lr_final`` the network's lr follows a cosine from lr to lr_final over the run and the textures'
    is scaled by the same factor (the last of 4 steps runs at 3/4 of the way)."""
    from safetensors import safe_open

    torch.manual_seed(0)
    cfg = AvatarTrainConfig(dataset, steps=4, pretrain_steps=2, lr_final=2e-4, texture_lr=1e-3, **FAST_TRAIN)
    out = train_avatar(cfg, tmp_path / "d.safetensors", progress=False, report=lambda _: None).checkpoint
    with safe_open(str(out.with_name("d.optim.safetensors")), framework="pt") as f:
        groups = __import__("json").loads(f.metadata()["param_groups"])
    factor = (2e-4 + (cfg.lr - 2e-4) * 0.5 * (1 + np.cos(0.75 * np.pi))) / cfg.lr
    assert groups[0]["lr"] == pytest.approx(cfg.lr * factor) and groups[1]["lr"] == pytest.approx(1e-3 * factor)
    with pytest.raises(ValueError, match="lr_final"):
        AvatarTrainConfig(dataset, lr=1e-4, lr_final=1e-3)


def test_scores_at_a_dataset_resolution_other_than_the_crop(dataset, tmp_path):
    """A 32 px model on 64 px data: bones drawn at 32, output rendered and scored at 64; the same
    model's textures sampled at 64 px score at least as well as its 32 px output blown up."""
    torch.manual_seed(0)
    cfg = AvatarTrainConfig(dataset, steps=0, pretrain_steps=40, crop_size=32, **FAST_TRAIN)
    out = train_avatar(cfg, tmp_path / "c32.safetensors", progress=False, report=lambda _: None).checkpoint
    assert load_avatar(out)[1].crop.size == 32
    s = evaluate_avatars([out], dataset, tmp_path / "e", progress=False).scores["c32"]
    assert s["frames"] == 16 and 0 < s["ssim_person"] < 1 and s["parts"] == NUM_PARTS
    assert set(s["part_shares"]) == set(PART) and abs(sum(s["part_shares"].values()) - 1) < 1e-3


class _FixedMaps(torch.nn.Module):
    """A generator stand-in: part 0 everywhere inside a centred square, u and v ramps across it."""

    def __init__(self, s: int):
        super().__init__()
        self.s = s

    def forward(self, bones):
        b, s = bones.shape[0], self.s
        logits = torch.full((b, NUM_PARTS + 1, s, s), -20.0)
        logits[:, 0] = 20.0
        ramp = (torch.arange(s) + 0.5) / s
        u, v = ramp[None, :].expand(s, s), ramp[:, None].expand(s, s)
        coords = torch.zeros(b, 2 * NUM_PARTS, s, s)
        coords[:, 0], coords[:, 1] = torch.logit(u), torch.logit(v)
        return logits, coords


def test_rendering_at_twice_the_crop_keeps_the_textures_high_frequencies():
    """A checkerboard of 1-texel squares on a 64-texel texture, mapped across a 32 px crop: at the crop
    two texels fall in a pixel (grey), rendered at 64 px the checkerboard itself reaches the output."""
    s, t = 32, 64
    model = TexturedAvatar(TINY, texture_size=t).eval()
    model.net = _FixedMaps(s)
    board = ((torch.arange(t)[:, None] + torch.arange(t)[None, :]) % 2).float()
    with torch.no_grad():
        model.textures.copy_(board.expand(NUM_PARTS, 3, t, t))
    x = torch.zeros(1, NUM_CHANNELS, s, s)
    with torch.no_grad():
        at_crop = torch.nn.functional.interpolate(model(x).rgb, size=(2 * s, 2 * s), mode="bilinear")
        full, fast = model(x, 2 * s).rgb, model.render(x, 2 * s).rgb
        small = model.render(x, s // 2).rgb     # smaller than the texture: prefiltered (mip level 2), grey
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    assert at_crop[inner].std() < 0.05                     # measured 0.00
    assert full[inner].std() > 0.45 and fast[inner].std() > 0.45   # measured 0.50 (the board: 0 and 1)
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=0)
    assert (small[inner] - 0.5).abs().max() < 0.05


def test_mip_sampling_trains_and_scores_the_level_the_output_sees():
    """With mip_sampling, eq. 6.1 samples the level whose texels are about one output pixel, as the
    renderer does: the 1-texel checkerboard seen at half its resolution is grey in both, and a gradient
    reaches the four texels under one level-1 texel alike (none can take a colour of its own)."""
    s, t = 32, 64
    model = TexturedAvatar(TINY, texture_size=t, mip_sampling=True).eval()
    model.net = _FixedMaps(s)
    board = ((torch.arange(t)[:, None] + torch.arange(t)[None, :]) % 2).float()
    with torch.no_grad():
        model.textures.copy_(board.expand(NUM_PARTS, 3, t, t))
    x = torch.zeros(1, NUM_CHANNELS, s, s)
    out = model(x)                                           # 2 texels per pixel: level 1
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    assert (out.rgb[inner] - 0.5).abs().max() < 1e-5
    with torch.no_grad():
        torch.testing.assert_close(model.render(x, s).rgb, out.rgb.detach(), atol=1e-5, rtol=0)
        assert model(x, 2 * s).rgb[inner].std() > 0.45      # at the texture's own resolution: level 0, the board
    out.rgb[inner].square().sum().backward()
    g = model.textures.grad[0, 0, 16:48, 16:48]               # inside the mapped area
    blocks = g.view(16, 2, 16, 2)
    assert g.abs().sum() > 0 and (blocks - blocks.mean((1, 3), keepdim=True)).abs().max() < 1e-7


def test_no_colour_where_the_mask_is_about_zero():
    rgb = torch.full((1, 3, 2, 2), 1e-5)
    mask = torch.tensor([[[[1e-4, MIN_MASK / 2], [0.5, 1.0]]]])
    rgb[..., 1, :] = mask[..., 1, :] * 0.8
    c = AvatarOutput(rgb, mask, torch.logit(mask)).colour()
    assert (c[..., 0, :] == 0).all()                        # 1e-5 / 1e-4 would be 10% grey, amplified
    torch.testing.assert_close(c[..., 1, :], torch.full((1, 3, 2), 0.8))
    torch.manual_seed(0)
    cfg = AvatarConfig("textured", TINY, 16, CropConfig(size=64))
    f = MannequinSequence("walk", 1, camera=Camera.orbit(0.0, width=160, height=120))[0]
    out = AvatarRenderer(cfg.build(), cfg)(f.joints2d, (120, 160))
    assert out.mask.max() > 0.5 and out.rgb[out.mask < MIN_MASK].max() == 0


def test_save_load_is_exact_and_pickle_free(tmp_path):
    torch.manual_seed(3)
    cfg = AvatarConfig("direct", TINY, crop=CropConfig(size=32))
    m = cfg.build().eval()
    p = save_avatar(tmp_path / "d.safetensors", m, cfg, {"note": "x"})
    m2, cfg2 = load_avatar(p)
    x = torch.rand(1, NUM_CHANNELS, 32, 32)
    torch.testing.assert_close(m(x).rgb, m2(x).rgb, rtol=0, atol=0)
    assert cfg2 == cfg and isinstance(m2, DirectAvatar)
    (tmp_path / "bad.safetensors").write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(Exception):
        load_avatar(tmp_path / "bad.safetensors")


def test_renderer_pastes_at_the_person_and_handles_empty_frames():
    torch.manual_seed(0)
    cfg = AvatarConfig("textured", TINY, 16, CropConfig(size=64))
    r = AvatarRenderer(cfg.build(), cfg)
    f = MannequinSequence("walk", 1, camera=Camera.orbit(0.0, width=160, height=120))[0]
    out = r(f.joints2d, (120, 160))
    assert out.rgb.shape == (120, 160, 3) and out.rgb.dtype == np.uint8 and out.mask.shape == (120, 160)
    crop = person_crop(f.joints2d, cfg.crop)
    ys, xs = np.nonzero(out.mask > 0)
    half = crop.side / 2 + 1
    assert xs.min() >= crop.cx - half and xs.max() <= crop.cx + half
    empty = r(None, (120, 160))
    assert empty.mask.max() == 0 and empty.rgb.max() == 0
    hidden = f.joints2d.copy()
    hidden[:, 3] = 0
    assert r(hidden, (120, 160)).mask.max() == 0


def test_crop_maps_keypoints_and_images_consistently():
    f = MannequinSequence("dance", 1, camera=Camera.orbit(30.0, width=256, height=256))[0]
    c = person_crop(f.joints2d, CropConfig(size=128))
    kp = c.keypoints(f.joints2d, 128)
    img = c.cut(f.mask.astype(np.float32), 128, interpolation=0)  # nearest
    j = np.round(kp[:, :2]).astype(int)
    inside = (j >= 0).all(1) & (j < 128).all(1)
    # a joint of the torso projects onto the body in the crop as in the frame
    hip = 23
    assert inside[hip] and img[j[hip, 1], j[hip, 0]] == 1.0
    back = c.paste(c.cut(f.mask.astype(np.float32), 128), 256, 256)
    assert abs(back.sum() - f.mask.sum()) / f.mask.sum() < 0.05


def test_bf16_fast_path_stays_close_to_fp32():
    torch.manual_seed(0)
    cfg = AvatarConfig("textured", GeneratorConfig.small(), 32, CropConfig(size=64))
    model = cfg.build()
    f = MannequinSequence("walk", 1, camera=Camera.orbit(0.0, width=64, height=64))[0]
    from avatars.body.bones import rasterize_bones
    x = torch.from_numpy(rasterize_bones(f.joints2d, 64, 64))[None]
    ref = AvatarRenderer(model, cfg).render_bones(x)
    fast = AvatarRenderer(model, cfg, fast=True, bf16=True).render_bones(x)
    err = (fast.rgb - ref.rgb).abs()
    assert err.mean() < 0.01 and err.max() < 0.1, (err.mean(), err.max())
    assert (fast.mask - ref.mask).abs().max() < 0.05


def test_prepare_video_crops_real_frames_and_caches(media, tmp_path):
    from avatars.avatar.data import prepare_video
    video = media / "video" / "kinetics_ta_chi_340x256.mp4"
    out = prepare_video(video, tmp_path / "d", CropConfig(size=64), holdout=0.25, max_frames=8, progress=False)
    train, test = AvatarDataset(out, "train"), AvatarDataset(out, "test")
    assert len(train) + len(test) == 8 and len(test) == 2
    assert train.rgb.shape[1:] == (64, 64, 3) and train.mask.max() > 200
    b = train.batch([0])
    hips = b.keypoints[0, 23:25, :2].mean(0)  # the crop follows the hips: near the centre
    assert (hips - 31.5).abs().max() < 8 and b.bones.abs().sum() > 0
    assert b.rgb[0][:, b.mask[0] == 0].max() == 0  # background blacked out
    stamp = (out / "frames.npz").stat().st_mtime_ns
    prepare_video(video, tmp_path / "d", CropConfig(size=64), holdout=0.25, max_frames=8, progress=False)
    assert (out / "frames.npz").stat().st_mtime_ns == stamp  # cached
    with pytest.raises(ValueError, match="no split"):
        AvatarDataset(out, "validation")


def test_a_transfer_runs_auxiliary_targets_are_its_start_maps_inside_the_persons_mask(dataset):
    """After a transfer the pre-training targets would be another body's; the anchor takes the start's
    own likeliest part and its uv where this person is, background elsewhere."""
    from avatars.avatar.training import _Anchor

    torch.manual_seed(0)
    model = TexturedAvatar(TINY, texture_size=16)
    data = AvatarDataset(dataset)
    anchor = _Anchor(model.net, data, 64, np.random.default_rng(0), torch.device("cpu"))
    b = data.batch(np.arange(4), torch.device("cpu"), 64)
    probs, uv = anchor(b)
    labels = probs.argmax(1)
    assert torch.equal(probs.sum(1), torch.ones_like(labels, dtype=probs.dtype))   # one-hot
    logits, coords = model.predict(b.bones)
    person = b.mask >= 0.5
    assert torch.equal(labels[~person], torch.full_like(labels[~person], NUM_PARTS))
    assert torch.equal(labels[person], logits[:, :NUM_PARTS].argmax(1)[person])
    k = labels.clamp(max=NUM_PARTS - 1)
    picked = coords.view(4, NUM_PARTS, 2, 64, 64).gather(1, k[:, None, None].expand(-1, -1, 2, -1, -1))[:, 0]
    assert torch.allclose(uv.permute(0, 2, 3, 1)[person], picked.permute(0, 2, 3, 1)[person], atol=1e-6)
    assert anchor.weight.shape == (NUM_PARTS + 1,) and all(p.requires_grad is False for p in anchor.net.parameters())
