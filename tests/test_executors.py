"""The Flax executor against the independent NumPy executor, and what the Flax module may know."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings

from superpose import Prompt, PromptError, Task, TaskSet, build, prediction_positions, tokenize
from superpose import model as executor
from superpose.verify.numpy_forward import forward as numpy_forward
from superpose.verify.strategies import cases

from conftest import FUZZ_SHAPE


FAMILY = dict(max_vocab=6, max_slots=3, max_tasks=3, max_examples=12)
LENGTH = FUZZ_SHAPE.n_ctx   # every prompt padded to the length that `run` pads them to on FUZZ_SHAPE


@settings(max_examples=25)
@given(case=cases(**FAMILY))
def test_jax_and_numpy_executors_agree_to_1e_12_in_float64(case):
    """Padded to the Hypothesis suite's shape and length, as `run` pads them: one compiled program for all."""
    tasks, prompt = case
    model = build(tasks, max_examples=FAMILY["max_examples"])
    ids = tokenize(tasks, prompt)
    tokens = np.full((1, LENGTH), tasks.bos, dtype=np.int32)
    tokens[0, : len(ids)] = ids
    jax_readout = executor.run_tokens(model, tokens, dtype="float64", shape=FUZZ_SHAPE)[0, : len(ids)]
    np_readout = numpy_forward(model.params, ids)
    assert np.abs(jax_readout - np_readout).max() <= 1e-12
    assert np.abs(executor.run(model, prompt, dtype="float64", shape=FUZZ_SHAPE)[0]
                  - np_readout[prediction_positions(tasks, prompt.n_examples)]).max() <= 1e-12


def test_every_residual_activation_agrees_between_executors(two_tasks, mixed_prompt):
    model = build(two_tasks, max_examples=6)
    tokens = tokenize(two_tasks, mixed_prompt)
    _, cache = executor.run_tokens(model, tokens[None, :], dtype="float64", capture=True)
    _, residuals = numpy_forward(model.params, tokens, capture=True)
    jax_residuals = [cache["resid_pre"][0]]
    for i in range(1, 8):
        jax_residuals += [cache[f"layer_{i}"]["resid_mid"][0], cache[f"layer_{i}"]["resid_post"][0]]
    assert len(residuals) == len(jax_residuals) == 15
    for a, b in zip(jax_residuals, residuals):
        assert np.abs(a - b).max() <= 1e-12


def test_zero_padding_the_shapes_does_not_change_the_outputs(two_tasks, mixed_prompt):
    model = build(two_tasks, max_examples=6)
    big = build(TaskSet(8, 3, [Task(f"t{k}", 0, list(range(8))) for k in range(4)]), max_examples=20).config
    plain = executor.run(model, mixed_prompt, dtype="float64", shape=model.config)[0]
    for shape in (executor.covering_config(model.config, big), executor.bucket_config(model.config),
                  executor.bucket_config(big)):
        assert shape != model.config
        padded = executor.run(model, mixed_prompt, dtype="float64", shape=shape)[0]
        assert np.abs(plain - padded).max() <= 1e-15
    assert np.abs(plain - executor.run(model, mixed_prompt, dtype="float64")[0]).max() <= 1e-15  # the default


def test_every_width_is_bucketed_to_a_power_of_two_at_least_the_minimum():
    config = executor.ModelConfig(n_layers=7, n_heads=3, d_model=129, d_head=5, d_mlp=300, n_vocab=9, n_ctx=130,
                                  d_out=5)
    shape = executor.bucket_config(config)
    assert shape == executor.ModelConfig(n_layers=7, n_heads=8, d_model=256, d_head=16, d_mlp=512, n_vocab=16,
                                         n_ctx=256, d_out=16)
    assert executor.bucket_config(shape) == shape


def test_small_task_sets_share_one_program_per_length_and_dtype():
    """Ten task sets of different widths (d <= 8, K <= 4, s <= 3): `run` compiles one program for all."""
    from superpose.verify.sampling import random_task_set

    rng = np.random.default_rng(3)
    keys = set()
    for _ in range(10):
        tasks = random_task_set(rng, int(rng.integers(2, 9)), int(rng.integers(1, 5)), int(rng.integers(1, 4)))
        model = build(tasks, max_examples=int(rng.integers(1, 25)))
        before = dict(executor.PROGRAM_LOG)
        executor.run(model, Prompt([], [0] * tasks.slots), dtype="float64")
        keys |= {k for k, n in executor.PROGRAM_LOG.items() if n > before.get(k, 0)}
    assert len(keys) == 1, keys


def test_batches_give_the_same_answers_as_single_prompts(two_tasks, mixed_prompt):
    model = build(two_tasks, max_examples=6)
    prompts = [mixed_prompt, Prompt([], [1, 1]), Prompt(mixed_prompt.examples[:2], [0, 4])]
    together = executor.run(model, prompts, dtype="float64")
    for p, out in zip(prompts, together):
        assert np.array_equal(out, executor.run(model, p, dtype="float64")[0])
        assert out.shape == (p.n_examples + 1, 5)


def test_the_flax_module_knows_only_shapes():
    """Shapes, and which heads to compute (head indices, no weight values): the weights are arguments."""
    fields = {f.name for f in dataclasses.fields(executor.Transformer) if f.init and f.name not in ("parent", "name")}
    assert fields == {"config", "heads"}
    assert executor.Transformer(executor.ModelConfig(1, 1, 1, 1, 1, 1, 1, 1)).heads is None
    assert {f.name for f in dataclasses.fields(executor.ModelConfig)} == {
        "n_layers", "n_heads", "d_model", "d_head", "d_mlp", "n_vocab", "n_ctx", "d_out"}


def test_embeddings_do_not_depend_on_the_task_set():
    a = TaskSet(6, 2, [Task("x", 0, list(range(6)))])
    b = TaskSet(6, 2, [Task("y", 1, [5, 4, 3, 2, 1, 0]), Task("z", 0, [0] * 6), Task("w", 1, list(range(6)))])
    ma, mb = build(a, max_examples=10), build(b, max_examples=10)
    width = 6 + 2 + 2 * ma.layout["pos_cos"].size  # token and position blocks come first
    for name in ("W_E", "W_pos"):
        ea, eb = ma.params["embed"][name], mb.params["embed"][name]
        assert np.array_equal(ea[:, :width], eb[:, :width])
        assert not ea[:, width:].any() and not eb[:, width:].any()


def test_run_rejects_prompts_longer_than_the_model_was_built_for(two_tasks, mixed_prompt):
    model = build(two_tasks, max_examples=3)
    with pytest.raises(PromptError, match=r"prompt 0: examples: prompt has 5 examples .* at most 3"):
        model.run(mixed_prompt)
    with pytest.raises(PromptError, match="exceeds the model's context"):
        executor.run_tokens(model, np.zeros((1, 100), dtype=np.int32))
    with pytest.raises(PromptError, match="ids must lie in"):
        executor.run_tokens(model, np.full((1, 4), 99, dtype=np.int32))


def test_unknown_dtype_is_a_typed_error(two_tasks, mixed_prompt):
    from superpose import BuildError

    with pytest.raises(BuildError, match="dtype"):
        build(two_tasks, max_examples=6).run(mixed_prompt, dtype="float16")
