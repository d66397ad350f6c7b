"""Neural nodes in real graphs: the shipped weights load, run on any frame size, keep the frame's other buffers."""
from __future__ import annotations

import os

import av
import cv2
import numpy as np
import pytest

from avatars.core.weights import available
from test_runtime import REPO, run_graph

needs_shipped = pytest.mark.skipif(not {"starry_night", "mannequin_avatar"} <= set(available("style") + available("avatar")),
                                   reason="shipped weights not present")


def _decode(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _mannequin_stylized(tmp_path, style: str, composite: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The mannequin's frames as encoded, and after a stylize node with params ``style`` (then over black)."""
    plain, styled = tmp_path / "plain.mp4", tmp_path / "styled.mp4"
    comp = "- {name: comp, kind: composite, params: {background: color, color: [0, 0, 0]}}" if composite else ""
    code, report, err = run_graph(tmp_path, f"""
        nodes:
          - {{name: source, kind: mannequin, params: {{width: 160, height: 120, frames: 6, motion: dance}}}}
          - {{name: style, kind: stylize, params: {{model: starry_night, threads: 1, {style}}}}}
          {comp}
          - {{name: plain, kind: mp4, params: {{path: {plain}, crf: 10}}}}
          - {{name: styled, kind: mp4, params: {{path: {styled}, crf: 10}}}}
        edges: [source.video -> style.in, {"style.out -> comp.in, comp.out" if composite else "style.out"} -> styled.in,
                source.video -> plain.in]
    """)
    assert code == 0, err
    return _decode(plain), _decode(styled)


@needs_shipped
def test_stylize_node_changes_the_look_of_every_frame(tmp_path):
    a, b = _mannequin_stylized(tmp_path, "region: frame", composite=True)
    assert len(a) == len(b) == 6 and a[0].shape == b[0].shape == (120, 160, 3)
    body = a[0].sum(-1) > 60  # the mannequin's pixels (its background is black)
    diff = np.abs(a[0].astype(int) - b[0].astype(int))[body].mean()
    assert body.mean() > 0.05 and diff > 20, diff  # stylized, not passed through
    assert b[0][:4, :4].max() < 30  # the mask travelled through stylize: background composited black


@needs_shipped
def test_stylize_node_paints_only_the_person_with_region_person(tmp_path):
    a, b = _mannequin_stylized(tmp_path, "region: person", composite=False)
    body = a[0].sum(-1) > 60
    far = cv2.dilate(body.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0   # background, clear of the soft edge
    diff = np.abs(a[0].astype(int) - b[0].astype(int))
    assert diff[body].mean() > 20, diff[body].mean()          # the person is painted
    assert diff[far].mean() < 2, diff[far].mean()             # the (black) background is kept


def test_missing_style_model_is_a_clear_fatal_error(tmp_path):
    code, report, err = run_graph(tmp_path, """
        nodes:
          - {name: source, kind: synthetic, params: {width: 64, height: 48, frames: 3}}
          - {name: style, kind: stylize, params: {model: no_such_style}}
          - {name: sink, kind: discard}
        edges: [source.out -> style.in, style.out -> sink.in]
    """)
    # refused before any node starts, by what the parameter names (not after the source has sent frames)
    assert code == 2 and "node 'style' (stylize) model: no style checkpoint 'no_such_style'" in err
    assert "mannequin_avatar" not in err and report == {}


@needs_shipped
def test_demo_graph_renders_the_avatar_where_the_mannequin_is(tmp_path):
    out = tmp_path / "demo.mp4"
    code, report, err = run_graph(tmp_path, (REPO / "graphs" / "demo.yaml").read_text(),
                                  "--set", "pose.frames=8", "--set", f"sink.path={out}", timeout=180)
    assert code == 0, err
    assert all(report["nodes"][n]["frames_out"] == 8 for n in ("avatar", "style", "composite", "mosaic")), report
    frames = _decode(out)
    assert len(frames) == 8 and frames[0].shape == (256, 768, 3)
    for f in frames:
        truth, avatar, styled = (f[:224, i * 256:(i + 1) * 256].astype(int) for i in range(3))  # above the captions
        body = truth.sum(-1) > 60
        background = np.abs(styled - [236, 228, 210]).sum(-1) < 40
        assert 0.03 < body.mean() < 0.5
        assert avatar[body].mean() > 2 * avatar[~body].mean()  # the avatar is drawn where the mannequin stands
        assert background[~body].mean() > 0.9 and background[body].mean() < 0.5  # composited around the person


@pytest.mark.skipif("mannequin_avatar" not in available("avatar"), reason="shipped avatar not present")
def test_avatar_node_renders_nothing_when_no_person_is_detected(tmp_path):
    out = tmp_path / "empty.mp4"
    code, report, err = run_graph(tmp_path, f"""
        nodes:
          - {{name: source, kind: synthetic, params: {{width: 160, height: 120, frames: 5}}}}
          - {{name: pose, kind: pose, params: {{gap: blank}}}}
          - {{name: avatar, kind: avatar, params: {{threads: 1}}}}
          - {{name: comp, kind: composite, params: {{background: color, color: [255, 0, 0]}}}}
          - {{name: sink, kind: mp4, params: {{path: {out}, crf: 10}}}}
        edges: [source.out -> pose.in, pose.out -> avatar.in, avatar.out -> comp.in, comp.out -> sink.in]
    """, timeout=180)
    assert code == 0, err
    frames = _decode(out)
    assert len(frames) == 5 and frames[0].shape == (120, 160, 3)
    for f in frames:  # an empty mask: all background
        assert np.abs(f.astype(int) - [255, 0, 0]).max() < 40


@pytest.mark.parametrize("threads, env, expected", [
    (0, None, len(os.sched_getaffinity(0))),               # the one compute node gets the host's cores
    (2, None, 2),                                          # a node's own setting wins
    (0, "2", min(2, len(os.sched_getaffinity(0)))),       # so does the user's OMP_NUM_THREADS
])
def test_neural_processes_share_the_cores(tmp_path, monkeypatch, threads, env, expected):
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    code, report, err = run_graph(tmp_path, f"""
        nodes:
          - {{name: source, kind: synthetic, params: {{width: 64, height: 48, frames: 2}}}}
          - {{name: style, kind: stylize, params: {{threads: {threads}}}}}
          - {{name: sink, kind: discard}}
        edges: [source.out -> style.in, style.out -> sink.in]
    """)
    assert code == 0, err
    assert report["nodes"]["style"]["extra"]["threads"] == expected


@needs_shipped
def test_frames_at_once_gives_the_same_frames_in_order_and_yields_to_smoothing(tmp_path):
    """Two frames stylized side by side (one thread each) give what one at a time on one thread gives, in the
    same order (the mannequin moves: a swap would show), the person mask riding along (composited black);
    with smoothing, which needs the frame before, or a region, the node runs one frame at a time."""
    outs = {name: tmp_path / f"{name}.mp4" for name in ("paired", "single", "smooth")}
    code, report, err = run_graph(tmp_path, f"""
        nodes:
          - {{name: source, kind: mannequin, params: {{width: 160, height: 120, frames: 12, motion: dance}}}}
          - {{name: paired, kind: stylize, params: {{threads: 2, frames_at_once: 2}}}}
          - {{name: single, kind: stylize, params: {{threads: 1}}}}
          - {{name: smooth, kind: stylize, params: {{threads: 2, frames_at_once: 2, smoothing: ema}}}}
          - {{name: person, kind: stylize, params: {{threads: 2, frames_at_once: 2, region: person}}}}
          - {{name: comp, kind: composite, params: {{background: color, color: [0, 0, 0]}}}}
          - {{name: comp1, kind: composite, params: {{background: color, color: [0, 0, 0]}}}}
          - {{name: paired_out, kind: mp4, params: {{path: {outs["paired"]}, crf: 0}}}}
          - {{name: single_out, kind: mp4, params: {{path: {outs["single"]}, crf: 0}}}}
          - {{name: smooth_out, kind: mp4, params: {{path: {outs["smooth"]}, crf: 0}}}}
          - {{name: person_out, kind: discard}}
        edges: [source.video -> paired.in, source.video -> single.in, source.video -> smooth.in,
                source.video -> person.in, paired.out -> comp.in, comp.out -> paired_out.in,
                single.out -> comp1.in, comp1.out -> single_out.in, smooth.out -> smooth_out.in, person.out -> person_out.in]
    """, timeout=180)
    assert code == 0, err
    extra = {n: report["nodes"][n]["extra"] for n in ("paired", "smooth", "person")}
    assert extra["paired"]["frames_at_once"] == 2
    assert "frames_at_once" not in extra["smooth"] and "frames_at_once" not in extra["person"]
    paired, single = _decode(outs["paired"]), _decode(outs["single"])
    assert len(paired) == len(single) == 12 == len(_decode(outs["smooth"]))
    assert min(np.abs(a.astype(int) - b).mean() for a, b in zip(single, single[1:])) > 0.5  # every frame differs
    person = [f.sum(-1) > 60 for f in paired]  # what the mask kept (the rest composited black)
    assert all(0.05 < p.mean() < 0.6 for p in person)
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(paired, single)) <= 1
