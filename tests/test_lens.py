"""TransformerLens runs the exported weights and reproduces our outputs (float64, <= 1e-9).

Needs the ``lens`` extra (torch CPU build, transformer-lens 3.x); ``make test`` installs it.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings

import superpose.cli
from superpose import Task, TaskSet, build, predict, prediction_positions, tokenize
from superpose import model as executor
from superpose.verify.calibration import calibration_kl
from superpose.verify.lens import hooked_readout, state_dict_names, to_hooked_transformer
from superpose.verify.numpy_forward import forward as numpy_forward
from superpose.verify.sampling import mixture_shares, random_task_set, sample_prompt
from superpose.verify.strategies import cases

from conftest import FUZZ_SHAPE

pytestmark = pytest.mark.slow  # runs TransformerLens
# torch and transformer_lens are imported inside the tests that use them: collecting this file
# (every pytest-xdist worker collects every file) should not cost their import (seconds each).

AGREEMENT = 1e-9
FAMILY = dict(max_vocab=6, max_slots=3, max_tasks=4, max_examples=12)
# every fuzzed model is zero-padded to the Hypothesis suite's shape for our JAX run: one program
SHAPE = FUZZ_SHAPE


@settings(max_examples=25)
@given(case=cases(**FAMILY))
def test_transformer_lens_reproduces_our_readout_on_fuzzed_prompts(case):
    tasks, prompt = case
    model = build(tasks, max_examples=FAMILY["max_examples"])
    tokens = tokenize(tasks, prompt)[None, :]
    theirs = hooked_readout(to_hooked_transformer(model), tokens)[0]
    assert theirs.dtype == np.float64 and theirs.shape == (tokens.shape[1], tasks.vocab_size)
    at = prediction_positions(tasks, prompt.n_examples)
    ours = executor.run(model, [prompt], dtype="float64", shape=SHAPE)[0]     # JAX, at the prediction positions
    assert np.abs(theirs[at] - ours).max() <= AGREEMENT
    assert np.abs(theirs - numpy_forward(model.params, tokens[0])).max() <= AGREEMENT   # every position
    # and TransformerLens's readout is the analytic prediction, within the bound
    bound = model.error_bound("float64", prompt_length=tokens.shape[1])
    assert np.abs(theirs[at] - predict(tasks, prompt)).max() <= bound.total


def test_a_batch_of_long_prompts_with_four_tasks():
    rng = np.random.default_rng(11)
    tasks = random_task_set(rng, vocab_size=8, n_tasks=4, slots=2)
    model = build(tasks, max_examples=120)  # 484 tokens
    prompts = [sample_prompt(rng, tasks, 120, mixture_shares("dirichlet", 4, rng), 0.25, 0.1).prompt
               for _ in range(3)]
    tokens = np.stack([tokenize(tasks, p) for p in prompts])
    theirs = hooked_readout(to_hooked_transformer(model), tokens)
    ours = executor.run_tokens(model, tokens, dtype="float64")
    assert np.abs(theirs - ours).max() <= AGREEMENT


def test_the_hooked_transformer_is_a_plain_float64_transformer_holding_our_weights():
    tasks = TaskSet(5, 2, [Task("copy0", 0, [0, 1, 2, 3, 4]), Task("next1", 1, [1, 2, 3, 4, 0])])
    import torch
    from transformer_lens import HookedTransformer

    model = build(tasks, max_examples=6)
    hooked = to_hooked_transformer(model)
    assert isinstance(hooked, HookedTransformer)
    cfg = hooked.cfg
    assert (cfg.normalization_type, cfg.act_fn, cfg.positional_embedding_type, cfg.attention_dir) == (
        None, "relu", "standard", "causal")
    assert cfg.use_attn_scale is False and cfg.dtype == torch.float64
    assert [block.attn.attn_scale for block in hooked.blocks] == [1.0] * 7
    assert not any("LayerNorm" in type(m).__name__ or "RMSNorm" in type(m).__name__ for m in hooked.modules())
    c = model.config
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_mlp, cfg.n_ctx, cfg.d_vocab, cfg.d_vocab_out) \
        == (7, 2, c.d_model, c.d_head, c.d_mlp, c.n_ctx, 7, 5)
    state = hooked.state_dict()
    names = state_dict_names(model)
    assert len(names) == 4 + 7 * 12
    for key, path in names.items():
        array = model.params
        for p in path:
            array = array[p]
        assert state[key].dtype == torch.float64
        assert np.array_equal(state[key].numpy(), array), key


def test_our_kl_is_the_paper_code_formula_when_answers_differ():
    """``F.kl_div(q.log(), p, reduction="sum")`` (edixiong/task-superposition) on distinct answers."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(5)
    for _ in range(20):
        K = int(rng.integers(2, 6))
        shares = rng.dirichlet(np.ones(K))
        probabilities = rng.dirichlet(np.ones(K + 2))   # some mass on non-answer tokens
        answers = rng.permutation(K + 2)[:K]
        paper = F.kl_div(torch.tensor(probabilities[answers]).log(), torch.tensor(shares), None, None, "sum").item()
        assert calibration_kl(shares, answers, probabilities) == pytest.approx(paper, rel=1e-12, abs=1e-15)
    assert math.isinf(calibration_kl([1.0], [0], [0.0, 1.0]))


def test_export_command_checks_transformer_lens(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(superpose.cli, "COMMAND_MODULES", ("superpose.verify.cli",))
    tasks = tmp_path / "tasks.json"
    tasks.write_text('{"vocab_size": 4, "slots": 1, "tasks": [{"name": "id", "slot": 0, "table": [0, 1, 2, 3]},'
                     ' {"name": "inc", "slot": 0, "table": [1, 2, 3, 0]}]}')
    out = str(tmp_path / "m.safetensors")
    assert superpose.cli.main(["export", str(tasks), "-o", out, "--max-examples", "10",
                               "--check-transformer-lens", "4"]) == 0
    text = capsys.readouterr().out
    assert "TransformerLens forward vs ours on 4 random prompts (float64): max |difference|" in text
    worst = float(text.rsplit("max |difference| ", 1)[1].split()[0])
    assert worst <= AGREEMENT
