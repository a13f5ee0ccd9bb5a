"""Hypothesis property tests: the model against the analytic prediction (separate code)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superpose import Task, TaskSet, build, predict
from superpose import model as executor
from superpose.verify.sampling import random_task_set
from superpose.verify.strategies import cases

from conftest import FUZZ_SHAPE, random_prompt

FAMILY = dict(max_vocab=8, max_slots=3, max_tasks=4, max_examples=24)
TARGET = {"float64": 1e-12, "float32": 1e-5}

# Every model of the family is zero-padded to one shape and every prompt to its n_ctx (128 tokens),
# so all of them share one compiled program per dtype.
SHAPE = FUZZ_SHAPE


@settings(max_examples=150)
@given(case=cases(**FAMILY), dtype=st.sampled_from(["float32", "float64"]))
def test_every_prediction_position_matches_the_analytic_prediction(case, dtype):
    tasks, prompt = case
    model = build(tasks, max_examples=FAMILY["max_examples"])
    got = executor.run(model, [prompt], dtype=dtype, shape=SHAPE)[0]
    expected = predict(tasks, prompt)
    assert got.shape == expected.shape == (prompt.n_examples + 1, tasks.vocab_size)
    error = float(np.abs(got - expected).max())
    bound = model.error_bound(dtype, prompt_length=tasks.prompt_length(prompt.n_examples))
    assert bound.holds
    assert error <= bound.total
    assert error <= TARGET[dtype]


def test_a_family_of_models_runs_one_program_per_dtype():
    """Thirty different task sets and prompt lengths, both dtypes: one padded shape and length, 2 programs."""
    rng = np.random.default_rng(7)
    before = dict(executor.PROGRAM_LOG)
    for _ in range(30):
        d, s, K = int(rng.integers(2, 9)), int(rng.integers(1, 4)), int(rng.integers(1, 5))
        tasks = random_task_set(rng, d, K, s, max_arity=3)
        model = build(tasks, max_examples=FAMILY["max_examples"])
        prompt = random_prompt(tasks, int(rng.integers(0, FAMILY["max_examples"] + 1)), rng)
        for dtype in ("float32", "float64"):
            got = executor.run(model, [prompt], dtype=dtype, shape=SHAPE)[0]
            assert np.abs(got - predict(tasks, prompt)).max() <= TARGET[dtype]
    ran = {key for key, n in executor.PROGRAM_LOG.items() if n > before.get(key, 0)}
    assert {(key.config, key.length, key.batch) for key in ran} == {(SHAPE, SHAPE.n_ctx, 1)}
    assert sorted(key.dtype for key in ran) == ["float32", "float64"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_prompts_of_4096_tokens(dtype):
    rng = np.random.default_rng(4096)
    tasks = TaskSet(vocab_size=8, slots=2, tasks=[
        Task("copy0", 0, list(range(8))),
        Task("shift1", 1, [(x + 3) % 8 for x in range(8)]),
        Task("const", 0, [5] * 8),
        Task("copy0 again", 0, list(range(8))),
        Task("A+B", [0, 1], [[(a + b) % 8 for b in range(8)] for a in range(8)]),
        Task("B-A", [1, 0], [[(b - a) % 8 for a in range(8)] for b in range(8)]),
    ])
    m = 4096 // tasks.example_length - 1  # 1023 examples: exactly 4096 tokens
    model = build(tasks, max_examples=m)
    prompt = random_prompt(tasks, m, rng, noise=0.1)
    assert tasks.prompt_length(prompt.n_examples) == 4096
    got = model.run(prompt, dtype=dtype)[0]
    error = float(np.abs(got - predict(tasks, prompt)).max())
    bound = model.error_bound(dtype, prompt_length=4096)
    print(f"T=4096 {dtype}: max error {error:.3e}, bound {bound.total:.3e}")
    assert error <= bound.total and error <= TARGET[dtype]


@pytest.mark.parametrize("seed", [1, 2, 4, 9])  # r up to 2, 1, 2, 3
def test_random_configurations_at_the_longest_prompts(seed):
    """Random d, s, K, tasks of 1..3 slots (a duplicate task), the longest prompt that fits 4096 tokens."""
    rng = np.random.default_rng(seed)
    d, s, K = int(rng.integers(2, 13)), int(rng.integers(1, 4)), int(rng.integers(2, 7))
    drawn = random_task_set(rng, d, K, s, max_arity=3 if d <= 8 else 2).tasks
    if K > 2:   # a duplicate task: examples fitting both are ambiguous
        drawn = drawn[:-1] + (Task("copy of t0", drawn[0].slots, drawn[0].table),)
    tasks = TaskSet(d, s, drawn)
    m = 4096 // tasks.example_length - 1
    model = build(tasks, max_examples=m)
    prompt = random_prompt(tasks, m, rng, noise=0.2)
    for dtype in ("float64", "float32"):
        got = model.run(prompt, dtype=dtype)[0]
        error = float(np.abs(got - predict(tasks, prompt)).max())
        bound = model.error_bound(dtype, prompt_length=tasks.prompt_length(m))
        arity = [t.arity for t in tasks.tasks]
        print(f"seed {seed}: d={d} s={s} K={K} r={arity} T={tasks.prompt_length(m)} {dtype}: error {error:.2e}")
        assert error <= bound.total and error <= TARGET[dtype]
