"""Looking inside a model of addition mod p: the Fourier features of Nanda et al. 2023 ("Progress measures for
grokking via mechanistic interpretability"), adapted to this model.

A function f on Z_p = {0, ..., p-1} is a sum of waves: a constant, and cos(w_k n), sin(w_k n) with w_k = 2πk/p for
the frequencies k = 1, ..., (p-1)/2. Nanda et al. found that a transformer trained on a + b mod p embeds each
number by a few such waves, and computes its logit for an answer c from cos(w_k (a + b - c)), which peaks at
c = a + b, for a few *key frequencies* k. Two progress measures follow:
- the *restricted loss*: the loss with the logits cut down to their parts along cos and sin of w_k (a + b - c) for
  the key frequencies only (on every pair);
- the *excluded loss*: the loss with those parts taken out (on the training pairs).

Adapted, and cruder than Nanda et al.'s: this model reads [a, b] and answers at position 0 (docs/paper.md §2); the
parts are taken of the logits themselves, one coefficient for each of cos and sin of w_k (a + b - c) (Nanda et
al. restrict the MLP's neurons and remove, per answer c, the waves in a + b); no per-answer mean is added back;
and the key frequencies are those holding more than twice their even share of the logits' energy in such waves at
the end of the run.
"""

from __future__ import annotations

import functools

import numpy as np

from tinygrok.science.data import all_pairs


def basis(p: int) -> np.ndarray:
    """(p, p): orthonormal rows, the constant then cos(w_k n) and sin(w_k n) for k = 1, ..., (p-1)/2 (p odd)."""
    n = np.arange(p)
    waves = [np.full(p, 1 / np.sqrt(p))]
    for k in range(1, (p - 1) // 2 + 1):
        waves += [np.sqrt(2 / p) * np.cos(2 * np.pi * k * n / p), np.sqrt(2 / p) * np.sin(2 * np.pi * k * n / p)]
    return np.array(waves)


def frequency_energy(w: np.ndarray) -> np.ndarray:
    """((p-1)/2,): the energy of each frequency k = 1, 2, ... in w (p, d), whose row n belongs to the number n:
    the squared norm of its cos and sin components (the constant left out)."""
    components = basis(len(w)) @ w  # (p, d): row 0 the constant, then cos 1, sin 1, cos 2, ...
    per_wave = np.sum(components[1:] ** 2, axis=1)  # (p - 1,)
    return per_wave[0::2] + per_wave[1::2]


def key_frequencies(energy: np.ndarray) -> list[int]:
    """The frequencies (from 1) holding more than twice their even share of the energy."""
    share = energy / energy.sum()
    return [int(k) + 1 for k in np.flatnonzero(share > 2 / len(energy))]


def logit_energy(logits: np.ndarray) -> np.ndarray:
    """((p-1)/2,): for each frequency k, the squared norm of the logits' part along cos and sin of w_k (a + b - c)."""
    return np.array([np.sum(key_logits(logits, [k]) ** 2) for k in range(1, logits.shape[1] // 2 + 1)])


def key_logits(logits: np.ndarray, keys: list[int]) -> np.ndarray:
    """The part of the logits (p*p, p) of every pair (a, b), in data.all_pairs' order, along cos and sin of
    w_k (a + b - c) for k in keys. Over the whole grid of (a, b, c) these waves are orthogonal, so the part along
    each is its own projection."""
    p = logits.shape[1]
    phase = _phase(p)  # (p*p, p)
    kept = np.zeros(logits.shape)
    for k in keys:
        for wave in (np.cos(2 * np.pi * k * phase / p), np.sin(2 * np.pi * k * phase / p)):  # (p*p, p) each
            kept += np.sum(logits * wave) / np.sum(wave * wave) * wave
    return kept


@functools.cache
def _phase(p: int) -> np.ndarray:
    """(p*p, p): a + b - c for every pair (a, b) of all_pairs("add", p) and every answer c (read-only)."""
    pairs, _ = all_pairs("add", p)  # (p*p, 2)
    phase = pairs.sum(axis=1)[:, None] - np.arange(p)
    phase.flags.writeable = False
    return phase
