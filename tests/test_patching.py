"""The shared patching API (verify/patching.py) and the trained model's export (train/hooked.py).

References are independent of the hookable forward pass: the trained model's own Flax
``GPT.apply``, the constructed model's JAX runner (``superpose.model``) and TransformerLens.
"""

import jax
import numpy as np
import pytest

from superpose import Example, Prompt, Task, TaskSet, build, tokenize
from superpose.model import apply_layers, embed, run_tokens, unembed
from superpose.train.hooked import from_checkpoint
from superpose.train.model import compiled_logits
from superpose.train.trainer import CHECKPOINT_FILES, TrainConfig, TrainResult, _initial_state, _save, load_checkpoint
from superpose.verify.patching import (
    LogitDifference,
    PatchError,
    Site,
    TokenProbability,
    activation_patch,
    from_constructed,
    run_with_patches,
)

CHECKPOINT = "train/results/generation"   # a committed checkpoint (with its .msgpack)
F32_EPS = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def trained_run():
    return load_checkpoint(CHECKPOINT)


@pytest.fixture(scope="module")
def trained(trained_run):
    return from_checkpoint(trained_run)


@pytest.fixture(scope="module")
def offset_run():
    """A randomly initialised GPT with the example-offset position embedding (``train.model``)."""
    config = TrainConfig(family="positions", vocab_size=8, slots=3, n_examples=4, d_model=16, n_layers=2, n_heads=2,
                         example_positions=True)
    params, opt_state = jax.jit(_initial_state, static_argnums=0)(config)   # one program, not one per init op
    return TrainResult(config, params, opt_state, 0)


@pytest.fixture(scope="module")
def small_tasks():
    return TaskSet(vocab_size=4, slots=2, tasks=[Task("copy0", 0, [0, 1, 2, 3]), Task("next1", 1, [1, 2, 3, 0])])


@pytest.fixture(scope="module")
def constructed_model(small_tasks):
    return build(small_tasks, max_examples=3)


@pytest.fixture(scope="module")
def constructed(constructed_model):
    return from_constructed(constructed_model)


def _random_tokens(rng, n_tokens, batch, T):
    return rng.integers(0, n_tokens, (batch, T))


def _flax_logits(run, tokens):
    return np.asarray(compiled_logits(run.config.model_config)(run.params, tokens), dtype=np.float64)


def test_trained_forward_matches_flax(trained_run, trained):
    tokens = _random_tokens(np.random.default_rng(0), trained_run.config.vocab_size + 2, 6, trained_run.config.n_ctx)
    flax = _flax_logits(trained_run, tokens)
    ours = run_with_patches(trained, tokens)
    assert np.abs(ours - flax).max() <= 64 * F32_EPS * np.abs(flax).max()   # Flax runs in float32


def test_the_example_offset_embedding_folds_into_the_position_table(offset_run):
    """The hookable model (one ``W_pos``) equals Flax's GPT, whose offset table is a separate parameter
    that changes its output (so the fold is not comparing two models that ignore it)."""
    config = offset_run.config
    assert config.model_config.example_length == config.tasks.example_length == 5
    tokens = _random_tokens(np.random.default_rng(2), config.vocab_size + 2, 4, config.n_ctx)
    flax = _flax_logits(offset_run, tokens)
    ours = run_with_patches(from_checkpoint(offset_run), tokens)
    assert np.abs(ours - flax).max() <= 64 * F32_EPS * np.abs(flax).max()
    without = {**offset_run.params, "example_pos_embed": 0 * offset_run.params["example_pos_embed"]}
    assert np.abs(_flax_logits(TrainResult(config, without, None, 0), tokens) - flax).max() > 1e-3


def test_constructed_forward_matches_runner(constructed_model, constructed):
    tokens = _random_tokens(np.random.default_rng(1), constructed_model.config.n_vocab, 5, 12)
    reference = run_tokens(constructed_model, tokens, "float64")
    assert np.abs(run_with_patches(constructed, tokens) - reference).max() < 1e-12


def test_zero_mlp_units_are_left_out_and_an_edited_one_counts(constructed_model):
    """The forward pass skips hidden units that write nothing (most of the construction's padded
    MLPs): the output is the runner's; a unit edited afterwards (weights are plain arrays) counts."""
    weights = from_constructed(constructed_model)
    block = weights.blocks[0] = {name: a.copy() for name, a in weights.blocks[0].items()}   # the model's own stay
    dead = np.flatnonzero(~block["W_in"].any(0) & ~block["W_out"].any(1))
    assert len(dead) > 0   # the layer is padded to the widest layer's width
    tokens = _random_tokens(np.random.default_rng(4), constructed_model.config.n_vocab, 3, 12)
    before = {}
    assert np.abs(run_with_patches(weights, tokens, cache=before)
                  - run_tokens(constructed_model, tokens, "float64")).max() < 1e-12
    unit, direction = dead[0], np.random.default_rng(5).normal(size=weights.d_model)
    block["b_in"][unit], block["W_out"][unit] = 0.5, direction   # a constant unit: relu(0.5) = 0.5
    after = {}
    run_with_patches(weights, tokens, cache=after)
    assert np.abs(after[(1, "mlp")] - before[(1, "mlp")] - 0.5 * direction).max() < 1e-12


@pytest.mark.parametrize("kind", ["trained", "constructed"])
def test_patching_a_prompt_into_itself_changes_nothing(kind, trained, constructed):
    weights = trained if kind == "trained" else constructed
    T = 20 if kind == "trained" else 12
    tokens = _random_tokens(np.random.default_rng(2), weights.W_E.shape[0], 4, T)
    clean = run_with_patches(weights, tokens)
    sites = [Site(layer, sub) for layer in range(1, weights.n_layers + 1) for sub in
             ("resid_pre", "attn", "resid_mid", "mlp", "resid_post")]
    sites += [Site(1, "attn", head=h, position=-1) for h in range(weights.n_heads)]
    patched = activation_patch(weights, tokens, tokens, sites)
    assert np.abs(patched - clean).max() < 1e-12


@pytest.mark.parametrize("kind", ["trained", "constructed"])
def test_patching_the_last_residual_reproduces_the_source(kind, trained, constructed):
    weights = trained if kind == "trained" else constructed
    rng = np.random.default_rng(3)
    T = 20 if kind == "trained" else 12
    destination, source = (_random_tokens(rng, weights.W_E.shape[0], 4, T) for _ in range(2))
    L = weights.n_layers
    patched = activation_patch(weights, destination, source, [Site(L, "resid_post")])
    source_out, destination_out = run_with_patches(weights, source), run_with_patches(weights, destination)
    assert np.abs(patched - source_out).max() < 1e-12
    assert np.abs(destination_out - source_out).max() > 1e-3   # the prompts do differ
    # at one position: that position takes the source's output, the others keep the destination's
    one = activation_patch(weights, destination, source, [Site(L, "resid_post", position=-1)])
    assert np.abs(one[:, -1] - source_out[:, -1]).max() < 1e-12
    assert np.abs(one[:, :-1] - destination_out[:, :-1]).max() < 1e-12


def test_a_mid_layer_patch_matches_the_jax_runner(small_tasks, constructed_model, constructed):
    """A patched mixture block, by the hookable pass and by superpose.model's embed/apply_layers/unembed."""
    tokens = tokenize(small_tasks, Prompt([Example([0, 2], 0), Example([1, 3], 0)], query=[2, 1]))[None]
    mix = constructed_model.layout["mix"].slice

    def set_mix(h):
        h = h.copy()
        h[:, mix] = [0.25, 0.75]
        return h

    ours = run_with_patches(constructed, tokens, {Site(5, "resid_post", position=-1): set_mix})[0, -1]
    h = apply_layers(constructed_model, embed(constructed_model, tokens), 1, 5)
    h[:, -1] = set_mix(h[:, -1])
    reference = unembed(constructed_model, apply_layers(constructed_model, h, 6, 7))[0, -1]
    assert np.abs(ours - reference).max() < 1e-12
    # query (2, 1): copy0 answers 2, next1 answers 2 -> both 2; check the readouts on that row
    assert TokenProbability(2)(constructed, ours[None, None])[0] == pytest.approx(reference[2])


def test_head_outputs_sum_to_the_attention_output(trained):
    tokens = _random_tokens(np.random.default_rng(4), trained.W_E.shape[0], 3, 15)
    cache: dict = {}
    run_with_patches(trained, tokens, cache=cache)
    for layer in range(1, trained.n_layers + 1):
        total = cache[(layer, "head_out")].sum(1) + trained.blocks[layer - 1]["b_O"]
        assert np.abs(total - cache[(layer, "attn")]).max() < 1e-12
    # zeroing every head leaves only b_O: the same as a run whose W_O is zero
    zeroed = run_with_patches(trained, tokens, {Site(1, "attn", head=h): np.zeros_like for h in range(trained.n_heads)})
    import copy
    no_heads = copy.copy(trained)
    no_heads.blocks = [dict(b) for b in trained.blocks]
    no_heads.blocks[0]["W_O"] = np.zeros_like(trained.blocks[0]["W_O"])
    assert np.abs(zeroed - run_with_patches(no_heads, tokens)).max() < 1e-12


def test_readouts(trained):
    tokens = _random_tokens(np.random.default_rng(5), trained.W_E.shape[0], 3, 10)
    out = run_with_patches(trained, tokens)
    last = out[:, -1]
    p = np.exp(last - last.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    assert np.allclose(TokenProbability([1, 2, 3])(trained, out), p[[0, 1, 2], [1, 2, 3]])
    assert np.allclose(LogitDifference(4, 5, position=3)(trained, out), out[:, 3, 4] - out[:, 3, 5])


def test_bad_sites_and_tokens_are_named(trained):
    tokens = np.zeros((1, 5), dtype=int)
    for site, word in [(Site(0, "resid_post"), "layer"), (Site(1, "resid"), "sublayer"),
                       (Site(1, "mlp", head=0), "head"), (Site(1, "attn", head=99), "head"),
                       (Site(1, "attn", position=7), "position")]:
        with pytest.raises(PatchError, match=word):
            run_with_patches(trained, tokens, {site: lambda x: x})
    with pytest.raises(PatchError, match="ids"):
        run_with_patches(trained, np.full((1, 3), 99))
    with pytest.raises(PatchError, match="shape"):
        run_with_patches(trained, tokens, {Site(1, "mlp", position=-1): lambda x: x[:, :2]})
    with pytest.raises(PatchError, match="different lengths"):
        activation_patch(trained, tokens, np.zeros((1, 4), dtype=int), [Site(1, "mlp")])


@pytest.mark.slow
def test_transformer_lens_export_matches_flax(trained_run, tmp_path):
    import torch
    from superpose.cli import main
    from superpose.train.hooked import load_trained_hooked_transformer

    path = str(tmp_path / "trained.safetensors")
    assert main(["export-trained", CHECKPOINT, "-o", path]) == 0
    assert main(["export-trained", CHECKPOINT, "-o", path]) == 2           # exists: needs --force
    hooked = load_trained_hooked_transformer(path)
    assert hooked.cfg.normalization_type == "LN" and hooked.cfg.act_fn == "gelu_new" and hooked.cfg.eps == 1e-6
    tokens = _random_tokens(np.random.default_rng(6), trained_run.config.vocab_size + 2, 8, trained_run.config.n_ctx)
    with torch.no_grad():
        lens = hooked(torch.from_numpy(tokens)).numpy().astype(np.float64)
    flax = _flax_logits(trained_run, tokens)
    assert np.abs(lens - flax).max() <= 64 * F32_EPS * np.abs(flax).max()


@pytest.mark.slow
def test_transformer_lens_export_of_a_model_with_example_offsets(offset_run, tmp_path):
    import torch
    from superpose.cli import main
    from superpose.train.hooked import load_trained_hooked_transformer

    _save(str(tmp_path / "run"), offset_run.config, offset_run.params, offset_run.opt_state, 0, [])
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(CHECKPOINT_FILES)
    path = str(tmp_path / "offsets.safetensors")
    assert main(["export-trained", str(tmp_path / "run"), "-o", path]) == 0
    config = offset_run.config
    tokens = _random_tokens(np.random.default_rng(7), config.vocab_size + 2, 4, config.n_ctx)
    with torch.no_grad():
        lens = load_trained_hooked_transformer(path)(torch.from_numpy(tokens)).numpy().astype(np.float64)
    flax = _flax_logits(offset_run, tokens)
    assert np.abs(lens - flax).max() <= 64 * F32_EPS * np.abs(flax).max()


def test_export_trained_refuses_a_checkpoint_without_weights(tmp_path, capsys):
    from superpose.cli import main

    assert main(["export-trained", str(tmp_path), "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "no readable checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
