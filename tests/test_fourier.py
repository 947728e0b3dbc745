"""The Fourier features of lesson 9 on hand-made waves: the basis, the energy per frequency, the key frequencies and
the key part of a grid of logits."""

import numpy as np
import pytest

from tinygrok.science import fourier

P = 11


def wave(k: int, phase: np.ndarray, kind=np.cos) -> np.ndarray:
    return kind(2 * np.pi * k * phase / P)


def test_the_basis_is_orthonormal_and_ordered_constant_cos_sin():
    f = fourier.basis(P)
    assert f.shape == (P, P) and np.allclose(f @ f.T, np.eye(P), atol=1e-12)
    n = np.arange(P)
    assert np.allclose(f[0], 1 / np.sqrt(P)) and np.allclose(f[5], np.sqrt(2 / P) * wave(3, n))  # row 5: cos 3


def test_the_energy_of_a_pure_wave_sits_at_its_frequency_and_makes_it_the_only_key():
    n = np.arange(P)
    w = np.stack([3 * wave(2, n) + 7.0, 2 * wave(2, n, np.sin), 0.01 * wave(4, n)], axis=1)  # (p, 3)
    energy = fourier.frequency_energy(w)
    assert energy.shape == ((P - 1) // 2,)
    assert energy[1] == pytest.approx((9 + 4) * P / 2) and energy[3] == pytest.approx(
        1e-4 * P / 2
    )  # the constant 7 not
    assert energy.sum() == pytest.approx(energy[1] + energy[3]) and fourier.key_frequencies(energy) == [2]


def test_the_key_part_of_logits_is_their_waves_at_the_key_frequencies():
    a, b = np.divmod(np.arange(P * P), P)
    phase = (a + b)[:, None] - np.arange(P)  # (p*p, p): a + b - c
    rng = np.random.default_rng(0)
    ours = 2.0 * wave(3, phase) - 0.5 * wave(3, phase, np.sin) + 1.5 * wave(5, phase)
    other = rng.normal(size=(P * P, P))
    other -= fourier.key_logits(other, [3, 5])  # nothing left along the waves of 3 and 5
    logits = ours + other
    assert np.allclose(fourier.key_logits(logits, [3, 5]), ours, atol=1e-10)
    assert np.allclose(fourier.key_logits(logits, [3]), ours - 1.5 * wave(5, phase), atol=1e-10)
    assert np.allclose(fourier.key_logits(logits, [1, 2]), fourier.key_logits(other, [1, 2]), atol=1e-10)
    energy = fourier.logit_energy(ours)  # (2² + 0.5²) and 1.5² times the squared norm of one wave, p³ / 2
    assert energy == pytest.approx([0, 0, 4.25 * P**3 / 2, 0, 2.25 * P**3 / 2], abs=1e-6)
    assert fourier.key_frequencies(energy) == [3]  # 5 holds 35%, under twice its even share (2 / 5)
