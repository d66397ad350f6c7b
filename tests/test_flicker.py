"""Warping error (Lai et al. 2018) and flow-guided smoothing on real and synthetic motion."""
from __future__ import annotations

import numpy as np
import pytest

from avatars.style.flicker import FlowEstimator, occlusion_mask, warp, warping_error


def _scene(shift: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = (rng.random((40, 60, 3)) * 255).astype(np.uint8)
    import cv2

    base = cv2.GaussianBlur(cv2.resize(base, (240, 160), interpolation=cv2.INTER_CUBIC), (5, 5), 0)
    return np.ascontiguousarray(np.roll(base, shift, axis=1))


def test_flow_and_warp_recover_a_translation():
    a, b = _scene(0), _scene(3)
    flow = FlowEstimator()(a, b)                       # warps a onto b
    inner = (slice(20, -20), slice(20, -20))
    assert np.median(flow[inner][..., 0]) == pytest.approx(-3, abs=0.3)
    err_warped = np.abs(warp(a, flow)[inner].astype(float) - b[inner]).mean()
    assert err_warped < 0.25 * np.abs(a[inner].astype(float) - b[inner]).mean()
    assert occlusion_mask(flow, FlowEstimator()(b, a))[inner].mean() > 0.9


def test_warping_error_separates_stable_from_flickering_outputs():
    frames = [_scene(2 * t) for t in range(4)]
    stable = [f[..., ::-1].copy() for f in frames]     # a "stylization" that moves with the scene
    rng = np.random.default_rng(1)
    flicker = [np.clip(s.astype(int) + rng.integers(-40, 40, s.shape), 0, 255).astype(np.uint8) for s in stable]
    e_stable, e_flicker = warping_error(frames, stable), warping_error(frames, flicker)
    assert e_stable < 0.002 and e_flicker > 5 * e_stable
    with pytest.raises(ValueError):
        warping_error(frames[:1], stable[:1])
