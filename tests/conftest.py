"""Shared fixtures: where the real test media lives, skipping cleanly where it does not."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("STREAM_MEDIA", REPO.parent / "shared" / "media"))


@pytest.fixture(scope="session")
def media() -> Path:
    """The real media folder (../shared/media); tests that need it skip where it is absent."""
    if not MEDIA.is_dir():
        pytest.skip(f"real media not found at {MEDIA} (set STREAM_MEDIA or check out ../shared)")
    return MEDIA
