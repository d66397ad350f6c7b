"""Offline re-rendering: every real video through graphs/rerender.yaml, checked by decoding the output.

Lossless means: every input frame becomes an output frame with the same timestamp (within half a
tick of the input's time base), the same duration within one frame, and the audio track kept
with the same span. Runs the real CLI (processes, ZeroMQ, shared memory, x264, AAC).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from launch.cli import main
from launch.shipped import graph_file
from stream.media import probe

GRAPH = str(graph_file("rerender"))
VIDEOS = ["hybrik_taiji.mp4", "romp_sample_video2_exercise.mp4", "musepose_dance.mp4", "gvhmr_tennis.mp4",
          "mmhuman3d_single_person_demo.mp4", "kinetics_ta_chi_340x256.mp4", "iper_023_1_1_turnaround.gif",
          "extra/openpose_video_street_crowd.avi", "extra/mmhuman3d_multi_person_demo.mp4",
          "extra/kinetics_clean_and_jerk_340x256.mp4"]


def rerender(src: Path, out: Path, *sets: str) -> tuple[int, dict]:
    report = out.with_suffix(".json")
    code = main(["run", GRAPH, "--quiet", "--report", str(report), "--set", f"source.path={src}",
                 "--set", f"sink.path={out}", "--set", "sink.preset=ultrafast", *[a for s in sets for a in ("--set", s)]])
    return code, json.loads(report.read_text())


@pytest.mark.parametrize("name", VIDEOS)
def test_round_trip_keeps_every_frame_timestamp_and_audio(media: Path, tmp_path: Path, name: str) -> None:
    src = media / "video" / name
    out = tmp_path / (src.stem + ".mp4")
    code, report = rerender(src, out)
    assert code == 0, report
    assert not out.with_name(out.name + ".part").exists()
    before, after = probe(str(src)), probe(str(out))
    assert after["frames"] == before["frames"]
    assert (after["width"], after["height"]) == (before["width"] + before["width"] % 2, before["height"] + before["height"] % 2)
    frame = (before["pts"][-1] - before["pts"][0]) / max(1, before["frames"] - 1)
    shift = before["pts"][0]
    worst = max(abs((b - shift) - a) for a, b in zip(after["pts"], before["pts"], strict=True))
    assert worst < frame / 2, f"timestamps moved by up to {worst:.4f}s"
    assert (before["audio"] is None) == (after["audio"] is None)
    if before["audio"]:
        assert after["audio"]["sample_rate"] == before["audio"]["sample_rate"]
        assert abs(after["audio"]["start"] - (before["audio"]["start"] - shift)) < frame
        assert abs(after["audio"]["end"] - (before["audio"]["end"] - shift)) < frame
    assert report["nodes"]["source"]["extra"]["decode_errors"] == 0


def test_clip_with_start_and_end_starts_at_zero_with_audio_in_sync(media: Path, tmp_path: Path) -> None:
    src = media / "video" / "hybrik_taiji.mp4"
    out = tmp_path / "clip.mkv"
    code, _ = rerender(src, out, "source.start=5", "source.end=7")
    assert code == 0
    after = probe(str(out))
    assert after["frames"] == 48  # 2 s at 23.976 fps
    assert 0 <= after["pts"][0] < 1 / 23.976  # the first frame at or after 5 s
    assert after["audio"]["start"] == pytest.approx(0.0, abs=0.03)
    assert after["audio"]["end"] == pytest.approx(2.0, abs=0.05)


def test_chain_in_the_middle_keeps_every_frame(media: Path, tmp_path: Path) -> None:
    """A processing node between source and sink (here `invert`, in its own process) loses nothing."""
    graph = tmp_path / "chain.yaml"
    graph.write_text(Path(GRAPH).read_text().replace(
        "edges:\n  - source.out -> sink.in",
        "  - {name: fx, kind: invert}\nedges:\n  - source.out -> fx.in\n  - fx.out -> sink.in"))
    out = tmp_path / "inverted.mp4"
    src = media / "video" / "kinetics_ta_chi_340x256.mp4"
    code = main(["run", str(graph), "--quiet", "--set", f"source.path={src}", "--set", f"sink.path={out}"])
    assert code == 0
    assert probe(str(out))["frames"] == probe(str(src))["frames"]
