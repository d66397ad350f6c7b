"""The shipped graph files, by name: `run demo` as well as `run graphs/demo.yaml`.

They are package data of the `graphs` package, so a wheel installed anywhere finds them; the
supervisor hands each node process the graph's path, so they must be real files (a wheel
installs them as such; a zipped install is not supported).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from launch.command import Refused


def shipped_graphs() -> dict[str, Path]:
    """name -> file of every shipped graph."""
    folder = resources.files("graphs")
    return {Path(f.name).stem: Path(str(f)) for f in sorted(folder.iterdir(), key=lambda f: f.name)
            if f.name.endswith(".yaml")}


def graph_file(name_or_path: str) -> Path:
    """A graph file given as a path (taken as it is) or as the name of a shipped graph."""
    path = Path(name_or_path)
    if path.exists() or path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        return path  # a path: load_graph says what is wrong with it, if anything
    shipped = shipped_graphs()
    if name_or_path not in shipped:
        raise Refused(f"{name_or_path!r}: no such file, and no shipped graph of that name "
                      f"(shipped: {', '.join(shipped)})")
    return shipped[name_or_path]
