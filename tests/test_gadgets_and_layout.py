"""ReLU gadgets against their specifications, the layout, and the d_model formula."""

from fractions import Fraction as F

import numpy as np
import pytest

from superpose import Task, TaskSet, build, d_model_formula
from superpose.construct.gadgets import conjunction, integer_indicator, passthrough, snap
from superpose.construct.layout import BlockSpec, Layout
from superpose.construct.positional import gap_sum, n_frequencies
from superpose.construct.weights import MLPBuilder

GRID = [F(i, 64) for i in range(-128, 5 * 64)]


def test_snap_is_exact_outside_the_middle_band():
    for x in GRID:
        if x <= F(1, 4):
            assert snap()(x=x) == 0
        elif x >= F(3, 4):
            assert snap()(x=x) == 1
        else:
            assert 0 < snap()(x=x) < 1


@pytest.mark.parametrize("j", [1, 2, 3, 4])
def test_integer_indicator(j):
    for x in GRID:
        value = integer_indicator(j)(x=x)
        if abs(x - j) <= F(1, 4):
            assert value == 1
        elif abs(x - j) >= F(3, 4):
            assert value == 0
        else:
            assert 0 <= value <= 1


@pytest.mark.parametrize("n", [2, 3])
def test_conjunction_gates_a_fraction_by_bits(n):
    for p in [F(i, 12) for i in range(13)]:
        for bits in np.ndindex(*(2,) * (n - 1)):
            inputs = {"x1": p, **{f"x{i + 2}": b for i, b in enumerate(bits)}}
            assert conjunction(n)(**inputs) == p * int(np.prod(bits))
            assert conjunction(n, F(1, 3))(**inputs) == p * int(np.prod(bits)) / 3


def test_passthrough_erases_non_negative_values():
    for x in GRID:
        if x >= 0:
            assert x + passthrough(-1)(x=x) == 0


def test_placed_gadget_weights_compute_the_gadget():
    lay = Layout([BlockSpec("x", (), "test", "input"), BlockSpec("y", (), "test", "output")])
    mlp = MLPBuilder(lay)
    mlp.place(integer_indicator(2), "ind", {"x": {0: 1}}, {1: 1})
    w = mlp.dense(mlp.width)
    for x in np.linspace(-1, 4, 101):
        h = np.array([x, 0.0])
        y = np.maximum(h @ w["W_in"] + w["b_in"], 0) @ w["W_out"]
        assert y[1] == pytest.approx(float(integer_indicator(2)(x=F(x))), abs=1e-12)


def test_gap_lemma_numerically_for_all_offsets():
    for L in range(1, 11):
        assert gap_sum(0, L) == pytest.approx(L)
        worst = max(gap_sum(delta, L) for delta in range(-(2 ** L) + 1, 2 ** L) if delta)
        assert worst <= L - 2 + 1e-9


@pytest.mark.parametrize("d,s,K,r,m", [(2, 1, 1, 1, 0), (5, 2, 3, 1, 10), (10, 1, 3, 1, 64), (8, 3, 4, 1, 1023),
                                       (20, 1, 3, 1, 64), (4, 3, 2, 2, 5), (3, 4, 3, 3, 7)])
def test_d_model_formula(d, s, K, r, m):
    # task k reads r consecutive slots starting at k: S = min(s, K + r - 1) distinct slots
    tasks = TaskSet(d, s, [Task(f"t{k}", [(k + j) % s for j in range(r)], np.zeros((d,) * r, dtype=int))
                           for k in range(K)])
    S = min(s, K + r - 1)
    model = build(tasks, max_examples=m)
    T = (m + 1) * (s + 2)
    L = max(1, int(np.ceil(np.log2(T))))
    assert model.config.d_model == d_model_formula(d, S, K, T) == 2 * d + S * d + 5 * K + 2 * L + 5
    assert len(model.residual_labels) == len(set(model.residual_labels)) == model.config.d_model
    assert model.config.n_heads == S and model.config.n_layers == 7


def test_growing_prompt_length_from_2_4_to_2_16_adds_only_logarithmically_many_dimensions():
    d, S, K = 10, 2, 3
    dims = {e: d_model_formula(d, S, K, 2 ** e) for e in range(4, 17)}
    for e in range(4, 17):
        assert dims[e] - dims[4] == 2 * (e - 4)  # two positional dimensions per doubling
    assert dims[16] - dims[4] == 24
    assert n_frequencies(2 ** 16) == 16 and n_frequencies(2 ** 16 + 1) == 17


def test_layout_labels_and_views(two_tasks):
    model = build(two_tasks, max_examples=3)
    lay = model.layout
    assert lay.labels[lay.at("slot", 1, 3)] == "slot[1,3]"   # slot 1 (the second read), token 3
    assert lay.labels[lay.at("token", two_tasks.arrow)] == "token[ARROW]"
    assert lay.labels[lay.at("count_is", 0)] == "count_is[1]"
    v = np.zeros(lay.d_model)
    v[lay.at("mix", 1)] = 0.25
    assert lay.nonzero(v) == {"mix[1]": 0.25}
    assert lay.view(v, "mix").tolist() == [0.0, 0.25]
    for layer in model.layers:
        layer.check()
    hidden = model.hidden_labels(3)
    assert len(hidden) == model.config.d_mlp
    assert hidden[:2] == ["match[0] = snap(match_raw[0])#0", "match[0] = snap(match_raw[0])#1"]
    # layer 3 uses 6K+2 = 14 of max(E + Sd, 6K+2, K^2, 3Sd, E) = max(20, 14, 4, 30, 10) = 30 units
    assert model.config.d_mlp == 30 and hidden[13] != "unused" and hidden[14:] == ["unused"] * 16


def test_slot_labels_name_the_slot_read_not_its_row():
    tasks = TaskSet(3, 4, [Task("a", [3, 1], [[0] * 3] * 3)])
    lay = build(tasks, max_examples=1).layout
    assert [label for label in lay.labels if label.startswith("slot[")] == [
        f"slot[{a},{w}]" for a in (1, 3) for w in range(3)]
