"""Devices and CUDA streams for neural nodes, so no node hand-rolls stream handling.

    dev = open_device(self.ctx.device)        # in setup()
    with dev:                                   # in process(): work runs on the node's own stream
        out = model(dev.tensor(frame))
    image = dev.to_numpy(out)                   # waits for the stream, copies to host

On CPU every stream operation is a no-op, so the same node code runs on both.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from stream.node import NodeError


def resolve_device(spec: str) -> str:
    """'auto' -> 'cuda:0' when CUDA is usable, else 'cpu'; 'cuda:N' is checked to exist."""
    import torch

    if spec == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        index = int(spec.partition(":")[2] or 0)
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise NodeError(f"device {spec!r} requested but CUDA has {torch.cuda.device_count() if torch.cuda.is_available() else 0} device(s)")
    return spec


@dataclass
class DeviceContext:
    """A torch device plus, on CUDA, the node's own stream."""

    device: Any
    stream: Any = None
    _stack: list = field(default_factory=list, repr=False)

    @property
    def is_cuda(self) -> bool:
        return self.stream is not None

    def __enter__(self) -> "DeviceContext":
        import torch

        ctx = torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()
        ctx.__enter__()
        self._stack.append(ctx)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.pop().__exit__(*exc)

    def tensor(self, array: Any, dtype: Any = None) -> Any:
        """Host array -> tensor on this device (async on CUDA: pinned copy on the node's stream)."""
        import torch

        t = torch.from_numpy(array) if not isinstance(array, torch.Tensor) else array
        if self.stream is not None and t.device.type == "cpu":
            t = t.pin_memory()
        return t.to(self.device, dtype=dtype, non_blocking=self.stream is not None)

    def record(self) -> Any:
        """An event marking the work queued so far on this stream (None on CPU), for in-process consumers."""
        import torch

        if self.stream is None:
            return None
        event = torch.cuda.Event()
        event.record(self.stream)
        return event

    def wait(self, event: Any) -> None:
        """Make this stream wait for another stream's event before reading its tensors."""
        if self.stream is not None and event is not None:
            self.stream.wait_event(event)

    def to_numpy(self, tensor: Any) -> Any:
        """Device tensor -> host numpy array, after this stream's work on it is done."""
        if self.stream is not None:
            self.stream.synchronize()
        return tensor.detach().cpu().numpy()


def open_device(spec: str) -> DeviceContext:
    """The device a node asked for, with its own CUDA stream when it is a GPU."""
    import torch

    name = resolve_device(spec)
    device = torch.device(name)
    stream = torch.cuda.Stream(device=device) if device.type == "cuda" else None
    return DeviceContext(device=device, stream=stream)
