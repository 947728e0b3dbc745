"""The task: operations, split sizes and reproducibility, the batch sampler's independent stream."""

import random

import numpy as np
import pytest

from tinygrok.science.config import Config, ConfigError
from tinygrok.science.data import (
    OPERATIONS,
    all_pairs,
    is_prime,
    make_dataset,
    pair_count,
    sample_batch,
    split_sizes,
    stream,
)


@pytest.mark.parametrize(
    "op,a,b,expected",
    [
        ("add", 90, 10, 3),
        ("sub", 3, 10, 90),
        ("mul", 50, 2, 3),
        ("x2_y2", 10, 1, 4),
        ("x2_xy_y2", 10, 1, 14),
        ("x3_xy", 5, 3, 43),
    ],
)
def test_operations_mod_97(op, a, b, expected):
    x, y = all_pairs(op, 97)
    assert y[np.flatnonzero((x[:, 0] == a) & (x[:, 1] == b))[0]] == expected


def test_pairs_are_row_major_and_mul_excludes_zero():
    x, _ = all_pairs("add", 97)
    assert len(x) == 9409 and x[:3].tolist() == [[0, 0], [0, 1], [0, 2]]
    xm, _ = all_pairs("mul", 97)
    assert len(xm) == 9216 and xm.min() == 1 and xm[0].tolist() == [1, 1]


def test_split_sizes_and_python_shuffle():
    data = make_dataset("add", 97, 0.5, 42)
    assert (len(data.train_x), len(data.test_x)) == (4704, 4705)
    mul = make_dataset("mul", 97, 0.5, 42)
    assert (len(mul.train_x), len(mul.test_x)) == (4608, 4608)
    pairs = [(a, b) for a in range(97) for b in range(97)]
    random.Random(42).shuffle(pairs)  # the reference's split (docs/paper.md §1.3)
    assert [tuple(p) for p in data.train_x[:5]] == pairs[:5]
    assert len({tuple(p) for p in data.train_x} & {tuple(p) for p in data.test_x}) == 0
    for op in OPERATIONS:  # what Config checks a split by, without building it
        assert pair_count(op, 7) == len(all_pairs(op, 7)[0])
        split = make_dataset(op, 7, 0.3, 0)
        assert split_sizes(op, 7, 0.3) == (len(split.train_x), len(split.test_x))


def test_batches_with_replacement_from_their_own_stream():
    data = make_dataset("add", 97, 0.5, 1)
    x1, y1 = sample_batch(data, 512, stream(1, "batches"))
    x2, _ = sample_batch(data, 512, stream(1, "batches"))
    assert np.array_equal(x1, x2) and x1.shape == (512, 2)
    assert len({tuple(p) for p in x1}) < 512  # duplicates: with replacement (P(no dup) ~ 1e-12)
    assert not np.array_equal(stream(1, "batches").integers(0, 10**9, 4), stream(1, "probes").integers(0, 10**9, 4))
    train = {tuple(p) for p in data.train_x}
    assert all(tuple(p) in train for p in x1)
    np.testing.assert_array_equal(y1, (x1[:, 0] + x1[:, 1]) % 97)


def test_is_prime():
    assert [n for n in range(30) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    assert set(OPERATIONS) == {"add", "sub", "mul", "x2_y2", "x2_xy_y2", "x3_xy"}


@pytest.mark.parametrize(
    "bad,word",
    [
        (dict(op="div"), "--op"),
        (dict(p=96), "--p"),
        (dict(train_frac=1.0), "--train-frac"),
        (dict(train_frac=0.0), "--train-frac"),
        (dict(p=3, train_frac=0.1), r"--train-frac=0.1 is invalid: .* \(add mod 3 has 9 pairs\)"),  # none to train on
        (dict(op="mul", p=2), "--train-frac"),  # 1 pair (mul leaves out 0): none to train on
        (dict(train_frac=float("nan")), "--train-frac"),
        (dict(train_frac=float("inf")), "--train-frac"),
        (dict(eval_every=0, probe_every=100), "--eval-every"),
        (dict(eval_every=100, theta_every=150), r"--theta-every=150 is invalid: .* multiple of eval-every \(100\)"),
        (dict(lr=-1e-3), "--lr"),
        (dict(hook="project", max_steps=499), r"--max-steps=499 ends before the hook first acts \(update 500\)"),
        (dict(hook="noise:start=501", max_steps=520), r"first acts \(update 550\)"),  # every 50 from 501
        (dict(hook="penalty:start=501", max_steps=505), r"first acts \(update 510\)"),  # every 10th from 501
        (dict(hook="weight_noise", max_steps=10), r"first acts \(update 50\)"),  # every 50th, from the first
        (dict(hook="kick:start=0"), r"start=0 is not allowed: start is a whole number >= 1"),  # update 0 never comes
        (dict(d_model=130), "--n-heads"),
        (dict(dtype="float16"), "--dtype"),
    ],
)
def test_config_refuses_bad_values_naming_the_option(bad, word):
    with pytest.raises(ConfigError, match=word):
        Config(**bad)


def test_a_run_that_reaches_its_hooks_first_action_is_accepted():
    for hook, steps in (("noise:start=501", 550), ("penalty:start=501", 510), ("weight_noise", 50), ("l2", 1)):
        assert Config(hook=hook, max_steps=steps).max_steps == steps
