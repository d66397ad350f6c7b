"""The stylizer commands (stylize, train-style, synthesize-texture) and the stylize graphs, end to end.

Real files throughout: images and a short clip with audio are generated here, the shipped styles
and VGG-19 weights are the project's own, videos go through the real supervisor and encoder.
Tiny sizes and step counts keep the file fast on a CPU; model quality is tested elsewhere.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from launch.cli import main
from launch.command import Exit
from launch.shipped import graph_file
from stream.graph import load_graph, parse_overrides
from stream.media import probe

THREADS = ["--threads", "1"]


@pytest.fixture(scope="module", autouse=True)
def _modest_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _pattern(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // w, yy * 255 // h, (xx // 8 + yy // 8) % 2 * 200], -1).astype(np.float64)
    return (img * 0.8 + rng.random((h, w, 3)) * 50).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("style_cli")
    yy, xx = np.mgrid[0:96, 0:96]
    stripes = np.stack([np.sin(xx / 2.5) * 120 + 128, np.cos((xx + yy) / 4) * 120 + 128, (yy % 16) * 16], -1)
    Image.fromarray(stripes.astype(np.uint8)).save(d / "style.png")
    (d / "content").mkdir()
    for i in range(3):
        Image.fromarray(_pattern(72, 88, i)).save(d / "content" / f"photo{i}.png")
    Image.fromarray(_pattern(60, 90, 7)).save(d / "input.png")
    (d / "notes.txt").write_text("not a picture\n")
    make_clip(d / "clip.mp4")
    return {"dir": d, "style": d / "style.png", "content": d / "content", "image": d / "input.png",
            "text": d / "notes.txt", "clip": d / "clip.mp4"}


def make_clip(path: Path, frames: int = 12, w: int = 96, h: int = 64, fps: int = 12) -> None:
    """An H.264 clip with a moving bar and a mono AAC tone as long as the video."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
        for i in range(frames):
            img = _pattern(h, w, i)
            img[:, 6 * i:6 * i + 12] = 255
            for packet in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        n = 16000 * frames // fps
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype(np.float32)[None]
        for start in range(0, n, 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start:start + 1024]), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            for packet in a.encode(frame):
                c.mux(packet)
        for stream in (a, v):
            for packet in stream.encode(None):
                c.mux(packet)


def _first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


# -- stylize ----------------------------------------------------------------------------------

def test_stylize_image_with_a_shipped_style(files, tmp_path, capsys):
    out = tmp_path / "nested" / "styled.png"
    assert main(["stylize", "starry_night", str(files["image"]), str(out), *THREADS]) == 0
    assert str(out) in capsys.readouterr().out
    before, after = _rgb(files["image"]), _rgb(out)
    assert after.shape == before.shape == (60, 90, 3)
    assert np.abs(after - before).mean() > 20  # painted, not copied

    small = tmp_path / "small.jpg"
    assert main(["stylize", "great_wave", str(files["image"]), str(small), "--max-side", "45", "--fp32", *THREADS]) == 0
    assert _rgb(small).shape == (30, 45, 3)
    assert np.abs(_rgb(small) - _rgb(out)[::2, ::2]).mean() > 5  # another style


def test_stylize_image_with_a_mask_paints_only_the_person(files, tmp_path, capsys):
    mask = np.zeros((30, 45), np.uint8)       # half the image's size: scaled to it
    mask[:, :20] = 255                         # the person: the left part
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out, inverse = tmp_path / "person.png", tmp_path / "background.png"
    args = ["stylize", "starry_night", str(files["image"])]
    assert main([*args, str(out), "--mask", str(tmp_path / "mask.png"), *THREADS]) == 0
    before, after = _rgb(files["image"]), _rgb(out)
    assert np.abs(after[:, :38] - before[:, :38]).mean() > 20   # the person is painted
    np.testing.assert_array_equal(after[:, 42:], before[:, 42:])  # the background kept (blend edge between)
    assert main([*args, str(inverse), "--mask", str(tmp_path / "mask.png"), "--region", "background", *THREADS]) == 0
    np.testing.assert_array_equal(_rgb(inverse)[:, :38], before[:, :38])
    capsys.readouterr()
    assert main([*args, str(tmp_path / "o.png"), "--mask", str(files["text"])]) != 0
    assert "notes.txt" in capsys.readouterr().err
    assert main(["stylize", "starry_night", str(files["clip"]), str(tmp_path / "o.mp4"), "--mask", str(tmp_path / "mask.png")]) != 0
    assert "--mask applies to images" in capsys.readouterr().err


def test_stylize_video_through_the_offline_graph_keeps_every_frame_and_the_audio(files, tmp_path, capsys):
    out = tmp_path / "styled.mp4"
    code = main(["stylize", "starry_night", str(files["clip"]), str(out), "--quiet", "--preset", "ultrafast", *THREADS])
    assert code == 0, capsys.readouterr().err
    assert "stylize_video.yaml" in capsys.readouterr().out
    before, after = probe(str(files["clip"])), probe(str(out))
    assert after["frames"] == before["frames"] == 12
    assert (after["width"], after["height"]) == (96, 64)
    assert after["audio"] is not None and after["audio"]["sample_rate"] == 16000
    assert after["audio"]["end"] == pytest.approx(before["audio"]["end"], abs=0.1)
    diff = np.abs(_first_frame(out).astype(np.int16) - _first_frame(files["clip"]).astype(np.int16)).mean()
    assert diff > 20  # the frames went through the stylizer


def _node_processes(pid: int) -> list[int]:
    """The graph's node processes (named ns:...) under the command's process."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            name = (stat.parent / "comm").read_text()
        except OSError:
            continue
        if int(fields[1]) == pid and name.startswith("ns:"):
            found.append(int(stat.parent.name))
    return found


def test_ctrl_c_during_a_video_stylize_says_it_was_interrupted(tmp_path):
    clip, out = tmp_path / "long.mp4", tmp_path / "styled.mp4"
    make_clip(clip, frames=600, w=160, h=120, fps=30)
    proc = subprocess.Popen([sys.executable, "-m", "launch", "stylize", "starry_night", str(clip), str(out),
                             "--quiet", "--preset", "ultrafast", *THREADS], cwd=Path(__file__).resolve().parents[1],
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while len(_node_processes(proc.pid)) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == Exit.INTERRUPTED, err
    assert f"was stopped (Ctrl-C) before its end; {out} was not written" in err
    assert "see the node errors above" not in err and not out.exists()


def test_video_graph_is_rerender_with_a_stylize_node():
    """`stylize` on a video runs graphs/rerender.yaml's job: same source and sink, a stylizer between."""
    rerender = yaml.safe_load(graph_file("rerender").read_text())
    styled = yaml.safe_load(graph_file("stylize_video").read_text())
    nodes = {n["name"]: n for n in styled["nodes"]}
    assert nodes.pop("style")["kind"] == "stylize"
    for node in rerender["nodes"]:
        assert nodes[node["name"]]["kind"] == node["kind"]
        assert {k: v for k, v in nodes[node["name"]]["params"].items() if k != "path"} == \
            {k: v for k, v in node["params"].items() if k != "path"}
    assert styled["policy"] == rerender["policy"] == "block"
    chain = [e for e in rerender["edges"] if e != "source.out -> sink.in"] + ["source.out -> style.in", "style.out -> sink.in"]
    assert sorted(styled["edges"]) == sorted(chain)


# -- train-style ------------------------------------------------------------------------------

TINY = ["--size", "48", "--style-size", "64", "--batch", "1", "--channels", "8", "8", "16",
        "--residual-blocks", "1", "--sample-every", "2", *THREADS, "--quiet"]


def test_train_style_writes_a_checkpoint_that_stylize_uses_and_resumes(files, tmp_path, capsys):
    ckpt = tmp_path / "runs" / "tiny.safetensors"
    args = ["train-style", "--style", str(files["style"]), "--content", str(files["content"]), "-o", str(ckpt), *TINY]
    assert main([*args, "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert str(ckpt) in out and "final losses" in out and "tiny_samples" in out
    meta = json.loads(ckpt.with_suffix(".json").read_text())
    assert meta["step"] == 3 and meta["train"]["image_size"] == 48 and meta["model"]["channels"] == [8, 8, 16]
    assert sorted(p.name for p in (tmp_path / "runs" / "tiny_samples").iterdir()) == ["step_000002.png", "step_000003.png"]
    assert ckpt.with_name("tiny.optim.safetensors").is_file()

    styled = tmp_path / "styled.png"
    assert main(["stylize", str(ckpt), str(files["image"]), str(styled), *THREADS]) == 0
    assert _rgb(styled).shape == (60, 90, 3)

    # resume: only the checkpoint and the new limit are needed; the stored config does the rest
    assert main(["train-style", "-o", str(ckpt), "--steps", "5", *THREADS, "--quiet"]) == 0
    assert "resuming" in capsys.readouterr().err
    meta = json.loads(ckpt.with_suffix(".json").read_text())
    assert meta["step"] == 5 and meta["train"]["image_size"] == 48 and meta["final_losses"]["total"] > 0
    # at the limit already: nothing is trained and the record is left as it was
    assert main([*args, "--steps", "5"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert json.loads(ckpt.with_suffix(".json").read_text()) == meta
    # the network's shape cannot change under a resume
    assert main(["train-style", "-o", str(ckpt), "--steps", "9", "--residual-blocks", "2", *THREADS]) == Exit.REFUSED
    assert "--residual-blocks" in capsys.readouterr().err
    # --no-resume starts over
    assert main([*args, "--steps", "2", "--no-resume"]) == 0
    assert json.loads(ckpt.with_suffix(".json").read_text())["step"] == 2


def _bar_losses(stderr: str) -> dict[str, str]:
    """The loss terms of the progress bar's last drawing (tqdm redraws its line after a carriage return)."""
    import re

    last = [line for line in re.split(r"[\r\n]", stderr) if "total=" in line][-1]
    return dict(re.findall(r"(\w+)=([-+.\de]+)", last.split("[", 1)[1]))


def test_train_style_with_a_time_budget_shows_time_and_ends_on_the_losses_it_reports(files, tmp_path, capsys):
    """--minutes draws the bar in training seconds against the budget (steps in its postfix), and the
    closing line reports the losses the bar ended on: one quantity, the mean of the last steps."""
    ckpt = tmp_path / "timed.safetensors"
    args = ["train-style", "--style", str(files["style"]), "--content", str(files["content"]), "-o", str(ckpt),
            *[a for a in TINY if a != "--quiet"], "--sample-every", "1000", "--checkpoint-every", "1000"]
    assert main([*args, "--minutes", "0.05"]) == Exit.OK
    captured = capsys.readouterr()
    bar = [line for line in captured.err.split("\r") if "total=" in line][-1]
    assert "3/3 [" in bar and "s/s" in bar, bar   # 3 s of the 3 s budget, in seconds per second
    shown = _bar_losses(captured.err)
    steps = int(shown.pop("step"))
    meta = json.loads(ckpt.with_suffix(".json").read_text())
    assert meta["step"] == steps >= 2 and meta["seconds"] >= 3
    closing = [line for line in captured.out.splitlines() if line.startswith("final losses")][0]
    assert f"mean of the last {min(steps, 50)} steps" in closing
    reported = dict(zip(closing.split(": ", 1)[1].split()[::2], closing.split(": ", 1)[1].split()[1::2]))
    assert set(reported) == set(shown) == {"style", "content", "tv", "total"}
    for term, value in reported.items():   # the recorded final losses, to the bar's 3 and the line's 4 digits
        assert f"{meta['final_losses'][term]:.3g}" == shown[term] and f"{meta['final_losses'][term]:.4g}" == value

    # a step budget draws steps, and the same losses end the bar and the run
    assert main([*args, "--steps", "4", "--no-resume"]) == Exit.OK
    captured = capsys.readouterr()
    shown = _bar_losses(captured.err)
    assert "4/4 [" in [line for line in captured.err.split("\r") if "total=" in line][-1]
    closing = [line for line in captured.out.splitlines() if line.startswith("final losses")][0]
    assert "mean of the last 4 steps" in closing
    assert {t: f"{v:.3g}" for t, v in json.loads(ckpt.with_suffix(".json").read_text())["final_losses"].items()} == shown


def test_ship_style_defaults_are_the_recipe_the_shipped_styles_were_made_with(files):
    """ship-style STYLE NAME with no option trains what the shipped styles' records (.json) say they were
    trained with, and its options are those of the commands their notes (.md) give."""
    import dataclasses
    import shlex

    from avatars.core.weights import WEIGHTS, available
    from launch.cli import build_parser
    from launch.style_training import ship_config

    parse = build_parser().parse_args
    defaults = parse(["ship-style", str(files["style"]), "new_style", "--device", "cpu"])
    made = json.loads(json.dumps(dataclasses.asdict(ship_config(defaults))))   # tuples as the records' lists
    each_run = ("style", "content_dir", "device")          # the data and the machine, not the recipe
    names = available("style")
    assert len(names) >= 4
    for name in names:
        record = json.loads((WEIGHTS / "style" / f"{name}.json").read_text())["train"]
        assert {k: v for k, v in made.items() if k not in each_run} == \
            {k: v for k, v in record.items() if k not in each_run}, name
        note = (WEIGHTS / "style" / f"{name}.md").read_text()
        command = shlex.split(note.split("- command: `python -m launch ", 1)[1].split("`", 1)[0])
        noted = vars(parse([*command, "--device", "cpu"]))
        assert {k: v for k, v in noted.items() if k not in ("style", "name", "func")} == \
            {k: v for k, v in vars(defaults).items() if k not in ("style", "name", "func")}, name


# -- synthesize-texture -----------------------------------------------------------------------

def test_synthesize_texture_by_optimisation(files, tmp_path, capsys):
    out = tmp_path / "texture.png"
    assert main(["synthesize-texture", "--style", str(files["style"]), "--size", "64", "--iterations", "3",
                 "--style-size", "64", "-o", str(out), *THREADS]) == 0
    assert "3 lbfgs iterations" in capsys.readouterr().err
    img = _rgb(out)
    assert img.shape == (64, 64, 3) and img.std() > 10


def test_synthesize_texture_from_a_trained_texturenet(files, tmp_path):
    ckpt = tmp_path / "tex.safetensors"
    assert main(["train-style", "--style", str(files["style"]), "--model", "texturenet", "-o", str(ckpt), "--size", "32",
                 "--style-size", "64", "--batch", "2", "--scales", "3", "--width", "4", "--steps", "25", *THREADS,
                 "--quiet"]) == 0
    folder = tmp_path / "textures"
    assert main(["synthesize-texture", "--model", str(ckpt), "-n", "2", "--size", "40x24", "-o", str(folder)]) == 0
    a, b = (_rgb(folder / f"texture_{s:03d}.png") for s in (0, 1))
    assert a.shape == b.shape == (24, 40, 3)
    assert np.abs(a - b).mean() > 2  # two seeds, two samples (an untrained batch-norm net ignores its noise)


def test_extract_frames_keeps_the_held_out_clip_out_and_train_style_uses_them(files, tmp_path, capsys):
    """The cheap half of training on what the stylizer will see: frames from clips, a shallower content
    layer and a decaying learning rate (a few steps: a smoke test, not a training run)."""
    videos = tmp_path / "videos"
    videos.mkdir()
    make_clip(videos / "dance.mp4", frames=12, fps=12)           # 1 s: frames at 0, 0.5 s
    make_clip(videos / "hybrik_taiji.mp4", frames=6, fps=12)     # the evaluation clip
    frames = tmp_path / "frames"
    assert main(["extract-frames", str(videos), "-o", str(frames), "--every", "0.5", "--max-side", "48"]) == 0
    assert "held out: hybrik_taiji.mp4" in capsys.readouterr().out
    written = sorted(p.name for p in frames.iterdir())
    assert written == ["dance_00000.jpg", "dance_00006.jpg"]
    assert max(Image.open(frames / written[0]).size) == 48
    ckpt = tmp_path / "video_style.safetensors"
    assert main(["train-style", "--style", str(files["style"]), "--content", str(frames), "-o", str(ckpt),
                 "--size", "32", "--style-size", "48", "--steps", "3", "--batch", "1", "--channels", "4", "8", "8",
                 "--residual-blocks", "1", "--content-layers", "relu2_2", "relu4_2", "--lr-final", "1e-4",
                 "--quiet", *THREADS]) == 0
    train = json.loads(ckpt.with_suffix(".json").read_text())["train"]
    assert train["loss"]["content_layers"] == ["relu2_2", "relu4_2"] and train["lr_final"] == 1e-4
    assert train["content_dir"] == "frames"                        # the record names data, not machine paths
    assert main(["extract-frames", str(tmp_path / "none"), "-o", str(frames)]) != 0
    assert "none" in capsys.readouterr().err


def test_people_frames_put_the_mannequin_and_the_avatar_over_the_backgrounds(tmp_path, capsys):
    """Content like what a stylizer after the avatar node sees: the person where the mask is, a
    background photo everywhere else, for the dataset's own frames and the avatar's renders."""
    import cv2

    from avatars.avatar.crop import CropConfig
    from avatars.avatar.data import make_mannequin_dataset

    data = make_mannequin_dataset(tmp_path / "mannequin", ("walk",), (0.0,), frames_per_clip=3, fps=5.0,
                                  crop=CropConfig(size=64), progress=False)
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    Image.fromarray(np.full((80, 120, 3), (0, 200, 0), np.uint8)).save(scenes / "green.png")
    out = tmp_path / "people"
    assert main(["people-frames", str(data), "--backgrounds", str(scenes), "-o", str(out), "--count", "2",
                 "--avatar", "mannequin_avatar"]) == Exit.OK
    assert "4 frames (2 poses of mannequin, ground truth and mannequin_avatar) over 1 backgrounds" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 4 and sum("mannequin_avatar" in n for n in names) == 2
    with np.load(data / "frames.npz") as d:
        person, mask = d["rgb"][0].astype(float), d["mask"][0] / 255
    image = _rgb(out / "mannequin_00000.jpg").astype(float)
    assert image.shape == (64, 64, 3)
    # JPEG's chroma subsampling smears colour across the edge by a pixel or two: compare away from it
    outside = cv2.erode((mask < 0.01).astype(np.uint8), np.ones((5, 5))) > 0
    inside = cv2.erode((mask > 0.99).astype(np.uint8), np.ones((5, 5))) > 0
    assert np.abs(image[outside] - (0, 200, 0)).mean() < 6       # the scene (JPEG-exact only nearly)
    assert np.abs(image[inside] - person[inside]).mean() < 12    # the person, not the scene
    avatar = _rgb(next(out.glob("mannequin_mannequin_avatar_*.jpg"))).astype(float)
    assert np.abs(avatar[inside] - (0, 200, 0)).mean() > 60      # the avatar's person covers the scene
    assert main(["people-frames", str(scenes), "--backgrounds", str(scenes), "-o", str(out)]) == Exit.REFUSED
    assert "not an avatar dataset" in capsys.readouterr().err


# -- bad input --------------------------------------------------------------------------------

def _bad_cases(f: dict[str, Path], tmp: Path) -> list[tuple[list[str], str]]:
    garbage = tmp / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint")
    return [
        (["stylize", "starry_night", str(tmp / "missing.png"), str(tmp / "o.png")], "missing.png"),
        (["stylize", "no_such_style", str(f["image"]), str(tmp / "o.png")], "no_such_style"),
        (["stylize", "starry_night", str(f["text"]), str(tmp / "o.png")], "notes.txt: not an image or video"),
        (["stylize", "starry_night", str(f["content"]), str(tmp / "o.png")], "content: is a folder"),
        (["stylize", "starry_night", str(tmp / "missing.mp4"), str(tmp / "o.mp4")], "missing.mp4: no such file"),
        (["stylize", str(garbage), str(f["image"]), str(tmp / "o.png")], "garbage.safetensors"),
        (["stylize", "mannequin_avatar", str(f["image"]), str(tmp / "o.png")], "mannequin_avatar is a textured avatar, not a style"),
        (["stylize", "starry_night", str(f["image"]), str(tmp / "o.xyz")], "o.xyz"),
        (["stylize", "starry_night", str(f["clip"]), str(tmp / "o.png")], "o.png"),
        (["train-style", "--style", str(tmp / "nostyle.jpg"), "--content", str(f["content"]), "-o", str(tmp / "c")],
         "nostyle.jpg"),
        (["train-style", "--style", str(f["text"]), "--content", str(f["content"]), "-o", str(tmp / "c")], "notes.txt"),
        (["train-style", "--style", str(f["style"]), "--content", str(tmp / "nophotos"), "-o", str(tmp / "c")],
         "nophotos"),
        (["train-style", "--style", str(f["style"]), "-o", str(tmp / "c")], "--content"),
        (["synthesize-texture", "--model", "starry_night", "-o", str(tmp / "t.png")], "TextureNet"),
        (["synthesize-texture", "--style", str(f["text"]), "-o", str(tmp / "t.png")], "notes.txt"),
    ]


def test_bad_input_exits_non_zero_naming_the_problem(files, tmp_path, capsys):
    for argv, named in _bad_cases(files, tmp_path):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == Exit.REFUSED, argv
        assert err.startswith("error: ") and named in err, (argv, err)
    assert not list(tmp_path.glob("o.*")) and not (tmp_path / "c.safetensors").exists()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("how", ["same path", "symbolic link", "hard link"])
@pytest.mark.parametrize("kind", ["image", "clip"])
def test_stylize_refuses_an_output_that_is_the_input(files, tmp_path, capsys, how, kind):
    src = tmp_path / files[kind].name
    shutil.copy(files[kind], src)
    before = digest(src)
    out = {"same path": src, "symbolic link": tmp_path / f"link{src.suffix}", "hard link": tmp_path / f"hard{src.suffix}"}[how]
    if how == "symbolic link":
        out.symlink_to(src)
    elif how == "hard link":
        os.link(src, out)
    assert main(["stylize", "starry_night", str(src), str(out), "--quiet", *THREADS]) == Exit.REFUSED
    assert f"is the input {src}" in capsys.readouterr().err
    assert digest(src) == before and not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize("kind", ["image", "clip"])
def test_stylize_refuses_an_output_it_cannot_write_before_any_work(files, tmp_path, capsys, kind):
    suffix = files[kind].suffix
    folder = tmp_path / f"out{suffix}"
    folder.mkdir()
    (tmp_path / "plain").write_text("a file, not a folder")
    earlier = tmp_path / f"earlier{suffix}"
    earlier.write_bytes(b"the user's earlier result")
    for out, message in ((folder, f"out{suffix}: is a folder"), (tmp_path / "plain" / f"o{suffix}", "plain is a file"),
                         (earlier, f"earlier{suffix}: exists; add --overwrite to replace it")):
        assert main(["stylize", "starry_night", str(files[kind]), str(out), "--quiet", *THREADS]) == Exit.REFUSED
        assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([folder.name, "plain", earlier.name])
    assert not list(folder.iterdir()) and earlier.read_bytes() == b"the user's earlier result"
    assert main(["stylize", "starry_night", str(files[kind]), str(earlier), "--quiet", "--overwrite", *THREADS]) == Exit.OK
    assert earlier.stat().st_size > 100 and not list(tmp_path.glob("*.part"))


def test_stylize_keeps_the_alpha_of_an_image_and_reads_16_bits(files, tmp_path, capsys):
    rgba = np.dstack([_pattern(40, 48, 3), np.zeros((40, 48), np.uint8)])
    rgba[:, :24, 3] = 255                      # left half opaque, right half transparent (its colours garbage)
    Image.fromarray(rgba).save(tmp_path / "cutout.png")
    assert main(["stylize", "starry_night", str(tmp_path / "cutout.png"), str(tmp_path / "styled.png"), *THREADS]) == 0
    assert "alpha kept" in capsys.readouterr().out
    styled = np.asarray(Image.open(tmp_path / "styled.png"))
    assert styled.shape == (40, 48, 4)
    np.testing.assert_array_equal(styled[..., 3], rgba[..., 3])
    assert main(["stylize", "starry_night", str(tmp_path / "cutout.png"), str(tmp_path / "flat.jpg"), *THREADS]) == 0
    assert "flattened onto white" in capsys.readouterr().out
    assert (_rgb(tmp_path / "flat.jpg")[:, 30:] > 245).all()  # the transparent half: white, not painted

    grey8 = np.tile(np.linspace(0, 255, 48).round().astype(np.uint8), (40, 1))
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "grey16.png")
    Image.fromarray(grey8).save(tmp_path / "grey8.png")
    for name in ("grey16", "grey8"):
        assert main(["stylize", "starry_night", str(tmp_path / f"{name}.png"), str(tmp_path / f"s_{name}.png"),
                     "--fp32", *THREADS]) == 0
    np.testing.assert_array_equal(_rgb(tmp_path / "s_grey16.png"), _rgb(tmp_path / "s_grey8.png"))


def test_stylize_bounds_the_image_size_and_refuses_tiny_images(files, tmp_path, capsys):
    Image.fromarray(_pattern(50, 3000, 1)).save(tmp_path / "wide.png")
    assert main(["stylize", "starry_night", str(tmp_path / "wide.png"), str(tmp_path / "o.png"), *THREADS]) == 0
    assert "2048x34 (scaled from 3000x50 by --max-side 2048)" in capsys.readouterr().out
    assert _rgb(tmp_path / "o.png").shape == (34, 2048, 3)
    assert main(["stylize", "starry_night", str(tmp_path / "wide.png"), str(tmp_path / "o600.png"),
                 "--max-side", "600", *THREADS]) == Exit.REFUSED
    assert "wide.png: 600x10 pixels (scaled from 3000x50 to a maximum side of 600) is too small" in capsys.readouterr().err
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    assert main(["stylize", "starry_night", str(tmp_path / "dot.png"), str(tmp_path / "o2.png")]) == Exit.REFUSED
    assert "dot.png: 1x1 pixels is too small; images need at least 16 pixels a side" in capsys.readouterr().err
    assert not (tmp_path / "o2.png").exists()


# -- the live graph ---------------------------------------------------------------------------

def test_live_graph_validates_and_its_file_swap_recipe_holds(capsys):
    path = graph_file("stylize_live")
    assert main(["validate", str(path)]) == 0
    assert "small.out -> style.in  [latest" in capsys.readouterr().out
    graph = load_graph(path)
    assert [graph.nodes[n].kind for n in graph.order()] == ["camera", "resize", "stylize", "resize", "preview"]
    assert (graph.nodes["small"].params.width, graph.nodes["small"].params.height) == (256, 256)
    assert graph.nodes["style"].params.model == "starry_night"
    # the comment's recipe for a file instead of the camera: the camera node takes it as typed
    assert "--set camera.device=1" in path.read_text() and "=clip.mp4 (a file" in path.read_text()
    swapped = load_graph(path, parse_overrides(["camera.device=take #2.mp4", "camera.loop=true"], path))
    assert swapped.nodes["camera"].params.device == "take #2.mp4" and swapped.nodes["camera"].params.loop
