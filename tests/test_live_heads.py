"""Leaving out heads that add exactly zero (``live_heads``) and splitting a batch over devices
(``use_all_cores``) change the executor's speed, never its output."""

import os
import subprocess
import sys

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from superpose import Task, TaskSet, build
from superpose import model as executor
from superpose.executor import ModelConfig, forward, live_heads, param_shapes
from superpose.verify.numpy_forward import forward as numpy_forward

CONFIG = ModelConfig(n_layers=3, n_heads=3, d_model=12, d_head=4, d_mlp=16, n_vocab=7, n_ctx=64, d_out=5)


def random_params(rng, config=CONFIG):
    return jax.tree_util.tree_map(lambda shape: rng.standard_normal(shape) * 0.5, param_shapes(config),
                                  is_leaf=lambda x: isinstance(x, tuple))


def test_live_heads_reads_zero_outputs_and_zero_values():
    params = random_params(np.random.default_rng(0))
    params["layer_1"]["attn"]["W_O"][1] = 0                                        # writes nothing
    params["layer_2"]["attn"]["W_V"][0] = 0                                        # reads a bias only: live
    params["layer_2"]["attn"]["W_V"][2] = 0
    params["layer_2"]["attn"]["b_V"][2] = 0                                        # reads nothing
    for h in range(3):
        params["layer_3"]["attn"]["W_O"][h] = 0                                    # a layer with no live head
    assert live_heads(params) == ((0, 2), (0, 1), ())


@pytest.mark.parametrize("block", [None, 16])   # dense, and block by block (T = 40: 3 blocks)
def test_forward_over_live_heads_equals_forward_over_all_heads(block):
    rng = np.random.default_rng(1)
    params = random_params(rng)
    params["layer_1"]["attn"]["W_O"][0] = 0
    params["layer_2"]["attn"]["W_V"][1] = params["layer_2"]["attn"]["b_V"][1] = 0
    params["layer_3"]["attn"]["W_O"][:] = 0
    heads = live_heads(params)
    assert heads == ((1, 2), (0, 2), ())
    tokens = jnp.asarray(rng.integers(0, CONFIG.n_vocab, (2, 40)), dtype=jnp.int32)
    with jax.enable_x64(True):
        p = jax.tree_util.tree_map(jnp.asarray, params)
        every = np.asarray(forward(CONFIG, p, tokens, block=block))
        live = np.asarray(forward(CONFIG, p, tokens, block=block, heads=heads))
    assert np.abs(live - every).max() <= 1e-13 * max(1.0, np.abs(every).max())
    reference = numpy_forward(params, np.asarray(tokens[0]))
    assert np.abs(live[0] - reference).max() <= 1e-12 * max(1.0, np.abs(reference).max())


def test_long_prompts_compute_only_the_constructions_live_heads():
    """The constructed model's dead heads (most layers read or write nothing) are left out beyond
    ATTENTION_BLOCK tokens, and the readout is the one every head gives."""
    tasks = TaskSet(4, 2, [Task("a", 0, [0, 1, 2, 3]), Task("b", 1, [1, 2, 3, 0])])
    model = build(tasks, max_examples=127)
    T = 512
    key = executor.program_key(model, 2, T, "float64")
    assert key.heads is not None and sum(map(len, key.heads)) < model.config.n_layers * model.config.n_heads
    assert executor.program_key(model, 2, executor.ATTENTION_BLOCK, "float64").heads is None   # short: every head
    assert executor.program_key(model, 2, T, "float64", capture=True).heads is None
    tokens = np.random.default_rng(2).integers(0, model.config.n_vocab, (2, T)).astype(np.int32)
    pruned = executor.run_tokens(model, tokens, "float64")
    with jax.enable_x64(True):
        every = np.asarray(forward(model.config, executor.device_params(model, "float64"), jnp.asarray(tokens),
                                   block=key.block))
    assert np.array_equal(pruned, every)


SHARDED = """
import json, sys
import numpy as np
import jax
jax.config.update("jax_num_cpu_devices", 2)   # two devices on any machine
from superpose import Task, TaskSet, build
from superpose import model as executor
tasks = TaskSet(4, 2, [Task("a", 0, [0, 1, 2, 3]), Task("b", 1, [1, 2, 3, 0])])
model = build(tasks, max_examples=127)
tokens = np.random.default_rng(3).integers(0, model.config.n_vocab, (4, 512)).astype(np.int32)
key = executor.program_key(model, 4, 512, "float64")
odd = executor.program_key(model, 3, 512, "float64")
out = executor.run_tokens(model, tokens, "float64")
np.save(sys.argv[1], out)
print(json.dumps({"devices": key.devices, "odd_batch_devices": odd.devices}))
"""


def test_a_batch_split_over_two_devices_gives_the_one_device_readout(tmp_path):
    script, saved = tmp_path / "sharded.py", tmp_path / "sharded.npy"
    script.write_text(SHARDED)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    done = subprocess.run([sys.executable, str(script), str(saved)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == '{"devices": 2, "odd_batch_devices": 1}'
    tasks = TaskSet(4, 2, [Task("a", 0, [0, 1, 2, 3]), Task("b", 1, [1, 2, 3, 0])])
    model = build(tasks, max_examples=127)
    tokens = np.random.default_rng(3).integers(0, model.config.n_vocab, (4, 512)).astype(np.int32)
    assert executor.program_key(model, 4, 512, "float64").devices == 1   # this process: one device
    assert np.array_equal(np.load(saved), executor.run_tokens(model, tokens, "float64"))


def test_use_all_cores_gives_one_device_per_core_unless_xla_flags_say_otherwise():
    code = "from superpose.executor import use_all_cores; print(use_all_cores())"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    cores = len(os.sched_getaffinity(0))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == [str(cores)], done.stderr[-2000:]
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=3"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["3"], done.stderr[-2000:]
