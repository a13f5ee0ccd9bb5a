"""One test per layer: the named subspaces it writes hold what its stage should compute.

The expected values are computed here from the prompt itself (which positions are
answers, which tasks each example fits, ...), not from the construction.
"""

import numpy as np
import pytest

from superpose import build, prediction_positions, tokenize
from superpose.model import run_tokens
from superpose.verify.analytic import consistent_tasks, task_mixture

TOL = 1e-12  # float64, default sharpness: the leak is ~1e-20, far below rounding


@pytest.fixture
def traced(two_tasks, mixed_prompt):
    model = build(two_tasks, max_examples=8)
    tokens = tokenize(two_tasks, mixed_prompt)
    _, cache = run_tokens(model, tokens[None, :], dtype="float64", capture=True)
    return model, mixed_prompt, tokens, cache


def after(cache, layer):
    return cache[f"layer_{layer}"]["resid_post"][0]


def before(cache, layer):
    return cache["resid_pre"][0] if layer == 1 else cache[f"layer_{layer - 1}"]["resid_post"][0]


def answer_positions(tasks, prompt):
    return [i * tasks.example_length + tasks.slots + 2 for i in range(prompt.n_examples)]


def expected_per_position(tasks, prompt, T, fill):
    """An array [T, ...] that is zero except at answer positions, where fill(example) is written."""
    rows = [None] * T
    for pos, ex in zip(answer_positions(tasks, prompt), prompt.examples):
        rows[pos] = fill(ex)
    shape = np.shape(next(r for r in rows if r is not None))
    return np.array([np.zeros(shape) if r is None else r for r in rows], dtype=float)


@pytest.mark.parametrize("layer", range(1, 8))
def test_layer_changes_only_the_blocks_it_declares(traced, layer):
    model, _, _, cache = traced
    delta = after(cache, layer) - before(cache, layer)
    declared = model.layers[layer - 1].writes
    for name in model.layout.blocks:
        if name not in declared:
            assert np.all(model.layout.view(delta, name) == 0), f"layer {layer} changed {name}"


def test_layer1_marks_exactly_the_answer_positions(traced):
    model, prompt, tokens, cache = traced
    expected = np.zeros(len(tokens))
    expected[1:] = tokens[:-1] == model.tasks.arrow
    assert np.abs(model.layout.view(after(cache, 1), "is_answer") - expected).max() <= TOL
    assert np.flatnonzero(expected).tolist() == answer_positions(model.tasks, prompt)


def test_layer2_checks_each_example_against_each_task_and_erases_its_scratch(traced):
    model, prompt, tokens, cache = traced
    tasks = model.tasks
    fits = lambda ex: [float(k in consistent_tasks(tasks, ex)) for k in range(tasks.K)]  # noqa: E731
    expected = expected_per_position(tasks, prompt, len(tokens), fits)
    assert np.abs(model.layout.view(after(cache, 2), "match_raw") - expected).max() <= TOL
    assert np.all(model.layout.view(after(cache, 2), "fetch") == 0)


def test_layer3_snaps_matches_and_counts_consistent_tasks(traced):
    model, prompt, tokens, cache = traced
    tasks, lay, h = model.tasks, model.layout, after(cache, 3)
    fits = lambda ex: [float(k in consistent_tasks(tasks, ex)) for k in range(tasks.K)]  # noqa: E731
    count = lambda ex: [float(len(consistent_tasks(tasks, ex)) == j) for j in range(1, tasks.K + 1)]  # noqa: E731
    valid = lambda ex: float(len(consistent_tasks(tasks, ex)) >= 1)  # noqa: E731
    T = len(tokens)
    assert np.abs(lay.view(h, "match") - expected_per_position(tasks, prompt, T, fits)).max() <= TOL
    assert np.abs(lay.view(h, "count_is") - expected_per_position(tasks, prompt, T, count)).max() <= TOL
    assert np.abs(lay.view(h, "valid") - expected_per_position(tasks, prompt, T, valid)).max() <= TOL
    # the fixture has an ambiguous example (count 2) and a noise example (valid 0)
    assert lay.view(h, "count_is")[:, 1].max() == 1 and lay.view(h, "valid").sum() == 4


def test_layer4_splits_each_examples_vote_among_the_tasks_it_fits(traced):
    model, prompt, tokens, cache = traced
    tasks = model.tasks

    def votes(ex):
        fits = consistent_tasks(tasks, ex)
        return [1 / len(fits) if k in fits else 0.0 for k in range(tasks.K)]

    expected = expected_per_position(tasks, prompt, len(tokens), votes)
    assert np.abs(model.layout.view(after(cache, 4), "vote") - expected).max() <= TOL


def test_layer5_tallies_the_mixture_of_earlier_examples_at_prediction_positions(traced):
    model, prompt, tokens, cache = traced
    mix = model.layout.view(after(cache, 5), "mix")
    for i, pos in enumerate(prediction_positions(model.tasks, prompt.n_examples)):
        expected = [float(p) for p in task_mixture(model.tasks, prompt.examples[:i])]
        assert np.abs(mix[pos] - expected).max() <= TOL
    assert np.allclose(mix[prediction_positions(model.tasks, 0)[0]], 1 / model.tasks.K)  # uniform prior


def test_layer6_fetches_every_tasks_output_on_the_current_input(traced):
    model, prompt, tokens, cache = traced
    task_out = model.layout.view(after(cache, 6), "task_out")
    for i, pos in enumerate(prediction_positions(model.tasks, prompt.n_examples)):
        x = prompt.inputs_at(i)
        expected = np.zeros((model.tasks.K, model.tasks.vocab_size))
        for k, task in enumerate(model.tasks.tasks):
            expected[k, task(x)] = 1
        assert np.abs(task_out[pos] - expected).max() <= TOL


def test_layer7_writes_the_superposed_answer_only_at_prediction_positions(traced):
    model, prompt, tokens, cache = traced
    out = model.layout.view(after(cache, 7), "out")
    positions = prediction_positions(model.tasks, prompt.n_examples)
    others = np.setdiff1d(np.arange(len(tokens)), positions)
    assert np.all(out[others] == 0)
    for i, pos in enumerate(positions):
        mixture = task_mixture(model.tasks, prompt.examples[:i])
        expected = np.zeros(model.tasks.vocab_size)
        for p, task in zip(mixture, model.tasks.tasks):
            expected[task(prompt.inputs_at(i))] += float(p)
        assert np.abs(out[pos] - expected).max() <= TOL


def test_every_layer_does_real_work(two_tasks):
    model = build(two_tasks, max_examples=4)
    for i in range(1, 8):
        layer = model.params[f"layer_{i}"]
        nonzero = sum(np.count_nonzero(a) for part in layer.values() for a in part.values())
        assert nonzero > 0, f"layer {i} is all zeros"
    heads_used = [len(layer.attention.heads) for layer in model.layers]
    assert heads_used == [1, 2, 0, 0, 1, 2, 0]
    assert all(n <= model.config.n_heads for n in heads_used)
