"""AdamW and clipping against an independent, element-by-element implementation written out here."""

import math

import numpy as np
import pytest

from tinygrok.science.optim import AdamWState, adamw_step, clip_by_global_norm

HP = dict(lr=0.01, beta1=0.9, beta2=0.98, eps=1e-8, weight_decay=1.0)


def reference_adamw(theta, grads, lr, beta1, beta2, eps, weight_decay):
    """Loshchilov & Hutter's AdamW with bias correction, one scalar at a time, in Python floats."""
    theta = [float(x) for x in theta]
    m, v = [0.0] * len(theta), [0.0] * len(theta)
    for t, g in enumerate(grads, start=1):
        for i, gi in enumerate(g):
            gi = float(gi)
            theta[i] -= lr * weight_decay * theta[i]  # decoupled: not added to the gradient
            m[i] = beta1 * m[i] + (1 - beta1) * gi
            v[i] = beta2 * v[i] + (1 - beta2) * gi * gi
            m_hat, v_hat = m[i] / (1 - beta1**t), v[i] / (1 - beta2**t)
            theta[i] -= lr * m_hat / (math.sqrt(v_hat) + eps)
    return np.array(theta), np.array(m), np.array(v)


def test_adamw_matches_reference_over_several_steps():
    rng = np.random.default_rng(0)
    theta0 = rng.standard_normal(7)
    grads = [rng.standard_normal(7) * s for s in (1.0, 0.1, 3.0, 1e-3, 0.5)]
    theta, state = theta0, AdamWState.zeros_like(theta0)
    for g in grads:
        theta, state = adamw_step(theta, g, state, **HP)
    ref_theta, ref_m, ref_v = reference_adamw(theta0, grads, **HP)
    assert state.t == 5
    np.testing.assert_allclose(theta, ref_theta, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(state.m, ref_m, rtol=1e-13)
    np.testing.assert_allclose(state.v, ref_v, rtol=1e-13)


def test_first_step_moves_each_coordinate_by_lr_after_decay():
    """With bias correction, step 1 is theta*(1 - lr*wd) - lr*sign(g) (up to eps): a closed form."""
    theta, g = np.array([1.0, -2.0, 0.5]), np.array([0.3, -1e-3, 7.0])
    new, _ = adamw_step(theta, g, AdamWState.zeros_like(theta), **HP)
    np.testing.assert_allclose(new, theta * (1 - 0.01) - 0.01 * np.sign(g), rtol=1e-6)


def test_decay_only_with_zero_gradient_and_float32_kept():
    theta = np.array([1.0, -3.0], dtype=np.float32)
    new, state = adamw_step(theta, np.zeros(2, np.float32), AdamWState.zeros_like(theta), **HP)
    np.testing.assert_allclose(new, theta * (1 - 0.01))
    assert new.dtype == state.m.dtype == state.v.dtype == np.float32


def test_clip_by_global_norm():
    g = np.array([3.0, 4.0])  # norm 5
    clipped, norm = clip_by_global_norm(g, 1.0)
    assert norm == 5.0
    np.testing.assert_allclose(clipped, g / (5.0 + 1e-6))  # torch's clip_grad_norm_ coefficient
    small, _ = clip_by_global_norm(np.array([0.3, 0.4]), 1.0)
    np.testing.assert_array_equal(small, [0.3, 0.4])
    off, _ = clip_by_global_norm(g, 0.0)
    np.testing.assert_array_equal(off, g)
    assert clip_by_global_norm(g.astype(np.float32), 1.0)[0].dtype == np.float32


@pytest.mark.parametrize("norm", [0.5, 2.0, 100.0])
def test_clipped_norm_never_exceeds_threshold(norm):
    g = np.random.default_rng(1).standard_normal(50)
    g *= norm / np.linalg.norm(g)
    assert np.linalg.norm(clip_by_global_norm(g, 1.0)[0]) <= 1.0 + 1e-12
