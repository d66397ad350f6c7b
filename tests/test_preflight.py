"""What `run` and `validate` refuse from a graph's parameters alone, before any node starts (exit 2):
an output that is an input (directly, through a symbolic link, through a hard link), inputs that are
missing or folders, outputs that are folders or cannot be written, unknown model names; and `--set`
values that reach string parameters exactly as typed. Real files, the real command line."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from clips import mannequin_clip
from launch.cli import main
from launch.command import Exit
from stream.graph import load_graph, parse_overrides
from stream.preflight import check_graph

REPO = Path(__file__).resolve().parents[1]
RERENDER = REPO / "graphs" / "rerender.yaml"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return mannequin_clip(tmp_path / "take.mp4", frames=4, size=64)


def refused(capsys, *argv: str) -> str:
    """Run the command in this process; it must refuse (exit 2): its error text."""
    assert main(list(argv)) == Exit.REFUSED
    return capsys.readouterr().err


@pytest.mark.parametrize("how", ["same path", "symbolic link", "hard link", "relative path"])
@pytest.mark.parametrize("command", ["run", "validate"])
def test_an_output_that_is_the_input_is_refused_and_the_input_is_untouched(tmp_path, clip, capsys, monkeypatch,
                                                                          how, command):
    before = digest(clip)
    out = {"same path": clip, "symbolic link": tmp_path / "link.mp4", "hard link": tmp_path / "hard.mp4",
           "relative path": Path("sub/../take.mp4")}[how]
    if how == "symbolic link":
        out.symlink_to(clip)
    elif how == "hard link":
        os.link(clip, out)
    monkeypatch.chdir(tmp_path)
    err = refused(capsys, command, "rerender", "--set", f"source.path={clip}", "--set", f"sink.path={out}")
    assert f"is the input {clip}" in err and "never writes over its input" in err
    assert digest(clip) == before and not list(tmp_path.glob("*.part"))


def test_the_partial_file_of_an_output_may_not_be_an_input_either(tmp_path, clip, capsys):
    part = tmp_path / "x.mp4.part"
    clip.rename(part)
    err = refused(capsys, "run", "rerender", "--set", f"source.path={part}", "--set", f"sink.path={tmp_path / 'x.mp4'}")
    assert "its partial file" in err and part.exists()


def test_missing_or_folder_inputs_and_bad_outputs_are_named_with_their_node(tmp_path, clip, capsys):
    (tmp_path / "folder.mp4").mkdir()
    err = refused(capsys, "run", "rerender", "--set", f"source.path={tmp_path / 'folder.mp4'}",
                  "--set", f"sink.path={tmp_path / 'folder.mp4'}")
    assert f"node 'source' (video) path: {tmp_path / 'folder.mp4'}: is a folder, not a file" in err
    assert f"node 'sink' (mp4) path: {tmp_path / 'folder.mp4'}: is a folder; give the output file's name" in err
    err = refused(capsys, "run", "rerender", "--set", f"source.path={tmp_path / 'gone.mp4'}",
                  "--set", "sink.path=/proc/x.mp4")
    assert f"{tmp_path / 'gone.mp4'}: no such file" in err and "/proc/x.mp4: cannot write in folder /proc" in err
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    err = refused(capsys, "validate", "rerender", "--set", f"source.path={clip}", "--set", f"sink.path={blocker}/o.mp4")
    assert f"{blocker} is a file, not a folder" in err


def test_a_video_input_that_holds_no_video_is_refused(tmp_path, capsys):
    # a text file, a still picture and an empty file used to exit 1 from inside the source, after the
    # other nodes had started
    from PIL import Image

    (tmp_path / "notes.mp4").write_text("not a video\n")
    Image.new("RGB", (32, 24), "red").save(tmp_path / "still.png")
    (tmp_path / "empty.mkv").write_bytes(b"")
    for name, why in (("notes.mp4", "cannot open"), ("still.png", "is a still image, not a video"),
                      ("empty.mkv", "cannot open")):
        err = refused(capsys, "run", "rerender", "--set", f"source.path={tmp_path / name}",
                      "--set", f"sink.path={tmp_path / 'out.mp4'}")
        assert "node 'source' (video) path: " in err and str(tmp_path / name) in err and why in err, err
    assert not (tmp_path / "out.mp4").exists()


def test_an_existing_output_is_replaced_only_with_overwrite(tmp_path, clip, capsys):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"the user's earlier render")
    sets = ["--set", f"source.path={clip}", "--set", f"sink.path={out}", "--set", "sink.preset=ultrafast"]
    for command in ("run", "validate"):
        err = refused(capsys, command, "rerender", *sets)
        assert f"node 'sink' (mp4) path: {out}: exists; run with --overwrite to replace it" in err
    assert out.read_bytes() == b"the user's earlier render"
    assert main(["run", "rerender", "--quiet", "--overwrite", *sets]) == Exit.OK
    assert out.stat().st_size > 1000 and out.read_bytes()[4:8] == b"ftyp"  # the re-render replaced it
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "000000.png").write_bytes(b"mine")
    graph = tmp_path / "frames.yaml"
    graph.write_text(f"nodes:\n  - {{name: src, kind: video, params: {{path: '{clip}'}}}}\n"
                     f"  - {{name: seq, kind: image_seq, params: {{path: '{frames}/%06d.png'}}}}\n"
                     "edges: [src.out -> seq.in]\n")
    err = refused(capsys, "validate", str(graph))
    assert f"its first frame {frames / '000000.png'} exists; run with --overwrite" in err
    assert main(["validate", str(graph), "--overwrite"]) == Exit.OK


def test_an_unknown_model_name_is_refused_before_any_frame(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = refused(capsys, "run", "demo", "--set", "style.model=van_gogh")
    assert "node 'style' (stylize) model: no style checkpoint 'van_gogh'" in err and "starry_night" in err
    assert not (tmp_path / "out").exists()  # nothing written, not even the output folder
    err = refused(capsys, "validate", "demo", "--set", "avatar.model=starry_night")
    assert "node 'avatar' (avatar) model: starry_night is a StyleNet stylizer, not an avatar" in err


def test_frames_written_into_the_folder_the_job_reads_are_refused(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    graph = tmp_path / "g.yaml"
    graph.write_text(f"""
nodes:
  - {{name: source, kind: images, params: {{path: {frames}}}}}
  - {{name: sink, kind: image_seq, params: {{path: "{frames}/%06d.png"}}}}
edges: [source.out -> sink.in]
""")
    err = refused(capsys, "validate", str(graph))
    assert f"writes into the folder the job reads ({frames})" in err


def test_set_values_reach_string_parameters_as_typed(tmp_path, clip):
    odd = tmp_path / "take #2: final.mp4"
    clip.rename(odd)
    overrides = parse_overrides([f"source.path={odd}", "sink.path=out: a #b.mp4", "sink.crf=18",
                                 "source.end=0.1", "source.realtime=true", "sink.bitrate:=null"], RERENDER)
    graph = load_graph(RERENDER, overrides)
    assert graph.nodes["source"].params.path == str(odd) and graph.nodes["sink"].params.path == "out: a #b.mp4"
    assert graph.nodes["sink"].params.crf == 18 and graph.nodes["source"].params.end == 0.1
    assert graph.nodes["source"].params.realtime is True and graph.nodes["sink"].params.bitrate is None
    assert check_graph(graph) == []  # the odd name exists: nothing was cut at '#' or turned into a map


def test_set_text_that_is_not_yaml_where_yaml_is_needed_is_refused(capsys):
    err = refused(capsys, "validate", "rerender", "--set", "sink.crf=[1,")
    assert "--set 'sink.crf=[1,': not a YAML value" in err


def test_validate_passes_a_runnable_graph(tmp_path, clip, capsys):
    assert main(["validate", "rerender", "--set", f"source.path={clip}", "--set", f"sink.path={tmp_path / 'o.mp4'}"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("rerender.yaml: ok (2 nodes, 2 edges)")


def test_extract_pose_refuses_to_write_its_poses_over_the_video(tmp_path, clip, capsys):
    before = digest(clip)
    link = tmp_path / "poses.npz"
    link.symlink_to(clip)
    err = refused(capsys, "extract-pose", str(clip), "-o", str(link))
    assert f"is the input {clip}" in err and digest(clip) == before


def test_checking_a_neural_graph_does_not_import_torch(clip: Path, tmp_path: Path):
    """The checkpoints' records are read from their headers: a `run` of avatar_rerender started its first node
    process 13 s late on a loaded machine while the supervisor imported torch only to check them."""
    import subprocess
    import sys

    probe = ("import sys; from launch.shipped import graph_file; from stream.graph import load_graph; "
             "from stream.preflight import check_graph\n"
             "for g in ('avatar_rerender', 'stylize_video'):\n"
             "    sets = {'source': {'path': sys.argv[1]}, 'sink': {'path': sys.argv[2]}}\n"
             "    assert check_graph(load_graph(graph_file(g), sets)) == [], g\n"
             "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe, str(clip), str(tmp_path / "out.mp4")], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
