"""What a checkpoint says about itself (its format, kind and family), read without torch.

The record lives in the safetensors header (`avatars.core.checkpoint`); reading it needs no tensor,
so the command line's checks (preflight, weights by name) stay free of torch's import (seconds of
start-up before a graph's first process starts: 13 s on a loaded 2-core machine).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

FORMAT = "avatars.checkpoint/2"

#: kind -> (family, what it is, in words)
KINDS: dict[str, tuple[str, str]] = {
    "textured": ("avatar", "a textured avatar"),
    "direct": ("avatar", "a direct-translation avatar"),
    "stylenet": ("style", "a StyleNet stylizer"),
    "texturenet": ("style", "a TextureNet stylizer"),
    "decoder": ("universal", "a universal-style decoder"),
    "compact": ("universal", "a compact universal-style encoder and decoders"),
}
FAMILIES = {"avatar": "an avatar", "style": "a style", "universal": "a universal-style decoder"}


class CheckpointError(ValueError):
    """A file that is not a checkpoint, or not of the expected family; the message says which."""


def read_record(path: str | Path, family: str | None = None) -> dict[str, Any]:
    """The record of a checkpoint; CheckpointError naming the file when it is not one of ``family``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
        record = json.loads(meta["record"])
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a checkpoint of this project ({type(exc).__name__}: {exc})") from None
    if record.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {record.get('format')!r}, this code reads {FORMAT!r}")
    kind = record.get("kind")
    if kind not in KINDS:
        raise CheckpointError(f"{path}: unknown kind {kind!r} (known: {', '.join(KINDS)})")
    if family is not None and KINDS[kind][0] != family:
        raise CheckpointError(f"{path.stem} is {KINDS[kind][1]}, not {FAMILIES[family]} ({path})")
    return record
