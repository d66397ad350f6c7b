"""Where the real media is (videos, content photos, style images): benchmarks, tests and the
training commands' defaults read it; nothing shipped needs it.

``$STREAM_MEDIA`` where set, else ``shared/media`` beside the checkout this code runs from (the
folder above the one holding ``pyproject.toml``), else ``../shared/media`` from the working folder.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

ENV = "STREAM_MEDIA"


def _checkout() -> Path:
    """The checkout holding this package (an editable install), or the working folder (a wheel)."""
    here = Path(str(resources.files("launch")))
    return next((p for p in here.parents if (p / "pyproject.toml").is_file()), Path.cwd())


def media_root() -> Path:
    """The media folder (it may be absent: callers say so, or skip)."""
    return Path(os.environ[ENV]) if os.environ.get(ENV) else _checkout().parent / "shared" / "media"
