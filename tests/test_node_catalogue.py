"""The node catalogue: one file per kind, named after it; the example in stream/node.py is true."""
from __future__ import annotations

import inspect
import textwrap
from pathlib import Path

import pytest

import stream.node
from stream.node import Node
from stream.nodes import builtin_kinds, load_kind

NODES = Path(stream.node.__file__).parent / "nodes"


def test_every_module_of_the_catalogue_is_the_kind_of_its_name():
    kinds = builtin_kinds()
    files = {p.stem for p in NODES.glob("*.py")} | {p.stem for p in (NODES / "testing").glob("*.py")}
    assert set(kinds) == files - {"__init__"}
    for kind, module in kinds.items():
        cls = load_kind(kind)
        assert issubclass(cls, Node) and cls.__module__ == module and cls.kind == kind
    assert {"synthetic", "invert", "delay", "integrity", "discard", "malform"} == {
        k for k, m in kinds.items() if m.startswith("stream.nodes.testing.")}


def test_node_docstring_example_is_the_invert_kind():
    doc = stream.node.__doc__
    example = textwrap.dedent(doc[doc.index("    class Invert"):]).strip()
    source = inspect.getsource(load_kind("invert")).strip().replace('"""', "'''")
    assert example == source


@pytest.mark.parametrize("kind, message", [
    ("no_such_kind", "unknown kind 'no_such_kind'"),
    ("os:getcwd", "getcwd is not a Node class"),
    ("stream.message:Message", "Message is not a Node class"),
    ("no_such_module:Thing", "cannot import"),
])
def test_a_kind_that_is_not_a_node_class_is_refused_by_name(kind, message):
    with pytest.raises(KeyError, match=message):
        load_kind(kind)
