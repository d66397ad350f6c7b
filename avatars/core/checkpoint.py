"""The one checkpoint format of every kind of weights: safetensors + a JSON record, no pickle.

``<name>.safetensors`` holds the tensors and, in its header metadata under ``record``, a JSON
record with a versioned top-level ``format`` and the ``kind`` of model (``KINDS``), plus what
the kind needs to rebuild itself (``model``) and how it was made (training config, data named
by file name and hash, step, time, losses). The same JSON is written next to it as
``<name>.json`` for people and tools. Training state for resuming (Adam moments, and the run's
config with the local paths of its data) goes to ``<name>.optim.safetensors``, which shipped
weights omit, so a shipped record names no path of the machine that trained it.

Each family (avatars, styles) builds its models from the record; this module only checks that
a file is what the caller expects and says what it is when it is not.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file

from avatars.core.checkpoint_record import FAMILIES, FORMAT, KINDS, CheckpointError, read_record  # noqa: F401

def optim_path(path: Path) -> Path:
    return path.with_name(path.stem + ".optim.safetensors")


def save_checkpoint(path: str | Path, state: dict[str, torch.Tensor], record: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None, run: dict[str, Any] | None = None,
                    half: bool = False, eight_bit: tuple[str, ...] = ()) -> Path:
    """Write tensors + record (header and side-car JSON), atomically; + resume state if given.

    ``record`` must hold ``kind``; ``run`` (the config with local paths) goes only to the resume
    file; ``half`` stores fp16 (shipping: half the size; loading casts back to fp32); the tensors
    named in ``eight_bit`` hold values in [0, 1] (images: textures) and are stored as uint8
    levels of 1/255, what an 8-bit image can show anyway (a quarter of fp32).
    """
    if record.get("kind") not in KINDS:
        raise CheckpointError(f"record kind {record.get('kind')!r} unknown (known: {', '.join(KINDS)})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"format": FORMAT, **record}, indent=1)
    dtype = torch.float16 if half else None
    tensors = {k: v.detach().to(dtype or v.dtype).contiguous().cpu() for k, v in state.items()}
    for k in eight_bit:
        v = state[k].detach().float()
        if v.min() < 0 or v.max() > 1:
            raise CheckpointError(f"{k}: values outside [0, 1] cannot be stored in 8 bits")
        tensors[k] = (v * 255).round().to(torch.uint8).contiguous().cpu()
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, tmp, metadata={"record": text})
    tmp.replace(path)  # atomic: an interrupted save never leaves a torn checkpoint
    path.with_suffix(".json").write_text(text + "\n")
    if optimizer is not None:
        opt = optimizer.state_dict()
        moments = {f"{i}.{k}": v.contiguous().cpu() for i, s in opt["state"].items() for k, v in s.items()}
        save_file(moments, optim_path(path), metadata={"param_groups": json.dumps(opt["param_groups"]),
                                                        "run": json.dumps(run or {})})
    return path


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, as fp32 where they were stored in half precision or in 8 bits
    (uint8: levels of 1/255, ``save_checkpoint``'s ``eight_bit``)."""
    def fp32(v: torch.Tensor) -> torch.Tensor:
        return v.float() / 255 if v.dtype == torch.uint8 else v.float() if v.dtype == torch.float16 else v
    return {k: fp32(v) for k, v in load_file(str(path), device="cpu").items()}


def read_run(path: str | Path) -> dict[str, Any] | None:
    """The run config saved for resuming (local paths included), or None without resume state."""
    p = optim_path(Path(path))
    if not p.is_file():
        return None
    with safe_open(str(p), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("run", "{}")) or None


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


def describe_data(path: str | Path) -> dict[str, Any]:
    """A file or folder of training data named without the machine's path: its name, size and hash."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(path) if path.is_dir() else p.name).encode())
        digest.update(hashlib.sha256(p.read_bytes()).digest())
    return {"name": path.name, "files": len(files), "sha256": digest.hexdigest()}
