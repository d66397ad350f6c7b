"""Stylizer checkpoints: safetensors weights + JSON config, no pickle anywhere.

``<name>.safetensors`` holds the model weights and, in its header metadata, the JSON config
(model kind and shape, training config, step, losses), so one file is enough to rebuild the
model. The same JSON is written next to it as ``<name>.json`` for people and tools. Training
state for resuming (Adam moments) goes to ``<name>.optim.safetensors``, which shipped styles omit.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, safe_open, save_file

from .stylenet import StyleNet, StyleNetConfig
from .texturenet import TextureNet, TextureNetConfig

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


def optim_path(path: Path) -> Path:
    return path.with_name(path.stem + ".optim.safetensors")


def save_checkpoint(path: str | Path, model: nn.Module, info: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None) -> Path:
    """Write weights (+ config in the header and a side-car JSON; + optimizer state if given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"kind": model_kind(model), "model": model.cfg.to_dict(), **info}
    text = json.dumps(meta, indent=1)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, tmp, metadata={"config": text})
    tmp.replace(path)  # atomic: an interrupted save never leaves a torn checkpoint
    path.with_suffix(".json").write_text(text + "\n")
    if optimizer is not None:
        opt = optimizer.state_dict()
        tensors = {f"{i}.{k}": v.contiguous().cpu() for i, s in opt["state"].items() for k, v in s.items()}
        save_file(tensors, optim_path(path), metadata={"param_groups": json.dumps(opt["param_groups"])})
    return path


def read_config(path: str | Path) -> dict[str, Any]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{path} is not a stylizer checkpoint (no config in its safetensors header)")
    return json.loads(meta["config"])


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from a checkpoint; returns (model in eval mode, config dict)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    meta = read_config(path)
    model = build_model(meta["kind"], meta["model"])
    model.load_state_dict(load_file(str(path), device="cpu"))
    return model.to(device).eval(), meta


def load_optimizer_state(path: str | Path, optimizer: torch.optim.Optimizer) -> bool:
    """Restore Adam state saved with a checkpoint; False where there is none."""
    p = optim_path(Path(path))
    if not p.is_file():
        return False
    with safe_open(str(p), framework="pt") as f:
        groups = json.loads(f.metadata()["param_groups"])
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_file(str(p)).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return True
