"""`python -m launch bench media`: the hostile-file set of issue 18, run as a user runs it.

Each case makes its input in a scratch folder (phone, broadcast and damaged videos, odd sizes,
several audio tracks, 16-bit, transparent, huge and tiny pictures, outputs that are inputs, folders
that cannot be written, a full disk), runs the real command line (`python -m launch run rerender`,
`stylize`) in a child process and checks, beside the exit code the README's table promises, what
matters to the user: the input untouched (sha256 before and after), no output under its final name
unless it is complete, and what the output shows (size, rotation, sample aspect, colour tags, audio
tracks, alpha, grey level). One row per case; the last line counts the cases as documented.
docs/media.md holds the figures.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from stream.media import write_video

BT709 = {"colorspace": 1, "color_primaries": 1, "color_trc": 1, "color_range": 1}
FAST = ("--set", "sink.preset=ultrafast")


def picture(i: int, height: int, width: int) -> np.ndarray:
    """A moving gradient with a red block at the top left (so a turn or a flip shows)."""
    y, x = np.mgrid[:height, :width]
    image = np.stack([(x + 3 * i) % 256, (y + 2 * i) % 256, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    image[4:20, 4:30] = (255, 0, 0)
    return image


def clip(path: Path, frames: int = 60, height: int = 120, width: int = 160, **what) -> Path:
    return write_video(path, (picture(i, height, width) for i in range(frames)), fps=30,
                       encoder={"preset": "ultrafast", "crf": "18"}, audio_tracks=what.pop("tracks", 1), **what)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Outcome:
    code: int
    err: str
    seconds: float


@dataclass(frozen=True)
class Case:
    """A hostile input: `make` writes it under the folder and gives the command line; `check` says what
    the user would find wrong afterwards ("" where nothing), `note` what is worth knowing anyway."""

    name: str
    expect: int
    make: Callable[[Path], list[str]]
    check: Callable[[Path, Outcome], str]
    note: Callable[[Path, Outcome], str] | None = None


def command(argv: list[str], folder: Path) -> Outcome:
    env = {**os.environ, "TMPDIR": str(folder)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "launch", *argv], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=600)
    return Outcome(proc.returncode, proc.stderr, time.perf_counter() - start)


def rerender(src: Path, out: Path, *sets: str) -> list[str]:
    return ["run", "rerender", "--quiet", "--set", f"source.path={src}", "--set", f"sink.path={out}", *FAST,
            *[a for s in sets for a in ("--set", s)]]


def untouched(path: Path, before: str) -> str:
    return "" if path.exists() and digest(path) == before else f"{path.name} ALTERED"


def absent(out: Path) -> str:
    left = [p.name for p in (out, out.with_name(out.name + ".part")) if p.exists() or p.is_symlink()]
    return f"left {', '.join(left)}" if left else ""


def video_facts(path: Path) -> dict:
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frame = next(c.decode(video=0))
        cc = v.codec_context
        return {"size": (frame.width, frame.height), "rotation": frame.rotation or 0,
                "sar": v.sample_aspect_ratio, "colour": (cc.colorspace, cc.color_primaries, cc.color_trc),
                "audio": len(c.streams.audio), "frames": v.frames,
                "corner": frame.to_ndarray(format="rgb24")[8, 8].tolist()}


def _same_path(folder: Path) -> list[str]:
    src = clip(folder / "take.mp4")
    (folder / "sha").write_text(digest(src))
    return rerender(src, src)


def _link_path(folder: Path) -> list[str]:
    src = clip(folder / "take.mp4")
    (folder / "sha").write_text(digest(src))
    (folder / "link.mp4").symlink_to(src)
    return rerender(src, folder / "link.mp4")


def _stylize_same(folder: Path) -> list[str]:
    src = clip(folder / "take.mp4")
    (folder / "sha").write_text(digest(src))
    return ["stylize", "starry_night", str(src), str(src), "--quiet"]


def _input_kept(folder: Path, outcome: Outcome) -> str:
    return untouched(folder / "take.mp4", (folder / "sha").read_text())


def _damaged(folder: Path, *sets: str) -> list[str]:
    data = bytearray(clip(folder / "clean.mp4", frames=150, height=240, width=320).read_bytes())
    middle = len(data) // 2
    data[middle: middle + 60_000] = np.random.default_rng(0).integers(0, 256, 60_000, np.uint8).tobytes()
    (folder / "damaged.mp4").write_bytes(bytes(data))
    return rerender(folder / "damaged.mp4", folder / "out.mp4", *sets)


def _damaged_failed(folder: Path, outcome: Outcome) -> str:
    named = "damaged.mp4" in outcome.err and " s" in outcome.err
    return absent(folder / "out.mp4") or ("" if named else "the loss is not named")


def _damaged_skipped(folder: Path, outcome: Outcome) -> str:
    return "" if "skipped lost data in" in outcome.err else "the loss is not named in the last lines"


def _frames_kept(folder: Path, outcome: Outcome) -> str:
    return f"{video_facts(folder / 'out.mp4')['frames']} of 150 frames written, the loss named in the last lines"


def _truncated(folder: Path) -> list[str]:
    data = clip(folder / "clean.mp4", frames=150, options={"movflags": "faststart"}).read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) * 2 // 5])
    return rerender(folder / "cut.mp4", folder / "out.mp4", "source.on_error=skip")


def _rotated(folder: Path) -> list[str]:
    return rerender(clip(folder / "phone.mp4", rotation=90), folder / "out.mp4")


def _shown(expect: Callable[[dict], str]) -> Callable[[Path, Outcome], str]:
    return lambda folder, outcome: expect(video_facts(folder / "out.mp4"))


def _upright(f: dict) -> str:
    # the input is 160x120 turned 90 deg counter-clockwise: players show 120x160, the red block bottom left
    return "" if f["size"] == (120, 160) and f["rotation"] == 0 else f"shown as {f['size']} rotation {f['rotation']}"


def _aspect(f: dict) -> str:
    return "" if f["sar"] == Fraction(64, 45) else f"sample aspect {f['sar']}"


def _colour(f: dict) -> str:
    return "" if f["colour"] == (1, 1, 1) else f"colour tags {f['colour']} (1, 1, 1 = BT.709)"


def _tracks(f: dict) -> str:
    return "" if f["audio"] == 2 else f"{f['audio']} audio tracks of 2"


def _odd(folder: Path, outcome: Outcome) -> str:
    f = video_facts(folder / "out.mp4")
    if f["size"] != (322, 242):
        return f"size {f['size']}"
    return "" if "is odd" in outcome.err else "padded without a word"


def _still_png(folder: Path) -> list[str]:
    from PIL import Image

    Image.fromarray(picture(0, 120, 160)).save(folder / "photo.png")
    return rerender(folder / "photo.png", folder / "out.mp4")


def _text(folder: Path) -> list[str]:
    (folder / "notes.mp4").write_text("not a video\n" * 100)
    return rerender(folder / "notes.mp4", folder / "out.mp4")


def _folder(folder: Path) -> list[str]:
    (folder / "clips.mp4").mkdir()
    return rerender(folder / "clips.mp4", folder / "out.mp4")


def _full_disk(folder: Path) -> list[str]:
    (folder / "out.mp4.part").symlink_to("/dev/full")  # every write fails with ENOSPC
    return rerender(clip(folder / "take.mp4", frames=90), folder / "out.mp4")


def _hash_name(folder: Path) -> list[str]:
    return rerender(clip(folder / "take #2.mp4"), folder / "out: final.mp4")


def _image(make: Callable[[Path], None], name: str = "in.png", out: str = "out.png") -> Callable[[Path], list[str]]:
    def argv(folder: Path) -> list[str]:
        make(folder / name)
        return ["stylize", "starry_night", str(folder / name), str(folder / out), "--threads", "1"]
    return argv


def _grey16(path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.full((96, 128), 20000, np.uint16)).save(path)  # 20000 / 65535 = 31% grey


def _alpha(path: Path) -> None:
    from PIL import Image

    rgba = np.dstack([picture(0, 96, 128), np.zeros((96, 128), np.uint8)])
    rgba[:, 64:, 3] = 255  # left half transparent
    Image.fromarray(rgba, "RGBA").save(path)


def _huge(path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (10_000, 10_000), (90, 140, 200)).save(path)


def _tiny(path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (1, 1), "red").save(path)


def _image_facts(folder: Path, outcome: Outcome) -> dict:
    from PIL import Image

    with Image.open(folder / "out.png") as img:
        return {"size": img.size, "mode": img.mode, "array": np.array(img)}


def _grey_kept(folder: Path, outcome: Outcome) -> str:
    f = _image_facts(folder, outcome)
    mean = float(f["array"][..., :3].mean())
    return "" if mean < 160 else f"read as {mean:.0f} of 255 (the input is 31% grey)"


def _alpha_kept(folder: Path, outcome: Outcome) -> str:
    f = _image_facts(folder, outcome)
    if f["mode"] != "RGBA":
        return f"alpha dropped ({f['mode']})"
    alpha = f["array"][..., 3]
    return "" if alpha[:, :64].max() == 0 and alpha[:, 64:].min() == 255 else "alpha changed"


def _bounded(folder: Path, outcome: Outcome) -> str:
    size = _image_facts(folder, outcome)["size"]
    return "" if size == (2048, 2048) else f"size {size}"


def _nothing_written(name: str) -> Callable[[Path, Outcome], str]:
    return lambda folder, outcome: absent(folder / name)


def _written(name: str) -> Callable[[Path, Outcome], str]:
    return lambda folder, outcome: "" if (folder / name).is_file() else f"no {name}"


CASES = [
    Case("output = input (rerender)", 2, _same_path, _input_kept),
    Case("output = input through a symbolic link", 2, _link_path, _input_kept),
    Case("output = input (stylize)", 2, _stylize_same, _input_kept),
    Case("60 KB of garbage mid-file", 1, _damaged, _damaged_failed),
    Case("60 KB of garbage, on_error: skip", 0, lambda f: _damaged(f, "source.on_error=skip"), _damaged_skipped,
         _frames_kept),
    Case("file cut at 40%, on_error: skip", 1, _truncated, _nothing_written("out.mp4")),
    Case("phone video, display matrix 90 deg", 0, _rotated, _shown(_upright)),
    Case("720x576-style sample aspect 64:45", 0,
         lambda f: rerender(clip(f / "pal.mp4", sar=Fraction(64, 45)), f / "out.mp4"), _shown(_aspect)),
    Case("BT.709 HD colour description", 0,
         lambda f: rerender(clip(f / "hd.mp4", colour=BT709), f / "out.mp4"), _shown(_colour)),
    Case("two audio tracks", 0, lambda f: rerender(clip(f / "two.mp4", tracks=2), f / "out.mp4"), _shown(_tracks)),
    Case("odd size 321x241", 0, lambda f: rerender(clip(f / "odd.mkv", height=241, width=321, codec="libx264rgb", pix_fmt="rgb24"),
                                                     f / "out.mp4"), _odd),
    Case("a still image as the video", 2, _still_png, _nothing_written("out.mp4")),
    Case("a text file as the video", 2, _text, _nothing_written("out.mp4")),
    Case("a folder as the video", 2, _folder, _nothing_written("out.mp4")),
    Case("missing input", 2, lambda f: rerender(f / "gone.mp4", f / "out.mp4"), _nothing_written("out.mp4")),
    Case("output in /proc", 2, lambda f: rerender(clip(f / "take.mp4"), Path("/proc/x.mp4")),
         lambda f, o: "" if "/proc" in o.err else "the path is not named"),
    Case("full disk (ENOSPC)", 1, _full_disk, _nothing_written("out.mp4")),
    Case("unknown model name in a graph", 2,
         lambda f: ["run", "demo", "--quiet", "--set", "style.model=van_gogh", "--set", f"sink.path={f / 'o.mp4'}"],
         lambda f, o: absent(f / "o.mp4") or ("" if "van_gogh" in o.err else "the name is not named")),
    Case("'#' and ': ' in the paths", 0, _hash_name, _written("out: final.mp4")),
    Case("16-bit grey PNG", 0, _image(_grey16), _grey_kept),
    Case("PNG with a transparent half", 0, _image(_alpha), _alpha_kept),
    Case("10000x10000 PNG", 0, _image(_huge), _bounded),
    Case("1x1 image", 2, _image(_tiny), _nothing_written("out.png")),
]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench media", description=__doc__.splitlines()[0])
    ap.add_argument("--only", metavar="TEXT", help="the cases whose name contains TEXT")
    args = ap.parse_args(argv)
    cases = [c for c in CASES if not args.only or args.only in c.name]
    as_documented = 0
    print(f"{'case':42} {'expected':>8} {'exit':>4} {'s':>6}  what the user finds")
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(cases):
            folder = Path(tmp) / f"case{i}"
            folder.mkdir()
            outcome = command(case.make(folder), folder)
            problem = case.check(folder, outcome) if outcome.code == case.expect else \
                f"exit {outcome.code}: {outcome.err.strip()[-200:] or '(nothing on stderr)'}"
            note = case.note(folder, outcome) if case.note and not problem else ""
            as_documented += not problem
            print(f"{case.name:42} {case.expect:>8} {outcome.code:>4} {outcome.seconds:6.1f}  "
                  f"{'NOT AS DOCUMENTED: ' + problem if problem else 'ok'}{': ' + note if note else ''}", flush=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"media: {as_documented}/{len(cases)} cases as documented (largest child process {peak:.0f} MB)")
    return 0 if as_documented == len(cases) else 1
