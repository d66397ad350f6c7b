"""Shared fixtures: where the real test media lives, skipping cleanly where it does not."""
from __future__ import annotations

from pathlib import Path

import pytest

from launch.media import ENV, media_root


@pytest.fixture(scope="session")
def media() -> Path:
    """The real media folder (`launch.media`); tests that need it skip where it is absent."""
    folder = media_root()
    if not folder.is_dir():
        pytest.skip(f"real media not found at {folder} (set {ENV} or check out ../shared)")
    return folder
