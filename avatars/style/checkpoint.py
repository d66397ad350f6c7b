"""Stylizers in the project's checkpoint format (``avatars.core.checkpoint``): kinds ``stylenet``
and ``texturenet``, rebuilt from the record's ``model`` config."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from avatars.core.checkpoint import load_state, read_record, save_checkpoint
from avatars.style.stylenet import StyleNet, StyleNetConfig
from avatars.style.texturenet import TextureNet, TextureNetConfig

MODEL_KINDS = {"stylenet": (StyleNet, StyleNetConfig), "texturenet": (TextureNet, TextureNetConfig)}


def build_model(kind: str, shape: dict[str, Any]) -> nn.Module:
    """A fresh StyleNet or TextureNet from its kind and its config as a dict."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown stylizer kind {kind!r}; known: {', '.join(MODEL_KINDS)}")
    cls, cfg_cls = MODEL_KINDS[kind]
    shape = {k: tuple(v) if isinstance(v, list) else v for k, v in shape.items()}
    return cls(cfg_cls(**shape))


def model_kind(model: nn.Module) -> str:
    for kind, (cls, _) in MODEL_KINDS.items():
        if type(model) is cls:
            return kind
    raise TypeError(f"not a stylizer: {type(model).__name__}")


def save_stylizer(path: str | Path, model: nn.Module, info: dict[str, Any],
                  optimizer: torch.optim.Optimizer | None = None, run: dict[str, Any] | None = None) -> Path:
    """Write a stylizer (+ resume state and the run's config if given)."""
    record = {"kind": model_kind(model), "model": model.cfg.to_dict(), **info}
    return save_checkpoint(path, model.state_dict(), record, optimizer, run)


def read_style_record(path: str | Path) -> dict[str, Any]:
    """The record of a stylizer file; CheckpointError saying what the file is when it is not one."""
    return read_record(path, "style")


def load_stylizer(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild a stylizer from its file, in eval mode (``read_style_record`` for its record)."""
    record = read_style_record(path)
    model = build_model(record["kind"], record["model"])
    model.load_state_dict(load_state(path))
    return model.to(device).eval()
