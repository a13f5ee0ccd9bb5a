"""Block-wise attention (the executor's path for long prompts) computes what the dense path and the
independent NumPy executor compute."""

import numpy as np
import pytest
from hypothesis import given, settings

import jax
import jax.numpy as jnp

from superpose import Task, TaskSet, build, predict, prediction_positions, tokenize
from superpose import model as executor
from superpose.verify.numpy_forward import forward as numpy_forward
from superpose.verify.sampling import mixture_shares, random_task_set, sample_prompt
from superpose.verify.strategies import cases

from conftest import FUZZ_SHAPE

FAMILY = dict(max_vocab=8, max_slots=3, max_tasks=4, max_examples=24)  # the property suite's family
LENGTH = FUZZ_SHAPE.n_ctx   # every fuzzed prompt padded to 128 tokens: 2 blocks of 48 and a partial one of 32
BLOCK = 48


@settings(max_examples=30)
@given(case=cases(**FAMILY))
def test_blockwise_matches_dense_and_numpy_at_every_position(case):
    tasks, prompt = case
    model = build(tasks, max_examples=FAMILY["max_examples"])
    shape = FUZZ_SHAPE
    ids = tokenize(tasks, prompt)
    tokens = np.full((1, LENGTH), tasks.bos, dtype=np.int32)
    tokens[0, : len(ids)] = ids
    blockwise = executor.run_tokens(model, tokens, dtype="float64", shape=shape, block=BLOCK)[0, : len(ids)]
    dense = executor.run_tokens(model, tokens, dtype="float64", shape=shape, block=LENGTH)[0, : len(ids)]
    reference = numpy_forward(model.params, ids)
    assert np.abs(blockwise - dense).max() <= 1e-12
    assert np.abs(blockwise - reference).max() <= 1e-12
    at = prediction_positions(tasks, prompt.n_examples)
    bound = model.error_bound("float64", prompt_length=len(ids))
    assert np.abs(blockwise[at] - predict(tasks, prompt)).max() <= bound.total


@pytest.mark.parametrize("length", [7, 8, 9, 16, 29])   # T < block, = block, block + 1, 2 blocks, 3 blocks + 5
def test_causal_edge_cases_of_the_block_grid(length):
    """Blocks of 8: a prompt shorter than one block, exactly one, one more, a multiple, a ragged last block."""
    rng = np.random.default_rng(length)
    tasks = random_task_set(rng, vocab_size=5, n_tasks=3, slots=2)
    model = build(tasks, max_examples=8)
    tokens = rng.integers(0, model.config.n_vocab, (2, length)).astype(np.int32)
    blockwise = executor.run_tokens(model, tokens, dtype="float64", block=8)
    dense = executor.run_tokens(model, tokens, dtype="float64", block=length)
    for row in range(2):
        reference = numpy_forward(model.params, tokens[row])
        assert np.abs(blockwise[row] - reference).max() <= 1e-12
        assert np.abs(dense[row] - reference).max() <= 1e-12


def test_blockwise_attention_alone_matches_dense_attention_to_1e_12():
    """Random queries, keys and values of a wide range of scales, T = 100 in blocks of 16 (and of 1)."""
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        q, k, v = (jnp.asarray(rng.standard_normal((2, 3, 100, 4)) * 20) for _ in range(3))
        dense, _ = executor.causal_attention(q, k, v)
        for block in (1, 16, 100, 128):
            assert np.abs(np.asarray(executor.blockwise_attention(q, k, v, block)) - np.asarray(dense)).max() <= 1e-12


@pytest.mark.parametrize("dtype,tolerance", [("float64", 1e-12), ("float32", 1e-5)])
def test_a_long_prompt_runs_block_wise_through_run(dtype, tolerance):
    """``run`` picks the block-wise path by length (604 tokens, padded to 1024 > the block of 256)."""
    rng = np.random.default_rng(2)
    tasks = random_task_set(rng, vocab_size=8, n_tasks=3, slots=2)
    model = build(tasks, max_examples=150)   # 604 tokens: not a multiple of the block
    prompt = sample_prompt(rng, tasks, 150, mixture_shares("dirichlet", 3, rng), 0.25, 0.1).prompt
    ids = tokenize(tasks, prompt)
    ours = model.run(prompt, dtype=dtype)[0]
    reference = numpy_forward(model.params, ids)[prediction_positions(tasks, 150)]
    assert len(ids) > executor.ATTENTION_BLOCK
    assert np.abs(ours - reference).max() <= tolerance
    bound = model.error_bound(dtype, prompt_length=len(ids))
    assert np.abs(ours - predict(tasks, prompt)).max() <= bound.total


def test_memory_plan_grows_linearly_not_quadratically():
    """XLA's planned temporaries: the dense path's grow ~T^2, the block-wise path's ~T."""
    tasks = TaskSet(4, 2, [Task("a", 0, [0, 1, 2, 3]), Task("b", 1, [1, 2, 3, 0])])
    plans = {}
    for T in (1024, 4096):
        config = build(tasks, max_examples=T // 4 - 1).config
        with jax.enable_x64(True):
            dense = executor.compiled_forward(executor.ProgramKey(config, "float64", 1, T, False, T))
            lean = executor.compiled_forward(executor.ProgramKey(config, "float64", 1, T, False, 256))
        plans[T] = (dense.memory_analysis().temp_size_in_bytes, lean.memory_analysis().temp_size_in_bytes)
    assert plans[4096][0] / plans[1024][0] >= 12      # 16x the tokens squared is 16: quadratic
    assert plans[4096][1] / plans[1024][1] <= 6       # linear: 4x, plus the fixed blocks
    assert plans[4096][1] * 8 < plans[4096][0]
