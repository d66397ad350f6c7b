"""The catalogue of built-in node kinds: one module per kind, named after the kind.

    stream/nodes/<kind>.py           production kinds (capture, pose, avatar, stylize, encoders, ...)
    stream/nodes/testing/<kind>.py   test and debug kinds (synthetic, invert, delay, integrity, discard)

A kind's module defines exactly one ``Node`` subclass; that class is the kind. Modules are
imported only when a graph uses them, so listing kinds stays cheap. Helpers the kinds share
live outside this folder (``stream.media``, ``stream.keypoints``, ``stream.frames``).
A graph may also name a class of an installed package as ``kind: package.module:ClassName``.
Loading a graph imports that module, so a graph file runs code: such kinds resolve only from
installed distributions and from folders the user put on PYTHONPATH, never from the working
folder or the graph's own folder (a downloaded graph next to a ``evil.py`` must not run it).
See docs/writing-a-node.md.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import pkgutil
import sys
from pathlib import Path

from stream.node import Node

PACKAGES = ("stream.nodes", "stream.nodes.testing")


def builtin_kinds() -> dict[str, str]:
    """kind -> module, from the file names of the catalogue's folders."""
    kinds: dict[str, str] = {}
    for package in PACKAGES:
        folder = Path(__file__).parent.joinpath(*package.split(".")[2:])
        for info in pkgutil.iter_modules([str(folder)]):
            if not info.ispkg:
                kinds[info.name] = f"{package}.{info.name}"
    return kinds


def _node_class(module: object, where: str) -> type[Node]:
    classes = [c for c in vars(module).values()
               if isinstance(c, type) and issubclass(c, Node) and c.__module__ == module.__name__]
    if len(classes) != 1:
        raise KeyError(f"{where}: a kind's module defines exactly one Node class, found {len(classes)}")
    return classes[0]


def _untrusted_origin(module: str) -> Path | None:
    """Where `module` would be imported from when that is neither an installed distribution nor a
    PYTHONPATH folder (see the module docstring); None when it is one of those, or does not exist."""
    top = module.partition(".")[0]
    if top in sys.stdlib_module_names or top in importlib.metadata.packages_distributions():
        return None
    try:
        spec = importlib.util.find_spec(top)  # finds, does not import
    except (ImportError, ValueError):
        return None
    if spec is None or (spec.origin is None and not spec.submodule_search_locations):
        return None
    where = Path(spec.origin or next(iter(spec.submodule_search_locations))).resolve()
    explicit = [Path(p).resolve() for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return None if any(where.is_relative_to(folder) for folder in explicit) else where


def load_kind(kind: str) -> type[Node]:
    """The node class for ``kind``; KeyError with the known kinds when there is none."""
    builtin = builtin_kinds()
    if kind in builtin:
        cls = _node_class(importlib.import_module(builtin[kind]), builtin[kind])
    elif ":" in kind:
        module, _, attr = kind.partition(":")
        if (origin := _untrusted_origin(module)) is not None:
            raise KeyError(f"kind {kind!r}: module {module!r} would come from {origin}, which is not an installed "
                           f"package or a PYTHONPATH folder (a graph file runs the code its kinds name)")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise KeyError(f"kind {kind!r}: cannot import {kind}: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, Node)):
            raise KeyError(f"kind {kind!r}: {attr} is not a Node class")
    else:
        raise KeyError(f"unknown kind {kind!r} (known: {', '.join(sorted(builtin))}; or module:Class)")
    cls.kind = kind
    return cls
