"""Which floating-point precision runs fast on a device: the switch behind every "fast path".

bf16 autocast pays off only where the hardware computes in bf16: GPUs with bf16 support, and CPUs
whose oneDNN has native bf16 kernels (AVX-512-BF16 or AMX). Elsewhere (an AVX2 CPU, such as
many laptops and some of this project's machines) autocast emulates bf16 with conversions and is
slower than fp32: measured on a 2-core AVX2 EPYC, the shipped stylizer at 256x256 took 0.86 s a
frame in bf16 against 0.14 s in fp32, the shipped avatar 0.33 s against 0.09 s. So the default
(`None`) asks the hardware; `True` / `False` force it (accuracy checks, benchmarks).
"""
from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=None)
def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether bf16 arithmetic is native (so faster than fp32) on `device`."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def use_bf16(setting: bool | None, device: str | torch.device) -> bool:
    """`setting` where it is given; otherwise whether the hardware runs bf16 natively."""
    return native_bf16(str(torch.device(device))) if setting is None else bool(setting)
