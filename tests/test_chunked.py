"""The block-by-block attention executor computes what the Flax model computes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jax
import jax.numpy as jnp

from superpose import PromptError, Task, TaskSet, build, predict, prediction_positions, tokenize
from superpose import model as executor
from superpose.verify import chunked
from superpose.verify.sampling import mixture_shares, random_task_set, sample_prompt
from superpose.verify.strategies import cases, covering_config

FAMILY = dict(max_vocab=6, max_slots=3, max_tasks=4, max_examples=12)
# every fuzzed model is zero-padded to this shape and every prompt to LENGTH tokens: few compiled programs
SHAPE = covering_config(**{**FAMILY, "max_examples": 15})
LENGTH = SHAPE.n_ctx  # 80 = 16 x 5: blocks of 5 and 16 divide it


@settings(max_examples=30)
@given(case=cases(**FAMILY), block=st.sampled_from([5, 16]))
def test_chunked_attention_matches_the_flax_model_at_every_position(case, block):
    tasks, prompt = case
    model = build(tasks, max_examples=FAMILY["max_examples"])
    ids = tokenize(tasks, prompt)
    tokens = np.full((1, LENGTH), tasks.bos, dtype=np.int32)
    tokens[0, : len(ids)] = ids
    padded = executor.pad_params(model.params, model.config, SHAPE)
    with jax.enable_x64(True):
        device_params = jax.tree_util.tree_map(jnp.asarray, padded)
        ours = np.asarray(chunked.forward(device_params, jnp.asarray(tokens), 7, block))
    flax = executor.run_tokens(model, tokens, dtype="float64", shape=SHAPE)
    d = tasks.vocab_size
    assert np.abs(ours[0, : len(ids), :d] - flax[0, : len(ids)]).max() <= 1e-14
    at = prediction_positions(tasks, prompt.n_examples)
    bound = model.error_bound("float64", prompt_length=len(ids))
    assert np.abs(ours[0, at, :d] - predict(tasks, prompt)).max() <= bound.total


@pytest.mark.parametrize("dtype,tolerance", [("float64", 1e-14), ("float32", 1e-6)])
def test_run_chunked_on_a_long_prompt_with_padding(dtype, tolerance):
    rng = np.random.default_rng(2)
    tasks = random_task_set(rng, vocab_size=8, n_tasks=3, slots=2)
    model = build(tasks, max_examples=150)   # 604 tokens: not a multiple of the block
    prompt = sample_prompt(rng, tasks, 150, mixture_shares("dirichlet", 3, rng), 0.25, 0.1).prompt
    tokens = tokenize(tasks, prompt)[None, :]
    ours = chunked.run_chunked(model, tokens, dtype, block=128)
    flax = executor.run_tokens(model, tokens, dtype=dtype)
    assert ours.shape == flax.shape == (1, 604, 8)
    assert np.abs(ours - flax).max() <= tolerance
    bound = model.error_bound(dtype, prompt_length=604)
    assert np.abs(ours[0, prediction_positions(tasks, 150)] - predict(tasks, prompt)).max() <= bound.total


def test_memory_plan_grows_linearly_not_quadratically():
    """XLA's planned temporaries: the Flax model's grow ~T^2, the chunked executor's ~T."""
    tasks = TaskSet(4, 2, [Task("a", 0, [0, 1, 2, 3]), Task("b", 1, [1, 2, 3, 0])])
    plans = {}
    for T in (1024, 4096):
        model = build(tasks, max_examples=T // 4 - 1)
        with jax.enable_x64(True):
            params = executor.device_params(model, "float64")
            tokens = jnp.zeros((1, T), jnp.int32)
            flax = executor.forward.lower(model.config, params, tokens).compile().memory_analysis()
            lean = chunked.lowered(model.config, params, tokens, 256).compile().memory_analysis()
        plans[T] = (flax.temp_size_in_bytes, lean.temp_size_in_bytes)
    flax_growth = plans[4096][0] / plans[1024][0]
    lean_growth = plans[4096][1] / plans[1024][1]
    assert flax_growth >= 12      # 16x the tokens squared is 16: quadratic
    assert lean_growth <= 6       # linear: 4x, plus the fixed blocks
    assert plans[4096][1] * 8 < plans[4096][0]


def test_run_chunked_rejects_prompts_longer_than_the_context():
    model = build(TaskSet(3, 1, [Task("id", 0, [0, 1, 2])]), max_examples=2)
    with pytest.raises(PromptError, match="exceeds the model's context 9"):
        chunked.run_chunked(model, np.zeros((1, 12), dtype=np.int32))
