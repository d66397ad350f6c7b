"""Image-quality scores (avatars.core.metrics): SSIM against scikit-image's, PSNR, the person's box."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avatars.core.metrics import erode, hf_ratio, laplacian_energy, person_box, psnr, ssim

skimage_metrics = pytest.importorskip("skimage.metrics", reason="scikit-image is a test dependency")


def _skimage_ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    return skimage_metrics.structural_similarity(
        x.permute(1, 2, 0).double().numpy(), y.permute(1, 2, 0).double().numpy(), channel_axis=2,
        data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


@pytest.mark.parametrize("noise", [0.02, 0.1, 0.3])
def test_ssim_equals_skimage_gaussian_ssim(noise):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 40, 53, generator=g)
    x[1] = torch.linspace(0, 1, 53).expand(3, 40, 53)          # smooth content too, not only noise
    y = (x + noise * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ours = ssim(y, x)
    for i in range(2):
        assert abs(float(ours[i]) - _skimage_ssim(y[i], x[i])) < 1e-5


def test_ssim_identity_ordering_and_region():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g)
    torch.testing.assert_close(ssim(x, x), torch.ones(2))
    noisy = (x + 0.1 * torch.randn(2, 3, 32, 32, generator=g)).clamp(0, 1)
    very = (x + 0.3 * torch.randn(2, 3, 32, 32, generator=g)).clamp(0, 1)
    assert (ssim(noisy, x) > ssim(very, x)).all()
    # a region restricts the average: damage outside it does not count
    y = x.clone()
    y[..., :, 16:] = 0
    region = torch.zeros(2, 32, 32, dtype=torch.bool)
    region[:, :, :8] = True
    torch.testing.assert_close(ssim(y, x, region=region), torch.ones(2))
    assert (ssim(y, x) < 0.8).all()


def test_psnr_of_a_known_error():
    x = torch.zeros(1, 3, 8, 8)
    assert float(psnr(x + 0.1, x)) == pytest.approx(20.0, abs=1e-4)   # MSE 0.01 -> 20 dB
    assert float(psnr(x, x)) == pytest.approx(100.0)                  # clamped at MSE 1e-10


def test_person_box_pads_the_mask_bounding_box():
    mask = torch.zeros(2, 32, 32)
    mask[0, 10:12, 5:8] = 1
    box = person_box(mask, pad=1)
    assert box[0].sum() == 4 * 5 and box[0, 9, 4] and not box[0, 8, 4]
    assert box[1].all()                                              # empty mask: the whole image
    assert np.array_equal(person_box(mask, pad=0)[0].numpy(), mask[0].numpy() > 0.5)


def test_hf_ratio_is_one_for_the_truth_and_large_for_speckle():
    g = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    cloth = (0.5 + 0.2 * torch.sin(12 * xx) * torch.cos(9 * yy)).expand(2, 3, 64, 64)   # smooth folds
    speckled = (cloth + 0.08 * torch.randn(2, 3, 64, 64, generator=g)).clamp(0, 1)
    mask = torch.zeros(2, 64, 64)
    mask[:, 8:56, 8:56] = 1
    inside = erode(mask, 3)
    assert inside.sum() == 2 * 42 * 42          # 3 px off each side of the 48 px square
    truth = [laplacian_energy(cloth, inside)]
    assert hf_ratio(truth, truth) == pytest.approx(1.0)
    assert hf_ratio([laplacian_energy(speckled, inside)], truth) > 4
    blurred = torch.nn.functional.avg_pool2d(cloth, 3, 1, 1, count_include_pad=False)
    assert 0.7 < hf_ratio([laplacian_energy(blurred, inside)], truth) < 1.0   # a slight blur loses a little
