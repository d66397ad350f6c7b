"""Perceptual loss terms: Gram normalisation, TV, the Julesz diversity term, style/content losses."""
from __future__ import annotations

import math

import pytest
import torch

from avatars.style.losses import LossConfig, PerceptualLoss, diversity_loss, gram, total_variation


def test_gram_is_normalised_by_size():
    f = torch.ones(1, 4, 5, 6)
    torch.testing.assert_close(gram(f), torch.full((1, 4, 4), 1 / 4))  # sum over 30 pixels / (4*5*6)
    f = torch.randn(2, 3, 7, 9)
    flat = f.reshape(2, 3, -1)
    torch.testing.assert_close(gram(f), flat @ flat.transpose(1, 2) / (3 * 7 * 9))
    # size-independent statistics: tiling an image leaves its Gram matrix unchanged
    torch.testing.assert_close(gram(f.repeat(1, 1, 2, 3)), gram(f), rtol=1e-5, atol=1e-6)


def test_total_variation():
    assert total_variation(torch.full((1, 3, 8, 8), 0.3)).item() == 0
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None]) % 2
    assert total_variation(checker.float().expand(1, 3, 8, 8)).item() == pytest.approx(2.0)


def test_diversity_term_is_negative_log_nearest_neighbour_distance():
    x = torch.zeros(3, 1, 2, 2)
    x[1] += 1.0   # distance to x[0]: 2
    x[2] += 3.0   # nearest is x[1]: distance 4
    want = -(math.log(2) + math.log(2) + math.log(4)) / 3
    assert diversity_loss(x).item() == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError):
        diversity_loss(x[:1])
    # descending it spreads a collapsed batch
    y = (torch.randn(4, 3, 8, 8) * 1e-3).requires_grad_(True)
    before = torch.cdist(y.reshape(4, -1), y.reshape(4, -1)).add(torch.eye(4) * 1e9).min().item()
    opt = torch.optim.SGD([y], lr=1e-4)
    for _ in range(10):
        opt.zero_grad()
        diversity_loss(y).backward()
        opt.step()
    after = torch.cdist(y.reshape(4, -1), y.reshape(4, -1)).add(torch.eye(4) * 1e9).min().item()
    assert after > 2 * before


def test_style_and_content_losses_vanish_at_their_targets(media):
    from avatars.style.training import load_image

    style = load_image(media / "style" / "starry_night.jpg", 64)[..., :48, :48]
    content = load_image(media / "content" / "chicago.jpg", 64)[..., :48, :48]
    loss = PerceptualLoss(LossConfig(tv_weight=0.0), style)
    at_style = loss(style, content)
    at_content = loss(content, content)
    assert at_style["style"].item() < 1e-6 < at_style["content"].item()
    assert at_content["content"].item() < 1e-6 < at_content["style"].item()
    assert set(at_style) == {"style", "content", "total"}
    torch.testing.assert_close(at_style["total"], at_style["style"] + at_style["content"])
