"""A user's own files (issue 18): damaged data is never passed off as complete, and what a player
shows of the input (rotation, sample aspect, colour, every audio track, odd sizes) survives a
re-render, or the run says what changed. Inputs are made here with PyAV; the graph runs through
the real CLI (processes, shared memory, x264, AAC) and the outputs are checked by decoding them."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import av
import numpy as np
import pytest

from launch.cli import main
from stream.media import probe, write_video

REPO = Path(__file__).resolve().parents[1]
RERENDER = str(REPO / "graphs" / "rerender.yaml")
RATE = 48_000
BT709 = {"colorspace": 1, "color_primaries": 1, "color_trc": 1, "color_range": 1}  # FFmpeg's codes; range 1: limited


def rerender(src: Path, out: Path, *sets: str) -> tuple[int, dict]:
    report = out.with_name(out.name + ".json")
    code = main(["run", RERENDER, "--quiet", "--report", str(report), "--set", f"source.path={src}",
                 "--set", f"sink.path={out}", "--set", "sink.preset=ultrafast", *[a for s in sets for a in ("--set", s)]])
    return code, json.loads(report.read_text())


def moving_picture(i: int, height: int, width: int) -> np.ndarray:
    """A smooth picture that moves (compresses like a real scene: a few KB a frame at 320x240)."""
    y, x = np.mgrid[:height, :width]
    image = np.stack([(x + 3 * i) % 256, (y + 2 * i) % 256, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    image[10:30, 10:40] = (255, 0, 0)  # a red block near the top left corner
    return image


def make_clip(path: Path, frames: int = 150, fps: int = 30, height: int = 240, width: int = 320, tracks: int = 1,
              picture: Callable[[int, int, int], np.ndarray] = moving_picture, **what: Any) -> Path:
    """An H.264 clip of `picture` with `tracks` AAC stereo tracks (track k a sine of 440 * (k + 1) Hz), and
    what `write_video` adds on request (rotation, sample aspect, colour description)."""
    return write_video(path, (picture(i, height, width) for i in range(frames)), fps=fps,
                       encoder={"preset": "ultrafast", "crf": "18"}, audio_tracks=tracks, **what)


def first_frame(path: Path, **to_rgb: Any) -> tuple[np.ndarray, Any]:
    """The first decoded frame of `path` as RGB (swscale options `to_rgb`), and the frame itself."""
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        return frame.to_ndarray(format="rgb24", **to_rgb), frame


# -- damaged files ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 150-frame MP4 with audio whose middle 60 KB were overwritten with garbage (its index intact)."""
    folder = tmp_path_factory.mktemp("damaged")
    data = bytearray(make_clip(folder / "clean.mp4").read_bytes())
    middle = len(data) // 2
    data[middle: middle + 60_000] = np.random.default_rng(0).integers(0, 256, 60_000, np.uint8).tobytes()
    src = folder / "damaged.mp4"
    src.write_bytes(bytes(data))
    return src


def test_damaged_file_fails_by_default_naming_the_seconds_lost(damaged: Path, tmp_path: Path) -> None:
    # it used to exit 0, "completed", with 116 of 150 frames and 1.1 s of audio missing
    out = tmp_path / "out.mp4"
    code, report = rerender(damaged, out)
    assert code == 1 and report["outcome"] == "failed"
    error = report["nodes"]["source"]["error"]
    assert str(damaged) in error and "undecodable data" in error and "lost from" in error
    begin, end = (float(x) for x in error.split("lost from ")[1].split(" s (")[0].split(" s to "))
    assert 1.5 < begin < end < 4.0  # the middle of the 5 s clip
    assert not out.exists()


def test_damaged_file_with_skip_completes_and_names_the_loss(damaged: Path, tmp_path: Path,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.mp4"
    code, report = rerender(damaged, out, "source.on_error=skip")
    assert code == 0 and report["outcome"] == "completed"
    lost = report["nodes"]["source"]["extra"]["lost"]
    written = probe(str(out))
    assert lost["frames"] > 20 and written["frames"] == 150 - lost["frames"]
    assert lost["video_s"] > 0.5 and lost["audio_s"] > 0.5
    warning = f"{lost['frames']} frames ({lost['video_s']:.2f} s) of video and {lost['audio_s']:.2f} s of audio"
    assert report["warnings"] and warning in report["warnings"][0] and str(damaged) in report["warnings"][0]
    assert warning in capfd.readouterr().err  # printed after the report's table, not only in --report


def test_clean_file_reports_nothing_lost(tmp_path: Path) -> None:
    code, report = rerender(make_clip(tmp_path / "clean.mp4", frames=30), tmp_path / "out.mp4")
    assert code == 0 and report["warnings"] == []
    assert report["nodes"]["source"]["extra"]["lost"]["frames"] == 0


# -- what a player shows ------------------------------------------------------------------------

def test_rotation_is_applied_so_every_node_sees_the_upright_picture(tmp_path: Path) -> None:
    # a phone video: 320x240 stored, shown as 240x320 through a 90 degree display matrix
    src = make_clip(tmp_path / "phone.mp4", frames=10, rotation=90)
    shown = np.rot90(first_frame(src)[0])  # what a player shows: the matrix turns it counter-clockwise
    graph = tmp_path / "chain.yaml"  # a node in the middle (like the stylizer) gets the frames the sink writes
    graph.write_text(Path(RERENDER).read_text().replace(
        "edges:\n  - source.out -> sink.in", "  - {name: fx, kind: invert}\nedges:\n  - source.out -> fx.in\n  - fx.out -> sink.in"))
    out = tmp_path / "out.mp4"
    assert main(["run", str(graph), "--quiet", "--set", f"source.path={src}", "--set", f"sink.path={out}"]) == 0
    image, frame = first_frame(out)
    assert image.shape == shown.shape == (320, 240, 3) and frame.rotation == 0  # upright, no display matrix left
    assert np.abs(255 - image.astype(int) - shown).mean() < 6  # the inverted upright picture
    assert (255 - image[282:308, 12:28]).mean(axis=(0, 1))[0] > 200  # the red block, turned to the bottom left


def test_sample_aspect_is_kept(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "pal.mp4", frames=5, height=576, width=720, sar=Fraction(64, 45))
    out = tmp_path / "out.mp4"
    assert rerender(src, out)[0] == 0
    with av.open(str(out)) as c:
        assert c.streams.video[0].sample_aspect_ratio == Fraction(64, 45)


def test_bt709_colour_is_kept(tmp_path: Path) -> None:
    green = lambda i, h, w: np.broadcast_to(np.array([0, 255, 0], np.uint8), (h, w, 3)).copy()  # noqa: E731
    src = make_clip(tmp_path / "hd.mp4", frames=5, height=720, width=1280, picture=green, colour=BT709)
    out = tmp_path / "out.mp4"
    assert rerender(src, out)[0] == 0
    before, _ = first_frame(src, src_colorspace="ITU709")
    after, frame = first_frame(out, src_colorspace="ITU709")  # as a player decodes a BT.709 file
    assert {k: int(getattr(frame, k)) for k in BT709} == BT709
    assert before[360, 640, 1] >= 250 and abs(int(after[360, 640, 1]) - int(before[360, 640, 1])) <= 3  # 254 -> 252; was 214


def test_every_audio_track_is_kept(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "two.mp4", frames=60, tracks=2)
    out = tmp_path / "out.mp4"
    code, report = rerender(src, out)
    assert code == 0 and report["nodes"]["sink"]["extra"]["audio_ignored"] == 0
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 2
        for k, stream in enumerate(c.streams.audio):
            samples = np.concatenate([f.to_ndarray()[0] for f in c.decode(stream)])
            assert abs(len(samples) / RATE - 2.0) < 0.05
            c.seek(0)
            pitch = np.argmax(np.abs(np.fft.rfft(samples))) * RATE / len(samples)
            assert abs(pitch - 440 * (k + 1)) < 5  # each track its own, in its order


def test_odd_size_is_padded_with_a_warning(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "odd.mkv"  # FFmpeg's x264 wrapper refuses odd sizes in yuv420p: the input is 4:4:4
    with av.open(str(src), "w") as c:
        stream = c.add_stream("libx264rgb", rate=10)
        stream.height, stream.width, stream.pix_fmt = 241, 321, "rgb24"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(moving_picture(i, 241, 321), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    out = tmp_path / "out.mp4"
    assert rerender(src, out)[0] == 0
    image, _ = first_frame(out)
    assert image.shape == (242, 322, 3)  # every input pixel kept, one column and row added
    assert np.abs(image[:241, :321].astype(int) - moving_picture(0, 241, 321)).mean() < 6
    err = capfd.readouterr().err
    assert "321x241 is odd" in err and "written as 322x242" in err


# -- refusals and write errors ------------------------------------------------------------------

def test_still_image_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # it used to be re-rendered as a one-frame video; now refused before any node starts
    src = tmp_path / "photo.png"
    frame = av.VideoFrame.from_ndarray(moving_picture(0, 48, 64), format="rgb24")
    frame.save(str(src))
    assert main(["run", "rerender", "--quiet", "--set", f"source.path={src}", "--set",
                 f"sink.path={tmp_path / 'out.mp4'}"]) == 2
    assert f"{src} is a still image, not a video (a folder of images is the `images` source)" in capsys.readouterr().err


def test_full_disk_names_the_path_and_removes_the_partial(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.mp4"
    partial = out.with_name("out.mp4.part")
    partial.symlink_to("/dev/full")  # every write fails with ENOSPC, as on a full disk
    code, report = rerender(make_clip(tmp_path / "in.mp4", frames=60), out)
    assert code == 1
    error = report["nodes"]["sink"]["error"]
    assert error.startswith(f"cannot write {out}: ") and "No space left on device" in error
    assert not partial.exists() and not partial.is_symlink() and not out.exists()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "AttributeError" not in err


class _Context:
    """Just enough of the runtime for a sink's setup and close."""

    name = "sink"

    def __init__(self) -> None:
        from stream.metrics import NodeMetrics

        self.metrics = NodeMetrics()

    def connected(self, port: str) -> bool:
        return False

    def stopping(self) -> bool:
        return False


def test_output_that_is_a_folder_fails_at_setup_and_closes_cleanly(tmp_path: Path) -> None:
    # the command line refuses it before any node starts (preflight); the node itself, started another
    # way, fails at setup (it used to fail after the whole encode) and its close() does not raise
    from stream.node import NodeError
    from stream.nodes.mp4 import Mp4Sink

    folder = tmp_path / "out.mp4"
    folder.mkdir()
    sink = Mp4Sink(Mp4Sink.Params(path=str(folder)), _Context())
    with pytest.raises(NodeError, match=f"cannot write {folder}: it is a folder"):
        sink.setup()
    sink.close()  # was AttributeError: 'Mp4Sink' object has no attribute 'done'


def test_unwritable_output_path_fails_at_setup_naming_it(tmp_path: Path) -> None:
    # /proc accepts no new file, even for root (which passes every access() check): FFmpeg only
    # finds out at the first packet, with a traceback that did not name the path
    from stream.node import NodeError
    from stream.nodes.mp4 import Mp4Sink

    sink = Mp4Sink(Mp4Sink.Params(path="/proc/x.mp4"), _Context())
    with pytest.raises(NodeError, match="cannot write /proc/x.mp4: "):
        sink.setup()
    sink.close()
