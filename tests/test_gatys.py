"""Gatys optimisation: it lowers the loss, stops at a target, synthesises textures of any size."""
from __future__ import annotations

import pytest

from avatars.style.gatys import GatysConfig, stylize, synthesize_texture
from avatars.style.losses import LossConfig, PerceptualLoss
from avatars.style.training import load_image


@pytest.fixture(scope="module")
def loss(media):
    return PerceptualLoss(LossConfig(tv_weight=0.0), load_image(media / "style" / "starry_night.jpg", 64))


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_style_transfer_lowers_the_loss(loss, media, optimizer):
    content = load_image(media / "content" / "tubingen.jpg", 48)
    r = stylize(loss, content, GatysConfig(steps=8, optimizer=optimizer))
    assert r.image.shape == content.shape and 0 <= r.image.min() and r.image.max() <= 1
    assert r.history[-1][1] < 0.8 * r.history[0][1]
    assert [t for t, _ in r.history] == sorted(t for t, _ in r.history)


def test_texture_synthesis_and_target_stop(loss):
    r = synthesize_texture(loss, (40, 56), GatysConfig(steps=30, target_loss=float("inf")))
    assert r.image.shape == (1, 3, 40, 56)
    assert len(r.history) == 1 and r.reached_target_s is not None
    with pytest.raises(ValueError):
        synthesize_texture(loss, (8, 8), GatysConfig(optimizer="sgd"))
