"""Weights the project ships, one namespace per family (trained with its own code: see the .md
next to each file): ``weights/avatar/<name>.safetensors``, ``weights/style/<name>.safetensors``.

A name resolves only inside its own family, so a style name never finds an avatar, and an
error lists only the names of the family asked for. Besides the shipped weights, a name finds the
user's own (``make-avatar`` stores there): ``<user folder>/<family>/<name>.safetensors``, the user
folder being ``$NEURAL_STREAM_HOME``, else ``$XDG_DATA_HOME/neural-stream``, else
``~/.local/share/neural-stream`` (outside the package: a reinstall keeps them). A shipped name wins.
"""
from __future__ import annotations

import os
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


def user_folder(family: str) -> Path:
    """Where the user's own weights of ``family`` live (see the module docstring)."""
    home = os.environ.get("NEURAL_STREAM_HOME")
    if not home:
        home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "neural-stream"
    return Path(home) / family


def user_cache(name: str) -> Path:
    """Where the project keeps what it derives and can remake (converted LPIPS weights, compiled kernels):
    ``$NEURAL_STREAM_CACHE/<name>``, else ``~/.cache/neural-stream/<name>``."""
    return Path(os.environ.get("NEURAL_STREAM_CACHE") or Path.home() / ".cache" / "neural-stream") / name


def user_names(family: str) -> list[str]:
    """Names of the user's own weights of ``family``."""
    folder = user_folder(family)
    return sorted(p.stem for p in folder.glob("*.safetensors")) if folder.is_dir() else []


def available(family: str) -> list[str]:
    """Shipped names of a family ('avatar' or 'style')."""
    folder = WEIGHTS / family
    return sorted(p.stem for p in folder.glob("*.safetensors")) if folder.is_dir() else []


def resolve_weights(name_or_path: str | Path, family: str) -> Path:
    """A checkpoint path: a file that exists, or the shipped name of one of ``family``.

    FileNotFoundError listing the family's names; CheckpointError where the name is another family's.
    """
    from avatars.core.checkpoint_record import FAMILIES, read_record

    if family not in FAMILIES:
        raise ValueError(f"unknown weights family {family!r} (known: {', '.join(FAMILIES)})")
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = str(name_or_path)
    if "/" not in name:
        if (WEIGHTS / family / f"{name}.safetensors").is_file():
            return WEIGHTS / family / f"{name}.safetensors"
        if (user_folder(family) / f"{name}.safetensors").is_file():
            return user_folder(family) / f"{name}.safetensors"
        for other in FAMILIES:
            candidate = WEIGHTS / other / f"{name}.safetensors"
            if other != family and candidate.is_file():
                read_record(candidate, family)  # raises: "<name> is a textured avatar, not a style"
    yours = f"; yours: {', '.join(user_names(family))}" if user_names(family) else ""
    raise FileNotFoundError(f"no {family} checkpoint {name!r}: not a file, and not a shipped {family} "
                            f"({', '.join(available(family)) or 'none shipped'}{yours})")
