"""One check per layer: the named subspaces it writes hold what its spec says, at every position.

Each layer's spec (``construct/layerN_*.py``, ``LayerSpec.exact``) states the exact value
of every block it writes; ``spec.exact_values`` chains the seven from the tokens. The
model's residual stream after each layer is compared with them (float64, default
sharpness: the leak is ~1e-20, far below rounding). The chained specs themselves are
compared with the analytic prediction of ``superpose.verify`` (separate code), exactly.
"""

import numpy as np
import pytest
from hypothesis import given, settings

from superpose import Example, Prompt, Task, TaskSet, build, prediction_positions, tokenize
from superpose.construct.build import LAYER_SPECS
from superpose.construct.spec import exact_values
from superpose.model import run_tokens
from superpose.verify.analytic import consistent_tasks, predict
from superpose.verify.strategies import cases

TOL = 1e-12


def two_slot_case():
    tasks = TaskSet(vocab_size=4, slots=3, tasks=[
        Task("A", 0, [0, 1, 2, 3]),
        Task("A+C", [0, 2], [[(a + c) % 4 for c in range(4)] for a in range(4)]),
        Task("C-A", [2, 0], [[(c - a) % 4 for a in range(4)] for c in range(4)]),
        Task("A+B+C", [0, 1, 2], np.indices((4, 4, 4)).sum(axis=0) % 4),
    ])
    prompt = Prompt([Example([1, 0, 2], 1), Example([1, 3, 1], 2), Example([2, 2, 2], 0), Example([0, 0, 0], 0),
                     Example([3, 1, 1], 3), Example([1, 2, 3], 3)], query=[2, 1, 3])
    return tasks, prompt


@pytest.fixture(params=["one-slot tasks", "tasks of one, two and three slots"])
def traced(request, two_tasks, mixed_prompt):
    tasks, prompt = (two_tasks, mixed_prompt) if request.param == "one-slot tasks" else two_slot_case()
    model = build(tasks, max_examples=8)
    tokens = tokenize(tasks, prompt)
    _, cache = run_tokens(model, tokens[None, :], dtype="float64", capture=True)
    return model, prompt, tokens, cache


def after(cache, layer):
    return cache[f"layer_{layer}"]["resid_post"][0]


def before(cache, layer):
    return cache["resid_pre"][0] if layer == 1 else cache[f"layer_{layer - 1}"]["resid_post"][0]


@pytest.mark.parametrize("spec", LAYER_SPECS, ids=lambda s: f"layer{s.number}")
def test_layer_changes_only_the_blocks_it_declares(traced, spec):
    model, _, _, cache = traced
    delta = after(cache, spec.number) - before(cache, spec.number)
    for name in model.layout.blocks:
        if name not in spec.writes:
            assert np.all(model.layout.view(delta, name) == 0), f"layer {spec.number} changed {name}"


@pytest.mark.parametrize("spec", LAYER_SPECS, ids=lambda s: f"layer{s.number}")
def test_layer_writes_the_exact_values_its_spec_states(traced, spec):
    model, _, tokens, cache = traced
    written = exact_values(LAYER_SPECS, model.tasks, tokens)[spec.number - 1]
    checked = 0
    for block, per_position in written.items():
        got = model.layout.view(after(cache, spec.number), block)
        for t, want in enumerate(per_position):
            if want is not None:
                assert np.abs(got[t] - np.asarray(want, dtype=float)).max() <= TOL, (spec.number, block, t)
                checked += 1
    assert checked >= len(tokens) // 2


def test_the_fixtures_exercise_every_case(two_tasks, mixed_prompt):
    tasks, prompt = two_slot_case()
    fits = [len(consistent_tasks(tasks, e)) for e in prompt.examples]
    # noise (0), one task, two tasks, and an example that fits all four (0, 0, 0 -> 0)
    assert 0 in fits and 1 in fits and 2 in fits and 4 in fits
    assert sorted({t.arity for t in tasks.tasks}) == [1, 2, 3]


@settings(max_examples=60)
@given(case=cases(max_examples=8))
def test_the_chained_specs_give_the_analytic_prediction_exactly(case):
    """The specs' layer-7 output at the prediction positions equals ``predict(..., exact=True)``."""
    tasks, prompt = case
    out = exact_values(LAYER_SPECS, tasks, tokenize(tasks, prompt))[-1]["out"]
    positions = prediction_positions(tasks, prompt.n_examples)
    assert [list(out[t]) for t in positions] == predict(tasks, prompt, exact=True)


def test_every_layer_does_real_work(two_tasks):
    model = build(two_tasks, max_examples=4)
    for i in range(1, 8):
        layer = model.params[f"layer_{i}"]
        nonzero = sum(np.count_nonzero(a) for part in layer.values() for a in part.values())
        assert nonzero > 0, f"layer {i} is all zeros"
    heads_used = [len(layer.attention.heads) for layer in model.layers]
    # two tasks reading slots 0 and 1: two look-back heads in layers 2 and 6
    assert heads_used == [1, 2, 0, 0, 1, 2, 0] == [spec.n_heads(two_tasks) for spec in LAYER_SPECS]
    assert model.config.n_heads == 2


def test_tasks_reading_one_slot_share_one_head():
    tasks = TaskSet(5, 2, [Task(f"t{k}", 1, [(x + k) % 5 for x in range(5)]) for k in range(4)])
    model = build(tasks, max_examples=4)
    assert [len(layer.attention.heads) for layer in model.layers] == [1, 1, 0, 0, 1, 1, 0]
    assert model.config.n_heads == 1
