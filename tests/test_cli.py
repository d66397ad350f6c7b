"""The command-line convention: exit codes, --version, the program name, shipped graphs by name,
benchmarks by name, and ship-style. Real processes, real files, real graph runs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clips import mannequin_clip, mannequin_frames
from launch.cli import main
from launch.command import Exit
from stream.media import probe, write_video

CONSOLE_SCRIPT = Path(sys.executable).with_name("neural-stream")


def launch(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m launch ARGV`` as a user runs it, from a folder that is not the checkout."""
    return subprocess.run([sys.executable, "-m", "launch", *argv], cwd=cwd, capture_output=True, text=True, timeout=240)


def test_help_shows_the_exit_code_table_and_the_name_it_was_called_by(tmp_path):
    r = launch("--help", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("usage: python -m launch ")
    table = r.stdout[r.stdout.index("exit codes:"):]
    assert [line.split()[0] for line in table.splitlines()[1:]] == ["0", "1", "2", "130", "143"]
    assert "refused before any work" in table and "interrupted" in table
    r = subprocess.run([CONSOLE_SCRIPT, "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("usage: neural-stream ")
    r = subprocess.run([CONSOLE_SCRIPT, "run", "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert r.stdout.startswith("usage: neural-stream run ") and "exit codes:" in r.stdout


def test_version_names_the_program_and_the_package_version(tmp_path):
    from importlib.metadata import version

    r = launch("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == f"python -m launch {version('neural-stream')}\n"
    r = subprocess.run([CONSOLE_SCRIPT, "--version"], cwd=tmp_path, capture_output=True, text=True)
    assert r.stdout == f"neural-stream {version('neural-stream')}\n"


def test_exit_codes_ok_failed_refused(tmp_path):
    clip = mannequin_clip(tmp_path / "in.mp4", frames=6, size=64)
    out = tmp_path / "out.mp4"
    # a shipped graph by name, from another folder: runs, and its last line says where the output went
    r = launch("run", "rerender", "--quiet", "--set", f"source.path={clip}", "--set", f"sink.path={out}",
               "--set", "sink.preset=ultrafast", cwd=tmp_path)
    assert r.returncode == Exit.OK, r.stderr
    assert probe(str(out))["frames"] == 6 and r.stdout.splitlines()[-1] == f"sink: wrote {out}"
    # the work starts and cannot finish: the input ends before the length its index declares
    cut = tmp_path / "cut.mp4"
    write_video(cut, (np.ascontiguousarray(f.rgb) for f in mannequin_frames(30, size=64)), options={"movflags": "faststart"})
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size * 2 // 3])
    r = launch("run", "rerender", "--quiet", "--set", f"source.path={cut}",
               "--set", f"sink.path={tmp_path / 'never.mp4'}", cwd=tmp_path)
    assert r.returncode == Exit.FAILED and not (tmp_path / "never.mp4").exists() and "wrote" not in r.stdout
    # refused before any work: a missing input (no node process started, nothing written)
    r = launch("run", "rerender", "--quiet", "--set", f"source.path={tmp_path / 'nope.mp4'}",
               "--set", f"sink.path={tmp_path / 'refused.mp4'}", cwd=tmp_path)
    assert r.returncode == Exit.REFUSED and f"source' (video) path: {tmp_path / 'nope.mp4'}: no such file" in r.stderr
    assert not list(tmp_path.glob("refused.mp4*"))
    # refused before any work: an unknown graph name, an invalid --set, a malformed command line
    r = launch("run", "no_such_graph", cwd=tmp_path)
    assert r.returncode == Exit.REFUSED
    assert r.stderr == ("error: 'no_such_graph': no such file, and no shipped graph of that name (shipped: avatar_rerender, "
                        "avatar_rerender_side, demo, preview, rerender, stylize_any, stylize_live, stylize_live_vcam, stylize_video, telepresence)\n")
    r = launch("validate", "demo", "--set", "nobody.x=1", cwd=tmp_path)
    assert r.returncode == Exit.REFUSED and "--set nobody.*: no node named 'nobody'" in r.stderr
    assert launch("run", cwd=tmp_path).returncode == Exit.REFUSED  # argparse's usage error: the same code


def test_shipped_graphs_by_name(tmp_path, capsys):
    assert main(["validate", "demo"]) == Exit.OK
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith("demo.yaml: ok (6 nodes, 7 edges)") and Path(first.split(":")[0]).is_file()
    assert main(["graphs"]) == Exit.OK
    listed = capsys.readouterr().out
    assert listed.startswith("avatar_rerender ") and "\ndemo " in listed and "stylize_video " in listed and "telepresence " in listed
    # a path is still a path: a missing file is named as such, not looked up as a name
    assert main(["validate", str(tmp_path / "demo.yaml")]) == Exit.REFUSED
    assert "cannot read graph file" in capsys.readouterr().err


def test_bench_lists_its_benchmarks_on_an_unknown_name_and_runs_one_by_name(tmp_path):
    r = launch("bench", "nope", cwd=tmp_path)
    assert r.returncode == Exit.REFUSED and r.stderr.startswith("error: no benchmark 'nope' (available: ")
    names = r.stderr.split("available: ")[1].rstrip(")\n").split(", ")
    assert {"transport", "rerender", "stylize", "bones", "pose", "telepresence"} <= set(names)
    assert "baselines" not in names and "ship_style" not in names
    r = launch("bench", "transport", "--width", "64", "--height", "48", "--frames", "300", "--fps", "200", cwd=tmp_path)
    assert r.returncode == Exit.OK, r.stderr
    assert "baseline  one memory copy" in r.stdout and r.stdout.count("ratios: p50/copy") == 2


@pytest.fixture(scope="module")
def style_inputs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ship")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    stripes = np.stack([np.sin(xx / 2.5) * 120 + 128, np.cos((xx + yy) / 4) * 120 + 128, (yy % 16) * 16], -1)
    Image.fromarray(stripes.astype(np.uint8)).save(d / "stripes.png")
    (d / "content").mkdir()
    for i in range(2):
        Image.fromarray((rng.random((48, 56, 3)) * 255).astype(np.uint8)).save(d / "content" / f"p{i}.png")
    (d / "notes.txt").write_text("not a picture\n")
    return {"dir": d, "style": d / "stripes.png", "content": d / "content", "text": d / "notes.txt"}


def test_ship_style_refuses_bad_input_and_writes_nothing(style_inputs, tmp_path, capsys):
    f = style_inputs
    weights = tmp_path / "weights"
    common = ["--content", str(f["content"]), "--weights-dir", str(weights), "--run-dir", str(tmp_path / "runs")]
    cases = [
        (["ship-style", str(f["dir"] / "missing.jpg"), "s"], "missing.jpg: no such file"),
        (["ship-style", str(f["text"]), "s"], "notes.txt: not an image"),
        (["ship-style", str(f["style"]), "Bad-Name"], "style name 'Bad-Name'"),
        (["ship-style", str(f["style"]), "mannequin_avatar"], "'mannequin_avatar' is a shipped avatar's name"),
        (["ship-style", str(f["style"]), "s", "--content", str(tmp_path / "nophotos")], "nophotos: no such folder"),
    ]
    for argv, message in cases:
        code = main([*argv[:3], *common, *argv[3:]])
        err = capsys.readouterr().err
        assert code == Exit.REFUSED and err.startswith("error: ") and message in err, (argv, err)
    assert not weights.exists() and not (tmp_path / "runs").exists()


def test_ship_style_trains_and_exports_weights_record_and_note(style_inputs, tmp_path, capsys):
    f = style_inputs
    weights = tmp_path / "weights"
    code = main(["ship-style", str(f["style"]), "stripes", "--content", str(f["content"]), "--steps", "2",
                 "--size", "32", "--channels", "4", "8", "8", "--device", "cpu", "--quiet",
                 "--weights-dir", str(weights), "--run-dir", str(tmp_path / "runs")])
    assert code == Exit.OK, capsys.readouterr().err
    assert capsys.readouterr().out.startswith(f"{weights / 'stripes.safetensors'}: stripes, 2 steps")
    shipped = sorted(p.name for p in weights.iterdir())
    assert shipped == ["stripes.json", "stripes.md", "stripes.safetensors"]  # no resume state is shipped
    record_text = (weights / "stripes.json").read_text()
    record = json.loads(record_text)
    assert record["kind"] == "stylenet" and record["step"] == 2 and record["data"]["content"]["files"] == 2
    assert str(tmp_path) not in record_text and "history" not in record  # no path of this machine
    note = (weights / "stripes.md").read_text()
    assert note.startswith("# Shipped style: stripes") and "p0.png, p1.png" in note and str(tmp_path) not in note
    styled = tmp_path / "styled.png"
    assert main(["stylize", str(weights / "stripes.safetensors"), str(f["style"]), str(styled)]) == Exit.OK
    assert Image.open(styled).size == (64, 64)


def test_log_level_reaches_the_node_processes(tmp_path):
    graph = tmp_path / "g.yaml"
    graph.write_text("nodes:\n"
                     "  - {name: src, kind: synthetic, params: {width: 32, height: 24, frames: 3}}\n"
                     "  - {name: web, kind: preview, params: {port: 0}}\n"
                     "edges: [src.out -> web.in]\n")
    told = launch("run", str(graph), "--quiet", cwd=tmp_path)
    assert told.returncode == 0 and "[web] preview at http://127.0.0.1:" in told.stderr
    quiet = launch("--log-level", "warning", "run", str(graph), "--quiet", cwd=tmp_path)
    assert quiet.returncode == 0 and "preview at" not in quiet.stderr
