"""The error bound: its leak term, that it holds when attention is made soft, and when it gives up."""

import math

import numpy as np
import pytest

from superpose import build, error_bound, predict

from conftest import random_prompt


@pytest.mark.parametrize("beta", [5.0, 10.0, 20.0, 50.0])
def test_leak_term_is_the_soft_attention_formula(beta):
    T = 300
    b = error_bound(K=3, T=T, L=9, beta=beta, dtype="float64")
    if b.holds:
        expected = max(2 * math.exp(-beta) + T * math.exp(-2 * beta), T * math.exp(-beta))
        assert b.leak == pytest.approx(expected, rel=1e-12)
        assert b.total == pytest.approx(b.leak + b.rounding, rel=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("beta", [7.0, 9.0, 12.0, 16.0, 24.0])
def test_error_stays_within_the_bound_as_attention_softens(two_tasks, dtype, beta):
    rng = np.random.default_rng(int(beta))
    model = build(two_tasks, max_examples=40, sharpness=beta)
    prompts = [random_prompt(two_tasks, m, rng) for m in (0, 1, 5, 40)]
    bound = model.error_bound(dtype)
    assert bound.holds
    worst = max(np.abs(out - predict(two_tasks, p)).max()
                for out, p in zip(model.run(prompts, dtype=dtype), prompts))
    assert worst <= bound.total
    if dtype == "float64" and beta <= 9:
        # soft enough that the leak is visible: the bound is not vacuous
        assert worst > 1e-6 and bound.total / worst < 1e3


def test_bound_is_infinite_when_the_snaps_cannot_work():
    b = error_bound(K=2, T=1000, L=10, beta=2.0, dtype="float32")
    assert not b.holds and b.total == math.inf


def test_bound_grows_with_prompt_length_and_shrinks_with_sharpness():
    totals = [error_bound(3, T, 12, 30.0, "float64").total for T in (16, 256, 4096)]
    assert totals == sorted(totals)
    leaks = [error_bound(3, 512, 10, beta, "float64").leak for beta in (10.0, 20.0, 40.0)]
    assert leaks == sorted(leaks, reverse=True)
