"""Weights the project ships (trained with its own code, see the .md next to each file)."""
from __future__ import annotations

from pathlib import Path

WEIGHTS = Path(__file__).resolve().parent / "weights"


def available() -> list[str]:
    return sorted(p.stem for p in WEIGHTS.glob("*.safetensors")) if WEIGHTS.is_dir() else []


def resolve_weights(name_or_path: str) -> Path:
    """A checkpoint path: a file that exists, or the name of a shipped one (e.g. 'starry_night')."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = WEIGHTS / f"{name_or_path}.safetensors"
    if "/" not in name_or_path and shipped.is_file():
        return shipped
    raise FileNotFoundError(f"no checkpoint {name_or_path!r}: not a file, and not a shipped name ({', '.join(available()) or 'none shipped'})")
