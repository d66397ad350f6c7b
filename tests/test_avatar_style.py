"""stylize-avatar as a user runs it: the shipped avatar's textures painted once by a shipped style or any
painting, stored as an avatar that loads by name and renders with no black from unseen texels; the fill
of unseen texels and the atlas's geometry; bad input refused before any work."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from avatars.avatar.stylize_textures import fill_unseen, paint_atlas

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = ("--frames", "1", "--texel-scale", "0.25", "--threads", "1")   # 16 poses, atlas tiles of 64 texels


def launch(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {"NEURAL_STREAM_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "launch", *argv], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)


def _render(path: Path, frames: int = 6) -> list:
    from avatars.avatar.model import AvatarRenderer
    from avatars.body.mannequin import Camera, MannequinSequence

    renderer = AvatarRenderer.open(path)
    seq = MannequinSequence("dance", frames, 5.0, Camera.orbit(45.0, width=256, height=256))
    return [renderer(f.joints2d, (256, 256)) for f in seq]


def _dark_person_share(outs: list) -> float:
    pixels = np.concatenate([o.rgb[o.mask >= 0.5] for o in outs])
    return float((pixels.max(1) < 16).mean())


def test_unseen_texels_are_filled_from_seen_ones_and_seen_ones_kept():
    t = 32
    yy, xx = torch.meshgrid(torch.arange(t), torch.arange(t), indexing="ij")
    seen = torch.stack([(yy - 12) ** 2 + (xx - 14) ** 2 < 64, torch.zeros(t, t, dtype=torch.bool)])
    tex = torch.zeros(2, 3, t, t)                      # unseen texels black, as a fresh texture's are
    tex[0, 0], tex[0, 1] = 0.2 + 0.6 * xx / t, 0.9 - 0.5 * yy / t
    tex[1] = 0.3
    out = fill_unseen(tex, seen, relax_steps=200)
    assert torch.equal(out[0][:, seen[0]], tex[0][:, seen[0]])          # seen texels untouched
    assert torch.equal(out[1], tex[1])                                  # a part nobody sees is left alone
    unseen = out[0][:, ~seen[0]]
    lo, hi = tex[0][:, seen[0]].amin(1, keepdim=True), tex[0][:, seen[0]].amax(1, keepdim=True)
    assert ((unseen >= lo - 1e-6) & (unseen <= hi + 1e-6)).all()        # no black, no colour the seen ones lack
    p = torch.nn.functional.pad(out[:1], (1, 1, 1, 1), mode="replicate")
    mean = (p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]) / 4
    assert (out[0] - mean[0]).abs()[:, ~seen[0]].max() < 2e-3           # each unseen texel ~ its neighbours' mean


def test_the_atlas_gives_each_part_back_in_place():
    g = torch.Generator().manual_seed(0)
    tex = torch.rand(5, 3, 16, 16, generator=g)
    seen = torch.rand(5, 16, 16, generator=g) > 0.5
    assert torch.allclose(paint_atlas(tex, seen, lambda x, w: x, 1.0, 4), tex, atol=1e-6)
    # the weights the stylizer gets are the seen texels of the same part, and nothing in the margins
    back = paint_atlas(tex, seen, lambda x, w: w.expand(-1, 3, -1, -1), 1.0, 4)
    assert torch.equal(back[:, 0] > 0.5, seen)


def test_a_style_paints_the_textures_of_an_avatar_that_loads_by_name_and_renders(tmp_path, monkeypatch):
    from avatars.avatar.model import read_avatar_meta
    from avatars.core.weights import resolve_weights

    r = launch(tmp_path, "stylize-avatar", "mannequin_avatar", "starry_night", "-o", "starry_me", *FAST)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "home" / "avatar" / "starry_me.safetensors"
    assert f"avatar    {out}" in r.stdout and "--set avatar.model=starry_me" in r.stdout
    monkeypatch.setenv("NEURAL_STREAM_HOME", str(tmp_path / "home"))
    assert resolve_weights("starry_me", "avatar") == out
    record = read_avatar_meta(out)
    assert record["stylized"]["source"]["name"] == "mannequin_avatar.safetensors"
    assert record["stylized"]["style"]["stylizer"] == "starry_night"
    assert record["stylized"]["method"]["texel_scale"] == 0.25 and len(record["stylized"]["method"]["texel_coverage"]) == 15
    assert str(tmp_path) not in out.with_suffix(".json").read_text() and "/work" not in json.dumps(record)
    assert load_file(str(out))["textures"].dtype == torch.uint8          # stored as shipped avatars store them
    source = resolve_weights("mannequin_avatar", "avatar")
    plain, painted = _render(source), _render(out)
    # the same generator: the same person, pixel for pixel of the mask; the colours are new
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(plain, painted))
    person = np.concatenate([a.mask for a in plain]) >= 0.5
    diff = np.abs(np.concatenate([a.rgb for a in plain]).astype(int) - np.concatenate([b.rgb for b in painted]))
    assert diff[person].mean() > 20
    # no black bled in from texels no pose samples: no more near-black person pixels than the source has
    assert _dark_person_share(painted) <= _dark_person_share(plain) + 0.002
    # the graphs find it by name like any avatar
    r = launch(tmp_path, "validate", "demo", "--set", "avatar.model=starry_me")
    assert r.returncode == 0, r.stderr


def test_any_painting_paints_the_textures_with_the_universal_stylizer(tmp_path):
    from PIL import Image

    g = np.random.default_rng(1)
    painting = np.full((96, 128, 3), (200, 180, 120), np.uint8)
    for _ in range(40):                                   # a picture of coloured strokes, made here, nothing dark
        y, x = g.integers(0, 96), g.integers(0, 128)
        painting[max(y - 3, 0):y + 3, max(x - 20, 0):x + 20] = g.integers(80, 255, 3)
    Image.fromarray(painting).save(tmp_path / "strokes.png")
    out = tmp_path / "avatars" / "strokes_me.safetensors"
    r = launch(tmp_path, "stylize-avatar", "mannequin_avatar", "--style-image", "strokes.png", "-o", str(out), *FAST)
    assert r.returncode == 0, r.stderr
    style = json.loads(out.with_suffix(".json").read_text())["stylized"]["style"]
    assert style["painting"] == "strokes.png" and style["decoder"] == "vgg_relu3_1" and style["method"] == "wct"
    from avatars.core.weights import resolve_weights

    source = resolve_weights("mannequin_avatar", "avatar")
    assert _dark_person_share(_render(out, 3)) <= _dark_person_share(_render(source, 3)) + 0.002


def test_bad_input_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    import shutil

    from avatars.core.weights import resolve_weights
    from launch.cli import main

    monkeypatch.setenv("NEURAL_STREAM_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home" / "avatar"
    home.mkdir(parents=True)
    (home / "mine.safetensors").write_bytes(b"taken")
    copy = shutil.copy(resolve_weights("mannequin_avatar", "avatar"), home / "copy.safetensors")
    cases = [
        (("nobody", "starry_night", "-o", "x"), "no avatar checkpoint 'nobody'"),
        (("mannequin_avatar", "no_style", "-o", "x"), "no style checkpoint 'no_style'"),
        (("mannequin_avatar", "-o", "x"), "give a style"),
        (("mannequin_avatar", "udnie", "--style-image", "p.png", "-o", "x"), "give a style"),
        (("mannequin_avatar", "udnie", "-o", "mannequin_avatar"), "shipped avatar's name"),
        (("mannequin_avatar", "udnie", "-o", "mine"), "exists; --overwrite replaces it"),
        (("mannequin_avatar", "udnie", "-o", "Not A Name"), "an avatar name"),
        (("starry_night", "udnie", "-o", "x"), "is a StyleNet stylizer, not an avatar"),
        ((str(home / "mine.safetensors"), "udnie", "-o", "x"), "not a checkpoint of this project"),
        (("copy", "udnie", "-o", str(copy), "--overwrite"), "a job never writes over its input"),
        (("mannequin_avatar", "--style-image", "missing.png", "-o", "x"), "missing.png: no such file"),
    ]
    for argv, message in cases:
        code = main(["stylize-avatar", *argv])
        err = capsys.readouterr().err
        assert code == 2 and message in err, (argv, err)
    assert (home / "mine.safetensors").read_bytes() == b"taken"
    assert sorted(p.name for p in home.iterdir()) == ["copy.safetensors", "mine.safetensors"]
