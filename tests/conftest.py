"""Shared fixtures: where the real test media lives (skipping cleanly where it does not), one torch thread."""
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


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): on a
    shared, oversubscribed machine two OpenMP threads wait on each other for seconds (a 20 s test took 470 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
