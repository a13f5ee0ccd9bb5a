"""The constructed model for answers of several tokens against the analytic prediction.

At every prediction site where the construction is claimed exact (``verify.analytic.separable``:
every earlier consistent example's tasks lie all inside or all outside those that fit the
answer so far) the readout equals the prefix-conditioned (Bayes) prediction within the
bound; elsewhere it equals what the layer specs state (the average of the surviving
examples' votes), and the marginal variant equals the marginal rule everywhere.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superpose import Example, Prompt, Task, TaskSet, build, load, prediction_positions, save, tokenize
from superpose import model as executor
from superpose.construct.build import LAYER_SPECS
from superpose.construct.spec import exact_values
from superpose.verify.analytic import predict, separable, survivors
from superpose.verify.strategies import cases

from conftest import FUZZ_SHAPE

FAMILY = dict(max_vocab=4, max_slots=2, max_tasks=3, max_examples=8, max_arity=2, max_answer_length=3)
SHAPE = FUZZ_SHAPE   # the Hypothesis suite's one padded shape
TARGET = {"float64": 1e-12, "float32": 1e-5}


def spec_readout(model, prompt):
    """The readout the layer specs state (exact hard-attention values), at the prediction sites."""
    out = exact_values(LAYER_SPECS, model.tasks, tokenize(model.tasks, prompt), model.conditioned)[-1]["out"]
    positions = prediction_positions(model.tasks, prompt.n_examples, len(prompt.query_prefix))
    return np.array([[float(x) for x in out[t]] for t in positions])


@settings(max_examples=80)
@given(case=cases(**FAMILY), dtype=st.sampled_from(["float32", "float64"]))
def test_every_site_matches_the_conditioned_prediction_where_exact_and_the_specs_everywhere(case, dtype):
    tasks, prompt = case
    model = build(tasks, max_examples=FAMILY["max_examples"])
    got = executor.run(model, [prompt], dtype=dtype, shape=SHAPE)[0]
    T = tasks.prompt_length(prompt.n_examples, len(prompt.query_prefix))
    bound = model.error_bound(dtype, prompt_length=T)
    assert bound.holds
    assert np.abs(got - spec_readout(model, prompt)).max() <= min(bound.total, TARGET[dtype])
    exact = np.array([ok for ok, _ in separable(tasks, prompt)])
    error = np.abs(got - predict(tasks, prompt))[exact]
    assert error.size == 0 or error.max() <= min(bound.total, TARGET[dtype])


@settings(max_examples=40)
@given(case=cases(**FAMILY))
def test_the_marginal_variant_matches_the_marginal_rule_everywhere(case):
    tasks, prompt = case
    model = build(tasks, max_examples=FAMILY["max_examples"], conditioned=False)
    got = executor.run(model, [prompt], dtype="float64", shape=SHAPE)[0]   # one compiled shape for all
    assert np.abs(got - predict(tasks, prompt, mode="marginal")).max() <= TARGET["float64"]


def words():
    """Digits 0..3 -> two-token 'words' (tokens 0..5); 'word' and 'other' agree on the first token for 0."""
    return TaskSet(6, 1, [Task("word", 0, [[0, 1], [2, 3], [4, 5], [1, 1], [0, 0], [0, 0]]),
                          Task("other", 0, [[0, 3], [2, 0], [5, 5], [1, 0], [0, 0], [0, 0]])], answer_length=2)


def test_conditioning_keeps_the_superposition_and_the_marginal_rule_mixes_tasks():
    tasks = words()
    examples = [Example([0], [0, 1]), Example([1], [2, 3]), Example([3], [1, 0])]   # word, word, other
    conditioned, marginal = build(tasks, 4), build(tasks, 4, conditioned=False)
    first = Prompt(examples, [2])
    np.testing.assert_allclose(conditioned.run(first, "float64")[0][-1], [0, 0, 0, 0, 2 / 3, 1 / 3], atol=1e-12)
    after_four = Prompt(examples, [2], query_prefix=[4])   # 'word' chose 4: only 'word' fits
    np.testing.assert_allclose(conditioned.run(after_four, "float64")[0][-1], [0, 0, 0, 0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(marginal.run(after_four, "float64")[0][-1], [0, 0, 0, 0, 0, 1], atol=1e-12)
    after_zero = Prompt(examples, [0], query_prefix=[0])   # both answers start with 0: the mixture stays
    np.testing.assert_allclose(conditioned.run(after_zero, "float64")[0][-1], [0, 2 / 3, 0, 1 / 3, 0, 0], atol=1e-12)


def test_no_surviving_task_gives_an_all_zero_row_and_is_reported():
    tasks = words()
    prompt = Prompt([Example([0], [0, 1])], [2], query_prefix=[5])   # only "word" has weight; only "other" fits
    assert survivors(tasks, prompt)[-1] is False
    np.testing.assert_allclose(build(tasks, 4).run(prompt, "float64")[0][-1], np.zeros(6), atol=1e-12)


def test_the_prior_is_conditioned_too():
    tasks = words()
    prompt = Prompt([], [0], query_prefix=[0])   # no example: prior 1/2, 1/2; both start with 0
    np.testing.assert_allclose(build(tasks, 4).run(prompt, "float64")[0][-1], [0, 1 / 2, 0, 1 / 2, 0, 0], atol=1e-12)
    three = TaskSet(6, 1, list(words().tasks) + [Task("third", 0, [[1, 2]] * 6)], answer_length=2)
    prompt = Prompt([Example([5], [3, 3])], [0], query_prefix=[0])   # noise only: 2 of 3 tasks fit the prefix
    np.testing.assert_allclose(build(three, 4).run(prompt, "float64")[0][-1], [0, 1 / 2, 0, 1 / 2, 0, 0], atol=1e-12)


def test_a_straddling_example_is_flagged_and_the_model_does_what_its_specs_say():
    inside = TaskSet(4, 1, [Task("a", 0, [[0, 1]] * 4), Task("b", 0, [[0, 2]] * 4), Task("c", 0, [[3, 3]] * 4)],
                     answer_length=2)
    prompt = Prompt([Example([1], [0, 1]), Example([2], [3, 3])], [0], query_prefix=[0])
    assert separable(inside, prompt)[-1] == (True, "")   # {a} lies inside the survivors {a, b}, {c} outside
    # example 0 fits a and b; after the token 0 only a survives at the query 3: example 0 straddles
    part = TaskSet(4, 1, [Task("a", 0, [[0, 1]] * 4), Task("b", 0, [[0, 1]] * 3 + [[2, 1]])], answer_length=2)
    prompt = Prompt([Example([0], [0, 1]), Example([3], [0, 1])], [3], query_prefix=[0])
    ok, reason = separable(part, prompt)[-1]
    assert not ok and "example 0" in reason
    model = build(part, 4)
    assert np.abs(model.run(prompt, "float64")[0] - spec_readout(model, prompt)).max() <= 1e-12


def test_save_and_load_keep_the_variant(tmp_path):
    tasks = words()
    for conditioned in (True, False):
        model = build(tasks, 4, conditioned=conditioned)
        path = str(tmp_path / f"{conditioned}.npz")
        save(model, path)
        again = load(path)
        assert again.conditioned is conditioned and again.config == model.config
        prompt = Prompt([Example([0], [0, 1])], [1], query_prefix=[2])
        assert np.array_equal(again.run(prompt, "float64")[0], model.run(prompt, "float64")[0])


def test_the_layer_specs_state_the_heads_and_units_of_the_build():
    tasks = TaskSet(4, 2, [Task("a", [0, 1], [[[x, y] for y in range(4)] for x in range(4)]),
                           Task("b", 1, [[x, x] for x in range(4)])], answer_length=2)
    for conditioned in (True, False):
        model = build(tasks, 3, conditioned=conditioned)
        for spec, layer in zip(LAYER_SPECS, model.layers):
            assert len(layer.attention.heads) == spec.n_heads(tasks, conditioned)
            assert layer.mlp.width == spec.n_units(tasks, conditioned)


@pytest.mark.parametrize("A", [2, 3])
def test_long_answers_on_long_prompts(A):
    rng = np.random.default_rng(A)
    d, K = 5, 3
    tasks = TaskSet(d, 2, [Task(f"t{k}", [k % 2], rng.integers(0, d, (d, A)).tolist()) for k in range(K)],
                    answer_length=A)
    m = 200
    examples = []
    for _ in range(m):
        x = rng.integers(0, d, 2).tolist()
        examples.append(Example(x, tasks.answer_of(tasks.tasks[int(rng.integers(0, K))], x)))
    query = rng.integers(0, d, 2).tolist()
    prompt = Prompt(examples, query, tasks.answer_of(tasks.tasks[0], query)[:A - 1])
    model = build(tasks, m)
    exact = np.array([ok for ok, _ in separable(tasks, prompt)])
    for dtype in ("float64", "float32"):
        got = model.run(prompt, dtype)[0]
        bound = model.error_bound(dtype, prompt_length=tasks.prompt_length(m, A - 1)).total
        error = float(np.abs(got - predict(tasks, prompt))[exact].max())
        print(f"A={A} T={tasks.prompt_length(m, A - 1)} {dtype}: max error {error:.2e} over {exact.sum()} exact sites "
              f"of {exact.size}, bound {bound:.2e}")
        assert error <= min(bound, TARGET[dtype])
