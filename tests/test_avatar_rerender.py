"""graphs/avatar_rerender.yaml on a short real clip: every frame kept with its timestamp, audio kept,
frames without a person counted and shown as the background alone.

The clip is the start of hybrik_taiji.mp4 (a person doing taiji, AAC stereo) scaled to 256x144,
followed by frames of an empty grey scene, with the source's own audio over the whole span:
made here with PyAV, so the expected frames, timestamps and audio are known exactly.
"""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from launch.cli import main
from stream.media import open_input, probe

PERSON, EMPTY = 20, 6   # frames with the person, then frames of the empty scene
SIZE = (256, 144)
GREY = (128, 128, 128)


def person_then_empty_clip(source: Path, path: Path) -> Path:
    """PERSON frames of `source` scaled to SIZE, EMPTY grey frames, and `source`'s audio for their span."""
    import av

    with open_input(str(source)) as src, av.open(str(path), "w") as out:
        rate = src.streams.video[0].average_rate
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = *SIZE, "yuv420p"
        video.codec_context.time_base = 1 / Fraction(rate)
        seconds = (PERSON + EMPTY) / float(rate)
        arate = src.streams.audio[0].rate
        audio = out.add_stream("aac", rate=arate, layout=src.streams.audio[0].layout.name)
        frames = []
        for i, frame in enumerate(src.decode(video=0)):
            if i == PERSON:
                break
            frames.append(frame.reformat(width=SIZE[0], height=SIZE[1], format="rgb24").to_ndarray())
        frames += [np.full((SIZE[1], SIZE[0], 3), GREY, np.uint8)] * EMPTY
        for i, image in enumerate(frames):
            f = av.VideoFrame.from_ndarray(image, format="rgb24")
            f.pts = i
            for packet in video.encode(f):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        src.seek(0)
        resampler = av.AudioResampler(format="fltp", layout=audio.layout.name, rate=arate, frame_size=1024)
        for frame in src.decode(audio=0):
            if frame.time >= seconds:
                break
            for f in resampler.resample(frame):
                for packet in audio.encode(f):
                    out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)
    return path


def test_every_frame_becomes_an_avatar_frame_with_its_timestamp_and_audio(media: Path, tmp_path: Path) -> None:
    src = person_then_empty_clip(media / "video" / "hybrik_taiji.mp4", tmp_path / "taiji.mp4")
    out, report = tmp_path / "out" / "taiji.mp4", tmp_path / "report.json"
    code = main(["run", "avatar_rerender", "--quiet", "--report", str(report), "--set", f"source.path={src}",
                 "--set", f"sink.path={out}", "--set", "composite.background=color",
                 "--set", f"composite.color=[{GREY[0]}, {GREY[1]}, {GREY[2]}]"])
    nodes = json.loads(report.read_text())["nodes"]
    assert code == 0, nodes
    before, after = probe(str(src)), probe(str(out))
    assert after["frames"] == before["frames"] == PERSON + EMPTY
    assert after["pts"] == pytest.approx(before["pts"], abs=1e-3)
    assert after["audio"]["sample_rate"] == before["audio"]["sample_rate"]
    assert after["audio"]["end"] == pytest.approx(before["audio"]["end"], abs=0.05)
    # the person was found, and the empty frames counted as missed
    assert nodes["pose"]["extra"]["detected"] >= PERSON - 2
    assert nodes["pose"]["extra"]["missed"] >= EMPTY
    import av

    with av.open(str(out)) as c:
        decoded = [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]
    # with a person: the avatar is drawn (pixels far from the background colour); without: background alone
    assert all(np.abs(f - GREY).max(axis=2).mean() > 2 for f in decoded[2:PERSON - 2])
    assert all(np.abs(f - GREY).max() <= 6 for f in decoded[PERSON + 1:])


def test_person_removed_from_the_source_frame(media: Path, tmp_path: Path) -> None:
    """The default background: the source frame with the person inpainted away, the avatar over it."""
    src = person_then_empty_clip(media / "video" / "hybrik_taiji.mp4", tmp_path / "taiji.mp4")
    out, report = tmp_path / "side.mp4", tmp_path / "report.json"
    code = main(["run", "avatar_rerender_side", "--quiet", "--report", str(report), "--set", f"source.path={src}",
                 "--set", f"sink.path={out}", "--set", "source.end=0.5"])
    nodes = json.loads(report.read_text())["nodes"]
    assert code == 0, nodes
    after = probe(str(out))
    assert (after["width"], after["height"]) == (2 * SIZE[0], SIZE[1])  # source | avatar
    assert nodes["composite"]["extra"]["removed"] >= after["frames"] - 2
