"""Image-quality scores the evaluations share: SSIM (Wang et al. 2004), PSNR, the person's box, and the
high-frequency energy that tells a texture of cloth from per-texel noise (LPIPS: `avatars.core.lpips`).

The SSIM is the Gaussian-window SSIM of Wang et al. and of ``skimage.metrics.structural_similarity``
(``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``, data range 1), averaged over
colour channels; tests/test_metrics.py checks it against skimage.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5,
         region: torch.Tensor | None = None) -> torch.Tensor:
    """SSIM per image of (B, 3, H, W) in [0, 1] (Wang et al. 2004; Gaussian window, channel mean).

    ``region`` (B, H, W) bool: average the SSIM map only over windows centred there (e.g. the
    person's box: the black background otherwise dominates the score).
    """
    g = torch.exp(-((torch.arange(window, dtype=torch.float64) - window // 2) ** 2) / (2 * sigma ** 2))
    g = (g / g.sum()).to(x)
    c = x.shape[1]
    kx, ky = g.view(1, 1, 1, -1).expand(c, 1, 1, -1), g.view(1, 1, -1, 1).expand(c, 1, -1, 1)

    def blur(t):
        return F.conv2d(F.conv2d(t, kx, groups=c), ky, groups=c)  # valid window, as skimage/Wang

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    if region is None:
        return s.mean((1, 2, 3))
    r = window // 2
    w = region[:, None, r:region.shape[1] - r, r:region.shape[2] - r].to(s)
    return (s * w).sum((1, 2, 3)) / (w.sum((1, 2, 3)) * c).clamp_min(1)


def person_box(mask: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """(B, H, W) bool: the bounding box of each mask (> 0.5), padded; all True for an empty mask."""
    out = torch.ones_like(mask, dtype=torch.bool)
    for i, m in enumerate(mask > 0.5):
        ys, xs = torch.nonzero(m, as_tuple=True)
        if len(ys):
            out[i] = False
            out[i, max(int(ys.min()) - pad, 0):int(ys.max()) + pad + 1, max(int(xs.min()) - pad, 0):int(xs.max()) + pad + 1] = True
    return out


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) per image of (B, 3, H, W) in [0, 1]."""
    return -10 * torch.log10((x - y).pow(2).mean((1, 2, 3)).clamp_min(1e-10))


def erode(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """(B, H, W) bool: `mask` (> 0.5) shrunk by `pixels` (a square neighbourhood)."""
    m = (mask > 0.5).float()[:, None]
    return (-F.max_pool2d(-m, 2 * pixels + 1, 1, pixels))[:, 0] > 0.5 if pixels else m[:, 0] > 0.5


def laplacian_energy(x: torch.Tensor, region: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of squared Laplacian, pixel count) of the grey image of (B, 3, H, W) inside ``region``
    (B, H, W) bool, per image: the high-frequency energy whose RMS, render against ground truth, is
    about 1 for a faithful texture and several times that for speckle."""
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=x.dtype, device=x.device)
    lap = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), k.view(1, 1, 3, 3))[:, 0]
    w = region.to(lap)
    return (lap.pow(2) * w).sum((1, 2)), w.sum((1, 2))


def hf_ratio(render: list[tuple[torch.Tensor, torch.Tensor]], truth: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """RMS Laplacian of the renders over that of the ground truth, from `laplacian_energy` of the same
    frames and regions (summed over all frames before the roots are taken)."""
    def rms(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        energy, count = (sum(float(t.sum()) for t in ts) for ts in zip(*parts))
        return (energy / max(count, 1.0)) ** 0.5
    return rms(render) / max(rms(truth), 1e-12)
