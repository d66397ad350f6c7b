"""Bad input: every case gets a clear message, a non-zero exit where fatal, and never a
half-written output under the final name. Runs the real CLI on real (damaged) files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stream.media import write_video
from launch.cli import main
from stream.media import probe

REPO = Path(__file__).resolve().parents[1]
RERENDER = str(REPO / "graphs" / "rerender.yaml")


def run(graph: str | Path, tmp_path: Path, *sets: str) -> tuple[int, dict]:
    report = tmp_path / "report.json"
    code = main(["run", str(graph), "--quiet", "--report", str(report), *[a for s in sets for a in ("--set", s)]])
    return code, json.loads(report.read_text())


def rerender(src: Path, out: Path, tmp_path: Path, *sets: str) -> tuple[int, dict]:
    return run(RERENDER, tmp_path, f"source.path={src}", f"sink.path={out}", "sink.preset=ultrafast", *sets)


def error_of(report: dict, node: str) -> str:
    return report["nodes"][node]["error"]


def tiny_clip(path: Path, frames: int = 10) -> Path:
    """A short H.264 clip made on the fly."""
    return write_video(path, (np.full((48, 64, 3), i * 20, np.uint8) for i in range(frames)), fps=10)


def refused(tmp_path: Path, capsys: pytest.CaptureFixture, graph: str | Path, *sets: str) -> str:
    """The error of a run refused before any node started (exit 2, no report: nothing ran)."""
    report = tmp_path / "report.json"
    code = main(["run", str(graph), "--quiet", "--report", str(report), *[a for s in sets for a in ("--set", s)]])
    assert code == 2 and not report.exists()
    return capsys.readouterr().err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out.mp4"
    err = refused(tmp_path, capsys, RERENDER, f"source.path={tmp_path / 'nope.mp4'}", f"sink.path={out}")
    assert f"node 'source' (video) path: {tmp_path / 'nope.mp4'}: no such file" in err
    assert not out.exists()


def test_truncated_file_with_index_at_the_end_cannot_open(media: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "cut.mp4"
    src.write_bytes((media / "video" / "gvhmr_tennis.mp4").read_bytes()[:500_000])  # moov atom lost
    out = tmp_path / "out.mp4"
    err = refused(tmp_path, capsys, RERENDER, f"source.path={src}", f"sink.path={out}")
    assert f"cannot open {src}" in err and "truncated" in err
    assert not out.exists()


@pytest.fixture
def truncated(media: Path, tmp_path: Path) -> Path:
    """The first 40% of a clip whose index is at the start: it opens, then runs out of data."""
    data = (media / "video" / "hybrik_taiji.mp4").read_bytes()
    src = tmp_path / "truncated.mp4"
    src.write_bytes(data[: len(data) * 2 // 5])
    return src


def test_truncated_file_fails_under_skip_too(truncated: Path, tmp_path: Path) -> None:
    # skip is for undecodable packets inside a stream; an offline input that ends early is an error
    # (it used to pass: 155 of 412 frames committed, exit 0)
    out = tmp_path / "out.mp4"
    code, report = rerender(truncated, out, tmp_path, "source.on_error=skip")
    assert code == 1 and report["outcome"] == "failed"
    error = error_of(report, "source")
    assert str(truncated) in error and "ended early" in error and "of 412 frames" in error
    assert not out.exists() and not out.with_name("out.mp4.part").exists()  # a failed job leaves nothing


def test_truncated_webm_is_detected_by_its_duration(tmp_path: Path) -> None:
    # WebM declares no frame count, only a duration: the last decoded timestamp is compared with it
    noise = np.random.default_rng(0)
    full = write_video(tmp_path / "clip.webm", (noise.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(60)),
                       codec="libvpx-vp9")
    cut = tmp_path / "cut.webm"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 5])
    assert rerender(full, tmp_path / "full.mp4", tmp_path)[0] == 0
    out = tmp_path / "out.mp4"
    for on_error in ("skip", "fail"):
        code, report = rerender(cut, out, tmp_path, f"source.on_error={on_error}")
        assert code == 1, on_error
        assert "cut.webm: truncated: the input ended early" in error_of(report, "source") and " of 2.00 s" in error_of(report, "source")
        assert not out.exists()


def test_truncated_file_fail_exits_nonzero_and_leaves_no_complete_looking_output(truncated: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    code, report = rerender(truncated, out, tmp_path, "source.on_error=fail")
    assert code != 0
    assert "truncated" in error_of(report, "source")
    assert not out.exists()


@pytest.fixture
def corrupt(media: Path, tmp_path: Path) -> Path:
    """A real clip with 20 stretches of its frame data overwritten by noise."""
    data = bytearray((media / "video" / "kinetics_ta_chi_340x256.mp4").read_bytes())
    noise = np.random.default_rng(0).integers(0, 256, 400, dtype=np.uint8).tobytes()
    for k in range(20):
        data[5000 + k * 6000: 5400 + k * 6000] = noise
    src = tmp_path / "corrupt.mp4"
    src.write_bytes(bytes(data))
    return src


def test_corrupt_frames_skip_counts_them_and_says_so(corrupt: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    code, report = rerender(corrupt, out, tmp_path, "source.on_error=skip")
    assert code == 0
    extra = report["nodes"]["source"]["extra"]
    assert extra["decode_errors"] > 0
    assert 0 < probe(str(out))["frames"] == 300 - extra["lost"]["frames"] < 300
    assert str(corrupt) in report["warnings"][0] and f"{extra['lost']['frames']} frames" in report["warnings"][0]


def test_corrupt_frames_fail_by_default(corrupt: Path, tmp_path: Path) -> None:
    # a lossless job on a damaged file used to complete with exit 0 (on_error was skip by default)
    out = tmp_path / "out.mp4"
    code, report = rerender(corrupt, out, tmp_path)
    assert code == 1
    assert str(corrupt) in error_of(report, "source") and "undecodable" in error_of(report, "source")
    assert not out.exists()


def test_unsupported_codec(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tiny_clip(tmp_path / "tiny.mkv").read_bytes()
    src = tmp_path / "unknown_codec.mkv"
    src.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_XXXXX/ISO/XYZ"))  # a codec id FFmpeg does not know
    err = refused(tmp_path, capsys, RERENDER, f"source.path={src}", f"sink.path={tmp_path / 'out.mp4'}")
    assert f"{src}: unsupported video codec" in err


def test_not_a_video(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "notes.mp4"
    src.write_text("not a video\n" * 100)
    err = refused(tmp_path, capsys, RERENDER, f"source.path={src}", f"sink.path={tmp_path / 'out.mp4'}")
    assert f"cannot open {src}" in err


def test_unwritable_output_path(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    err = refused(tmp_path, capsys, RERENDER, f"source.path={tiny_clip(tmp_path / 'tiny.mp4')}",
                  f"sink.path={blocker / 'out.mp4'}")
    assert f"node 'sink' (mp4) path: {blocker / 'out.mp4'}: {blocker} is a file, not a folder" in err
    assert blocker.read_text() == "a file where a folder should be"


def test_absent_camera(tmp_path: Path) -> None:
    graph = tmp_path / "camera.yaml"
    graph.write_text("name: cam\nnodes:\n  - {name: cam, kind: camera, params: {device: /dev/video99}}\n"
                     "  - {name: sink, kind: discard}\nedges:\n  - cam.out -> sink.in\n")
    code, report = run(graph, tmp_path)
    assert code != 0
    assert "no camera at '/dev/video99'" in error_of(report, "cam")


def test_missing_image_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    graph = tmp_path / "images.yaml"
    graph.write_text(f"name: imgs\nnodes:\n  - {{name: src, kind: images, params: {{path: {tmp_path / 'none'}}}}}\n"
                     "  - {name: sink, kind: discard}\nedges:\n  - src.out -> sink.in\n")
    assert f"node 'src' (images) path: {tmp_path / 'none'}: no such folder" in refused(tmp_path, capsys, graph)


def test_unavailable_encoder(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    code, report = rerender(tiny_clip(tmp_path / "tiny.mp4"), out, tmp_path, "sink.codec=h264_nosuchencoder")
    assert code != 0
    assert "h264_nosuchencoder" in error_of(report, "sink") and "cannot be used here" in error_of(report, "sink")
    assert not out.exists()
