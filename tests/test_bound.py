"""The error bound: its leak term, that it holds when attention is made soft, and when it gives up."""

import math

import numpy as np
import pytest

from superpose import build, error_bound, predict

from conftest import random_prompt


@pytest.mark.parametrize("beta", [5.0, 10.0, 20.0, 50.0])
def test_leak_term_is_the_soft_attention_formula(beta):
    T = 300
    b = error_bound(K=3, T=T, L=9, beta=beta, dtype="float64", arity=1, vocab_size=8)
    assert b.holds   # H0: 3 * 299 * e^{-2 beta} <= 0.041 for beta >= 5
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
    b = error_bound(K=2, T=1000, L=10, beta=2.0, dtype="float32", arity=1, vocab_size=8)
    assert not b.holds and b.total == math.inf


def test_bound_grows_with_prompt_length_and_shrinks_with_sharpness():
    totals = [error_bound(3, T, 12, 30.0, "float64", arity=2, vocab_size=8).total for T in (16, 256, 4096)]
    assert totals == sorted(totals)
    leaks = [error_bound(3, 512, 10, beta, "float64", arity=2, vocab_size=8).leak for beta in (10.0, 20.0, 40.0)]
    assert leaks == sorted(leaks, reverse=True)


def test_positional_cosines_and_sines_are_within_8u_of_exact():
    """Assumption (F3) of construct/bound.py for the positional code and the look-back rotations."""
    import mpmath

    from superpose.construct.positional import positional_table

    mpmath.mp.dps = 50
    u = 2.0 ** -53
    L = 13
    table = positional_table(2 ** L, L)
    worst = 0.0
    for t in list(range(0, 2 ** L, 37)) + [2 ** L - 1]:
        for b in range(L):
            angle = mpmath.pi * t / 2 ** b
            worst = max(worst, abs(float(mpmath.cos(angle) - table[t, b])),
                        abs(float(mpmath.sin(angle) - table[t, L + b])))
    assert worst <= 8 * u

    # look-back weights: beta * cos / sin of pi D / 2^b, for every offset a model can use
    from superpose import Task, TaskSet

    tasks = TaskSet(4, 30, [Task(f"t{a}", a, list(range(4))) for a in (0, 7, 29)])
    model = build(tasks, max_examples=2, sharpness=1.0)
    lay = model.layout
    Lm = lay["pos_cos"].size
    for layer, offsets in ((1, [1]), (2, [31 - a for a in (0, 7, 29)]), (6, [30 - a for a in (0, 7, 29)])):
        W_Q = model.params[f"layer_{layer}"]["attn"]["W_Q"]
        for h, D in enumerate(offsets):
            for b in range(Lm):
                angle = mpmath.pi * D / 2 ** b
                # query dimension 2b reads cos(w t) with weight cos(w D) (see add_look_back)
                got = W_Q[h, lay.at("pos_cos", b), 2 * b], W_Q[h, lay.at("pos_sin", b), 2 * b]
                assert abs(float(mpmath.cos(angle)) - got[0]) <= 8 * u
                assert abs(float(mpmath.sin(angle)) - got[1]) <= 8 * u
