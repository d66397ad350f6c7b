"""Node parameters: each node kind declares a dataclass; graph values are checked against it.

Supported field types: int, float, bool, str, Literal[...], X | None, list[X], tuple[X, ...].
Range and cross-field checks live in the dataclass's `__post_init__`, raising
ValueError with a message; the graph loader adds the file and node to it.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal


@dataclasses.dataclass
class NoParams:
    """For node kinds without parameters."""


class ParamError(ValueError):
    """A parameter value that does not fit its declaration."""


def _coerce(value: Any, hint: Any, name: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, name)
            except ParamError as exc:
                errors.append(str(exc))
        raise ParamError("; ".join(errors))
    if origin is Literal:
        if value not in args:
            raise ParamError(f"{name} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ParamError(f"{name} must be a list, got {value!r}")
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{name}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if hint is bool:
        if not isinstance(value, bool):
            raise ParamError(f"{name} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"{name} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"{name} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ParamError(f"{name} must be a string, got {value!r}")
        return value
    raise ParamError(f"{name}: unsupported parameter type {hint!r}")


def build_params(cls: type, raw: dict[str, Any]) -> Any:
    """An instance of the dataclass `cls` from `raw`, or ParamError naming what is wrong."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ParamError(f"unknown parameter(s) {unknown} (known: {sorted(fields)})")
    values = {}
    for name, f in fields.items():
        if name in raw:
            values[name] = _coerce(raw[name], hints[name], name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ParamError(f"missing required parameter {name!r}")
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        raise ParamError(str(exc)) from None


def describe_params(cls: type) -> list[tuple[str, str, str, str]]:
    """(name, type, default, doc) for each parameter, for `launch nodes`."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        hint = hints[f.name]
        if typing.get_origin(hint) is Literal:
            type_name = "|".join(map(str, typing.get_args(hint)))
        else:
            type_name = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
        rows.append((f.name, type_name, default, f.metadata.get("doc", "")))
    return rows


#: What a string parameter names on disk, so that `run` and `validate` can check it before any node
#: starts (stream.preflight): a file or URL read, a video file or URL read (opened to see that it holds
#: a decodable video), a folder read, a file written, a numbered pattern written.
FileRole = Literal["input", "video", "folder", "output", "pattern"]


def param(default: Any = dataclasses.MISSING, doc: str = "", *, file: FileRole | None = None,
          weights: str | None = None, **kw: Any) -> Any:
    """A dataclass field with a doc string shown by `launch nodes`; `file` says what the value names on
    disk, `weights` the family ("style", "avatar") of the shipped name or checkpoint it names."""
    metadata = {"doc": doc, "file": file, "weights": weights}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata, **kw)
    return dataclasses.field(default=default, metadata=metadata, **kw)
