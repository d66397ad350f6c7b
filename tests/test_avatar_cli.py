"""The avatar commands of the command line, end to end on real files: prepare-avatar (mannequin,
real clip, bad input), train-avatar (checkpoint, samples, loss curve, resume, conflicts) and
eval-avatar (scores printed and written, grid, textures)."""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avatars.body.skeleton import NUM_PARTS, PART
from launch.cli import main
from launch.command import Exit

CROP = 32
# a cheap perceptual loss (random VGG, two shallow taps), tiny textures: the commands, not the model, are tested
FAST = ["--vgg-weights", "random", "--vgg-taps", "1,relu2_1", "--batch-size", "2", "--texture-size", "16",
        "--pretrain-steps", "2", "--init-frames", "4", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(*argv) -> tuple[int, str, str]:
    """``python -m launch ARGV`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A mannequin dataset made by the command: 2 motions x 2 views x 4 frames, 32 px crops."""
    out = tmp_path_factory.mktemp("cli") / "mannequin"
    code, stdout, err = run("prepare-avatar", "--mannequin", "-o", out, "--motions", "walk,turn_around",
                            "--angles", "0,90", "--frames-per-clip", "4", "--fps", "5", "--size", CROP, "--quiet")
    assert code == 0, err
    assert f"{out}: 16 frames, {CROP} px crops" in stdout
    assert "--motions arm_wave --angles 30,120" in stdout   # how to make held-out frames
    return out


@pytest.fixture(scope="module")
def checkpoints(data) -> dict:
    """A textured avatar trained for 10 steps and a direct one for 4, by the command."""
    a, b = data.parent / "tex.safetensors", data.parent / "dir.safetensors"
    code, out_a, err = run("train-avatar", data, "-o", a, "--steps", "10", "--sample-every", "5", *FAST)
    assert code == 0, err
    code, out_b, err = run("train-avatar", data, "-o", b, "--kind", "direct", "--steps", "4", *FAST)
    assert code == 0, err
    return {"textured": a, "direct": b, "stdout": out_a}


def _record(ckpt: Path) -> dict:
    return json.loads(ckpt.with_suffix(".json").read_text())


def test_train_avatar_writes_checkpoint_samples_and_curve_and_reports_them(checkpoints):
    a, out = checkpoints["textured"], checkpoints["stdout"]
    rec = _record(a)
    assert rec["step"] == 10 and rec["kind"] == "textured" and rec["model"]["texture_size"] == 16
    assert rec["train"]["vgg_taps"] == [1, "relu2_1"] and rec["train"]["pretrain_steps"] == 2
    assert [h["step"] for h in rec["history"]] == [10]
    samples = a.with_name("tex_samples")
    assert sorted(p.name for p in samples.iterdir()) == ["step_000000.png", "step_000005.png", "step_000010.png"]
    # rows ground truth, output, mask, likeliest part; the 4 fixed frames side by side
    assert np.array(Image.open(samples / "step_000010.png")).shape == (4 * CROP, 4 * CROP, 3)
    assert a.with_name("tex_loss.png").stat().st_size > 0 and a.with_name("tex.optim.safetensors").is_file()
    assert f"checkpoint    {a}" in out and f"samples       {samples}/" in out and "latest step_000010.png" in out
    assert f"loss curve    {a.with_name('tex_loss.png')}" in out and "steps         10 (10 this run)" in out
    printed = dict(re.findall(r"(\w+) ([0-9.e+-]+)", out.split("final losses")[1].split("(mean")[0]))
    assert set(printed) == {"perceptual", "mask", "pixel", "aux", "total"} == set(rec["final_losses"])  # aux: toward the init maps
    for k, v in rec["final_losses"].items():
        assert float(printed[k]) == pytest.approx(v, rel=1e-3)
    assert _record(checkpoints["direct"])["kind"] == "direct"


def test_train_avatar_resumes_the_step_count_and_refuses_conflicts(checkpoints, data, tmp_path):
    for suffix in (".safetensors", ".json", ".optim.safetensors"):
        shutil.copy(checkpoints["textured"].with_name("tex" + suffix), tmp_path / ("a" + suffix))
    a = tmp_path / "a.safetensors"
    before = a.read_bytes()
    code, out, err = run("train-avatar", data, "-o", a, "--steps", "12", "--quiet")
    assert code == 0, err
    assert "resuming" in out and "from step 10" in out and "steps         12 (2 this run)" in out
    rec = _record(a)
    assert rec["step"] == 12 and rec["seconds"] >= _record(checkpoints["textured"])["seconds"]
    assert rec["train"]["vgg_taps"] == [1, "relu2_1"]      # the checkpoint's own settings were kept
    assert [h["step"] for h in rec["history"]] == [10] and a.read_bytes() != before
    assert (tmp_path / "a_samples" / "step_000012.png").is_file()

    # at its limit already: nothing is trained and the checkpoint keeps its record
    stamp = a.stat().st_mtime_ns
    code, out, _ = run("train-avatar", data, "-o", a, "--quiet")
    assert code == 0 and "nothing to do" in out and a.stat().st_mtime_ns == stamp
    # a different model cannot resume this one
    code, out, err = run("train-avatar", data, "-o", a, "--kind", "direct", "--steps", "20")
    assert code == Exit.REFUSED and err.startswith(f"error: {a} is a textured avatar") and "--kind direct" in err
    code, _, err = run("train-avatar", data, "-o", a, "--size", "paper", "--steps", "20")
    assert code == Exit.REFUSED and "--size paper" in err
    assert a.stat().st_mtime_ns == stamp


def test_eval_avatar_prints_scores_and_writes_grid_and_textures(checkpoints, data, tmp_path):
    a, b = checkpoints["textured"], checkpoints["direct"]
    code, out, err = run("eval-avatar", a, b, data, "-o", tmp_path / "ev", "--quiet", "--save-frames")
    assert code == 0, err
    scores = json.loads((tmp_path / "ev" / "scores.json").read_text())["scores"]
    assert set(scores) == {"tex", "dir"}
    names = ("ssim", "ssim_person", "lpips", "lpips_person", "psnr", "hf_ratio")
    for name, kind in (("tex", "textured"), ("dir", "direct")):
        row = re.search(rf"^{name} +{kind} +([0-9.]+) +([0-9.]+) +([0-9.]+) +([0-9.]+) +([0-9.]+) dB +([0-9.]+) +(\S+)$",
                        out, re.M)
        assert row, out
        printed = dict(zip(names, map(float, row.groups()[:6])))
        parts = f"{scores[name]['parts_used']}/{NUM_PARTS}" if kind == "textured" else "-"
        assert row.group(7) == parts and ("parts" in scores[name]) == (kind == "textured")
        assert 0 < printed["ssim"] <= 1 and 5 < printed["psnr"] < 60 and 0 < printed["lpips"] < 1 and printed["hf_ratio"] >= 0
        assert printed == pytest.approx({k: scores[name][k] for k in names}, abs=6e-3)
    # every scored frame as PNG: ground truth and each checkpoint's render, same size, RGB
    frames = tmp_path / "ev" / "frames"
    assert sorted(p.name for p in frames.glob("0000_*")) == ["0000_dir.png", "0000_gt.png", "0000_tex.png"]
    assert len(list(frames.glob("*_gt.png"))) == 16
    gt, tex = (np.array(Image.open(frames / f"0007_{t}.png")) for t in ("gt", "tex"))
    assert gt.shape == tex.shape == (CROP, CROP, 3) and gt[0, 0].max() == 0   # background black
    assert "(16 frames)" in out and "split all" in out
    assert out.splitlines()[-3].startswith("checkpoint") and out.splitlines()[-1].startswith("dir ")  # scores last
    grid = np.array(Image.open(tmp_path / "ev" / "grid.png"))
    assert grid.shape == (3 * CROP, 6 * CROP, 3)                  # ground truth | textured | direct, 6 frames
    textures = np.array(Image.open(tmp_path / "ev" / "tex_textures.png"))
    assert textures.shape == (3 * 16 + 4 * 2, 5 * 16 + 6 * 2, 3) and textures.std() > 0   # rows of five parts
    assert not (tmp_path / "ev" / "dir_textures.png").exists()   # the direct baseline has no textures
    assert f"textures  {tmp_path / 'ev' / 'tex_textures.png'}" in out and "rows: ground truth, tex, dir" in out


def test_train_and_eval_refuse_what_is_not_a_dataset_or_a_checkpoint(checkpoints, data, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run("train-avatar", empty, "-o", tmp_path / "x.safetensors", "--steps", "1")
    assert code == Exit.REFUSED and err == f"error: {empty}: not an avatar dataset (no meta.json); make one with prepare-avatar\n"
    code, _, err = run("train-avatar", tmp_path / "nowhere", "-o", tmp_path / "x.safetensors")
    assert code == Exit.REFUSED and f"{tmp_path / 'nowhere'}: no such dataset folder" in err
    assert not (tmp_path / "x.safetensors").exists()

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x04 not a safetensors file")
    code, _, err = run("eval-avatar", checkpoints["textured"], bad, data, "-o", tmp_path / "ev")
    assert code == Exit.REFUSED and err.startswith(f"error: {bad}: not an avatar checkpoint")
    code, _, err = run("eval-avatar", tmp_path / "missing.safetensors", data)
    assert code == Exit.REFUSED and f"{tmp_path / 'missing.safetensors'}: no such file" in err
    code, _, err = run("eval-avatar", checkpoints["textured"], data, "--split", "test")
    assert code == Exit.REFUSED and "no split 'test'" in err
    code, _, err = run("train-avatar", data, "-o", bad, "--steps", "1")        # resuming from a non-avatar
    assert code == Exit.REFUSED and err.startswith(f"error: {bad}: not an avatar checkpoint")
    assert not (tmp_path / "ev").exists()


def test_prepare_avatar_refuses_a_missing_video(tmp_path):
    missing = tmp_path / "no_such_clip.mp4"
    p = subprocess.run([sys.executable, "-m", "launch", "prepare-avatar", str(missing), "-o", "unused"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == Exit.REFUSED and p.stderr.strip() == f"error: video not found: {missing}"
    assert not (tmp_path / "unused").exists()


def test_prepare_avatar_refuses_a_video_without_a_person(tmp_path):
    import av

    video = tmp_path / "pattern.mp4"
    with av.open(str(video), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 128, 96, "yuv420p"
        y, x = np.mgrid[:96, :128]
        for i in range(8):   # colour bars sliding over a gradient: a test pattern, nobody in it
            img = np.stack([(x * 2 + i * 8) % 256, (y * 2) % 256, ((x // 16) % 2) * 255], -1).astype(np.uint8)
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    code, _, err = run("prepare-avatar", video, "-o", tmp_path / "d", "--quiet")
    assert code == Exit.REFUSED and err == f"error: {video}: no frame with a visible person\n"
    assert not (tmp_path / "d" / "frames.npz").exists()
    code, _, err = run("prepare-avatar", "-o", tmp_path / "d")
    assert code == Exit.REFUSED and "give a VIDEO or --mannequin" in err
    code, _, err = run("prepare-avatar", video, "-o", tmp_path / "d", "--motions", "walk")
    assert code == Exit.REFUSED and "--motions go with --mannequin" in err
    code, _, err = run("prepare-avatar", video, "-o", tmp_path / "d", "--size", "40")
    assert code == Exit.REFUSED and "multiple of 16" in err


def test_prepare_avatar_on_a_real_clip(media, tmp_path):
    video = media / "video" / "kinetics_ta_chi_340x256.mp4"
    if not video.is_file():
        pytest.skip(f"{video} not found")
    out = tmp_path / "clip"
    args = ("prepare-avatar", video, "-o", out, "--size", "64", "--max-frames", "6", "--holdout", "0.34", "--quiet")
    code, stdout, err = run(*args)
    assert code == 0, err
    meta = json.loads((out / "meta.json").read_text())
    assert meta["frames"] == 6 and meta["splits"] == {"train": [0, 4], "test": [4, 6]}
    assert meta["crop"]["size"] == 64 and meta["source"] == str(video)
    assert stdout.startswith(f"{out}: 6 frames (train 4, test 2), 64 px crops, torso ") and "cached" not in stdout
    with np.load(out / "frames.npz") as f:
        assert f["rgb"].shape == (6, 64, 64, 3) and f["mask"].max() > 200
    code, stdout, _ = run(*args)
    assert code == 0 and "(cached: same video and settings)" in stdout


def test_train_avatar_init_from_a_trained_avatar_keeps_its_generator_and_takes_textures_from_the_data(checkpoints, data):
    from safetensors.torch import load_file

    src, out = checkpoints["textured"], data.parent / "warm.safetensors"
    code, stdout, err = run("train-avatar", data, "-o", out, "--steps", "1", "--init-from", src,
                            "--lr", "0", "--texture-lr", "0", *FAST)
    assert code == 0, err
    assert _record(out)["init"]["from"] == src.stem and len(_record(out)["init"]["parts"]["share"]) == NUM_PARTS
    a, b = load_file(str(src)), load_file(str(out))
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("net."))  # lr 0: the generator as it was
    assert not torch.equal(a["textures"], b["textures"])  # re-initialised from the pixels of this data
    assert _record(out)["final_losses"]["aux"] > 0        # anchored to the start's own part/UV maps
    code, _, err = run("train-avatar", data, "-o", data.parent / "bad.safetensors", "--init-from",
                       checkpoints["direct"], "--steps", "1", *FAST)
    assert code == Exit.REFUSED and "cannot start from it: kind direct (this run: textured)" in err


def test_eval_avatar_scores_a_dataset_at_another_resolution_than_the_crop(checkpoints, tmp_path):
    big = tmp_path / "big"
    code, _, err = run("prepare-avatar", "--mannequin", "-o", big, "--motions", "walk", "--angles", "30",
                       "--frames-per-clip", "3", "--size", 2 * CROP, "--quiet")
    assert code == 0, err
    code, out, err = run("eval-avatar", checkpoints["textured"], checkpoints["direct"], big, "-o", tmp_path / "ev", "--quiet")
    assert code == 0, err
    scores = json.loads((tmp_path / "ev" / "scores.json").read_text())["scores"]
    assert scores["tex"]["frames"] == 3 and scores["tex"]["parts"] == NUM_PARTS and 0 < scores["dir"]["ssim"] <= 1
    assert Image.open(tmp_path / "ev" / "grid.png").size == (3 * 2 * CROP, 3 * 2 * CROP)   # scored at 64 px


def test_train_avatar_refuses_a_generator_that_loses_a_part(checkpoints, data):
    from avatars.avatar.model import load_avatar, save_avatar

    model, cfg = load_avatar(checkpoints["textured"])
    with torch.no_grad():
        model.net.decoder_a[-1].bias[PART["right_foot"]] = -1e4
    lost = save_avatar(data.parent / "lost.safetensors", model, cfg)
    code, stdout, err = run("train-avatar", data, "-o", data.parent / "l.safetensors", "--init-from", lost,
                            "--steps", "1", *FAST)
    assert code == Exit.REFUSED and "no pixel of 1 part(s): right_foot" in err
    assert "predicted  expected  texels" in err          # the per-part table comes with it
    assert not (data.parent / "l.safetensors").exists()


def test_a_run_bounded_by_minutes_shows_progress_against_its_time_budget(data, tmp_path):
    code, out, err = run("train-avatar", data, "-o", tmp_path / "t.safetensors", "--minutes", "0.05", *FAST[:-1])
    assert code == 0, err
    bar = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("t:")][-1]
    assert re.search(r"\| 3/3 \[", bar) and "step=" in bar, bar   # 3 s of 3, not steps of 10**9
    assert "1000000000" not in err
