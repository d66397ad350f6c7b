"""What a graph's parameters alone say about its files and models, checked before any node starts.

A node kind marks its string parameters with what they name (``param(file=...)``: a file or URL it
reads, a video file or URL it decodes, a folder it reads, a file it writes, a numbered pattern it
writes; ``param(weights=...)``: a shipped name or checkpoint of a weights family). From those marks
alone `check_graph` finds the mistakes that would otherwise surface only inside a node process,
after other nodes did work: an input that does not exist or is a folder, a local video that FFmpeg
cannot open or that holds no decodable video (a text file, a still image), an output that resolves to one of the inputs (also through
links: the job would destroy the user's file), an output that is a folder or lies in a folder that
cannot be written, an output that exists (unless `--overwrite`), a model name that is not shipped.
`run` and `validate` refuse such a graph (exit 2).
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stream.graph import GraphSpec, NodeSpec


def is_url(path: str) -> bool:
    return "://" in path


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: the same resolved path (links followed), or the same inode
    (hard links, bind mounts). A path that does not exist yet is compared by its resolved name."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def overwrite_problem(inputs: list[str], output: str) -> str | None:
    """Why writing `output` would destroy one of `inputs` (None: it would not). The partial file the
    writer uses (OUTPUT.part) counts too: renaming it over an input is the same loss."""
    for source in inputs:
        if is_url(source):
            continue
        if same_file(source, output):
            return f"{output}: is the input {source}; a job never writes over its input (choose another output path)"
        if same_file(source, f"{output}.part"):
            return f"{output}: its partial file {output}.part is the input {source}; choose another output path"
    return None


def folder_problem(output: Path) -> str | None:
    """Why files cannot be made in the folder of `output` (None: they can): the nearest existing folder
    above it must be a writable folder (the writer creates the missing ones)."""
    folder = output.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"{output}: {folder} is a file, not a folder"
    try:  # a real file, not os.access: root passes access() where the file system still refuses (/proc, read-only)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        return f"{output}: cannot write in folder {folder} ({exc.strerror or exc})"
    return None


def _input_problem(path: str, role: str) -> str | None:
    if role != "folder" and is_url(path):
        return None  # a stream is opened by its node, which waits for it (`timeout`)
    p = Path(path)
    if not p.exists():
        return f"{path}: no such {'folder' if role == 'folder' else 'file'}"
    if role != "folder" and p.is_dir():
        return f"{path}: is a folder, not a file"
    if role == "folder" and not p.is_dir():
        return f"{path}: is a file, not a folder"
    if not os.access(p, os.R_OK):
        return f"{path}: not readable (permission denied)"
    return _video_problem(path) if role == "video" else None


def _video_problem(path: str) -> str | None:
    """Why FFmpeg finds no video to decode in a local file (its header only: opening reads no frames)."""
    from stream.media import open_input, video_stream
    from stream.node import NodeError

    try:
        with open_input(path) as container:
            video_stream(container, path)
    except NodeError as exc:
        return str(exc)
    return None


def _output_problem(path: str, role: str, inputs: list[str], folders: list[str], overwrite: bool) -> str | None:
    target = Path(path % 0) if role == "pattern" else Path(path)
    if role == "output" and target.is_dir():
        return f"{path}: is a folder; give the output file's name"
    if not overwrite and target.is_file() and not any(same_file(target, source) for source in inputs):
        what = "exists" if role == "output" else f"its first frame {target} exists"
        return f"{path}: {what}; run with --overwrite to replace it, or choose another path"
    if role == "pattern" and any(same_file(target.parent, folder) for folder in folders):
        return f"{path}: writes into the folder the job reads ({target.parent}); choose another folder"
    return folder_problem(target) or (overwrite_problem(inputs, path) if role == "output" else None)


def _marked(spec: "NodeSpec") -> list[tuple[str, str, str | None, str | None]]:
    """(param, value, file role, weights family) of each marked string parameter of a node."""
    return [(f.name, getattr(spec.params, f.name), f.metadata.get("file"), f.metadata.get("weights"))
            for f in dataclasses.fields(spec.params)
            if (f.metadata.get("file") or f.metadata.get("weights")) and getattr(spec.params, f.name)]


def check_graph(graph: "GraphSpec", host: str | None = None, overwrite: bool = False) -> list[str]:
    """Problems with the files and models the nodes of `host` (None: every host) name, each prefixed
    by its node and parameter. Inputs are checked first, so an output can be compared with all of them.
    An output file that exists is a problem unless `overwrite` (a job replaces nobody's file unasked)."""
    specs = [s for s in graph.nodes.values() if host is None or s.host == host]
    marked = [(spec, *m) for spec in specs for m in _marked(spec)]
    inputs = [value for _, _, value, role, _ in marked if role in ("input", "video")]
    folders = [value for _, _, value, role, _ in marked if role == "folder"]
    problems = []
    for spec, name, value, role, family in marked:
        if role in ("input", "video", "folder"):
            problem = _input_problem(value, role)
        elif role in ("output", "pattern"):
            problem = _output_problem(value, role, inputs, folders, overwrite)
        else:
            problem = _weights_problem(value, family)
        if problem:
            problems.append(f"node {spec.name!r} ({spec.kind}) {name}: {problem}")
    return problems


def partial_outputs(graph: "GraphSpec", host: str | None = None) -> list[Path]:
    """The OUTPUT.part files the writers of `host`'s nodes use (stream.media.AtomicOutput): what a
    failed job removes, whichever process died and however (a SIGKILLed sink cannot clean up)."""
    specs = [s for s in graph.nodes.values() if host is None or s.host == host]
    return [Path(f"{value}.part") for spec in specs for _, value, role, _ in _marked(spec) if role == "output"]


def _weights_problem(name: str, family: str) -> str | None:
    from avatars.core.checkpoint_record import CheckpointError
    from avatars.core.weights import resolve_weights

    try:
        resolve_weights(name, family)
    except (FileNotFoundError, CheckpointError) as exc:
        return str(exc)
    return None
