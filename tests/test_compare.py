"""``superpose.verify.compare``: the one comparison of a model with the analytic prediction."""

import dataclasses
import math

import jax
import numpy as np
import pytest

from superpose import Example, Prompt, PromptError, Task, TaskSet, build, predict, prediction_sites, tokenize
from superpose.model import run_tokens
from superpose.verify.compare import compare, run_report

from conftest import random_prompt


@pytest.fixture(scope="module")
def model():
    tasks = TaskSet(vocab_size=5, slots=2, tasks=[Task("copy0", 0, [0, 1, 2, 3, 4]), Task("next1", 1, [1, 2, 3, 4, 0]),
                                                  Task("const", 0, [2] * 5)])
    return build(tasks, max_examples=12)


@pytest.fixture(scope="module")
def prompts(model):
    rng = np.random.default_rng(3)
    return [random_prompt(model.tasks, m, rng) for m in (0, 5, 12)]


def test_each_site_holds_the_model_output_the_prediction_its_error_and_the_bound(model, prompts):
    comparisons = compare(model, prompts, "float64")
    assert len(comparisons) == len(prompts)
    for c, prompt, out in zip(comparisons, prompts, model.run(prompts, dtype="float64")):
        tasks = model.tasks
        assert c.sites == prediction_sites(tasks, prompt.n_examples)
        np.testing.assert_array_equal(c.outputs, out)
        np.testing.assert_array_equal(c.analytic, predict(tasks, prompt))
        # the error recomputed here, site by site
        assert c.errors.tolist() == [max(abs(a - b) for a, b in zip(o, p)) for o, p in zip(out, c.analytic)]
        T = (prompt.n_examples + 1) * (tasks.slots + 2)
        assert c.prompt_length == T and c.bound == model.error_bound("float64", prompt_length=T)
        assert c.bound.holds and c.site_bounds == [c.bound.total] * len(c.sites)
        assert 0 < c.max_error <= c.bound.total and c.status == "within_bound"
        assert c.max_error == max(c.errors)


def test_readouts_computed_elsewhere_give_the_same_comparison(model, prompts):
    ran = compare(model, prompts, "float32")
    readouts = [run_tokens(model, tokenize(model.tasks, p)[None, :], dtype="float32")[0] for p in prompts]
    # padding rows and columns (as a padded batched call returns) are ignored
    padded = [np.pad(r, ((0, 7), (0, 3)), constant_values=np.nan) for r in readouts]
    given = compare(model, prompts, "float32", readouts=padded)
    for a, b in zip(ran, given):
        np.testing.assert_allclose(a.outputs, b.outputs, rtol=0, atol=1e-6)
        assert b.bound == a.bound and b.status == "within_bound" and b.run_seconds == 0.0
    with pytest.raises(PromptError, match="readouts: expected one per prompt"):
        compare(model, prompts, "float32", readouts=readouts[:1])


def test_a_perturbed_model_exceeds_the_bound(model, prompts):
    noise = np.random.default_rng(0)
    params = jax.tree_util.tree_map(lambda a: a + 1e-3 * noise.standard_normal(a.shape), model.params)
    broken = dataclasses.replace(model, params=params, cache={})
    comparisons = compare(broken, prompts, "float64")
    assert all(c.status == "bound_violated" and c.max_error > c.bound.total for c in comparisons)
    report = run_report(broken, prompts[-1], "float64")
    assert report["status"] == "bound_violated" and report["max_abs_error"] > report["bound"]["total"]


def test_a_non_finite_output_is_an_infinite_error(model, prompts):
    readout = run_tokens(model, tokenize(model.tasks, prompts[1])[None, :], dtype="float64")[0].copy()
    readout[-1, 0] = np.nan
    [c] = compare(model, prompts[1:2], "float64", readouts=[readout])
    assert math.isinf(c.errors[-1]) and np.isfinite(c.errors[:-1]).all()
    assert math.isinf(c.max_error) and c.status == "bound_violated"


def test_no_bound_when_hypothesis_h_fails(model, prompts):
    blunt = build(model.tasks, max_examples=12, sharpness=1.0)
    [c] = compare(blunt, prompts[-1:], "float64")
    assert not c.bound.holds and c.status == "no_bound" and c.site_bounds == [None] * len(c.sites)
    report = run_report(blunt, prompts[-1], "float64")
    assert report["status"] == "no_bound" and "raise --sharpness" in report["no_bound_reason"]


def test_answers_of_several_tokens_claim_the_bound_only_where_the_mixture_is_separable():
    # two-token answers; example 0 fits a and b, which part at example 1's first answer token
    tasks = TaskSet.from_json({"vocab_size": 3, "slots": 1, "answer_length": 2, "tasks": [
        {"name": "a", "slot": 0, "table": [[0, 1], [1, 2], [2, 0]]},
        {"name": "b", "slot": 0, "table": [[0, 1], [2, 0], [2, 1]]},
        {"name": "c", "slot": 0, "table": [[1, 1], [2, 2], [0, 0]]}]})
    model = build(tasks, max_examples=3)
    prompt = Prompt([Example([0], [0, 1]), Example([1], [1, 2]), Example([2], [0, 0])], query=[0])
    [c] = compare(model, [prompt], "float64")
    assert c.sites == prediction_sites(tasks, 3)
    assert [site for site, ok in zip(c.sites, c.claimed) if not ok] == [(1, 1)]  # example 0 straddles a | b
    assert all(bool(ok) == (why == "") for ok, why in zip(c.claimed, c.reasons))
    assert c.site_bounds == [c.bound.total if ok else None for ok in c.claimed]
    assert c.status == "within_bound"
