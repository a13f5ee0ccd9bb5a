"""examples/inside_a_trained_model.py on the committed checkpoint it names (its ``CHECKPOINT``).

The trained model's numbers are recomputed from independent pieces: the residual stream taken
from Flax's own forward pass (``capture_intermediates``), probed by ``fit_probe``.
"""

import re
from pathlib import Path

import jax
import numpy as np
import pytest

from conftest import run_example

pytestmark = pytest.mark.slow   # the example runs for minutes on a loaded 2-core machine

from superpose.examples import inside_a_trained_model as example
from superpose.train import inside
from superpose.train.model import GPT, trained_position_table
from superpose.train.trainer import load_checkpoint
from superpose.verify.probes import fit_probe

N_PROBE_SMALL = 96   # main(small=True) probes this many prompts (seed 0)


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    return run_example("inside_a_trained_model", tmp_path_factory.mktemp("inside"))


def flax_residuals(run, tokens):
    """The residual at the last token after the embedding and after each block, from Flax's forward pass."""
    # one compiled program, not Flax's eager op-by-op run (a program per operation); float32 either way
    apply = jax.jit(lambda params, t: GPT(run.config.model_config).apply({"params": params}, t,
                                                                          capture_intermediates=True))
    _, state = apply(run.params, tokens)
    inter = state["intermediates"]
    embed = inter["embed"]["__call__"][0] + trained_position_table(run.params, run.config.model_config)[: tokens.shape[1]]
    blocks = [inter[f"block_{i}"]["__call__"][0] for i in range(run.config.n_layers)]
    return np.stack([np.asarray(h[:, -1], dtype=np.float64) for h in [embed, *blocks]])


def test_trained_probe_r2_matches_an_independent_fit(ran):
    result, _ = ran
    run = load_checkpoint(str(example.CHECKPOINT))
    prompts = inside.mixture_prompts(run.config.tasks, result.n_examples, N_PROBE_SMALL, seed=0)
    residuals = flax_residuals(run, jax.numpy.asarray(prompts.tokens))
    r2 = [fit_probe(r, prompts.shares, seed=0).r2 for r in residuals]
    assert np.allclose(result.probe_r2["trained"], r2, atol=1e-3)   # Flax runs in float32


def test_constructed_probe_reads_the_mixture_from_layer_5(ran):
    result, printed = ran
    r2 = result.probe_r2["constructed"]
    assert len(r2) == 8 and min(r2[5:]) > 0.999 and max(r2[:5]) < 0.5
    assert "constructed  L0" in printed


def test_task_vectors_reproduce_the_mixture_in_the_construction_at_layer_5(ran):
    result, _ = ran
    balanced = result.task_vectors["constructed/balanced"]["per_layer"]
    assert balanced[5]["distance_to_mixed_prompt"] < 1e-6
    for key, tv in result.task_vectors.items():
        # half the L1 distance: at most 1 between distributions (the trained model's softmax); the
        # construction's linear readout of a patched residual need not be one, so only >= 0 there
        top = 1 if key.startswith("trained/") else np.inf
        for layer in tv["per_layer"]:
            assert 0 <= layer["distance_to_mixed_prompt"] <= top, (key, layer["layer"])


def test_circuits_name_heads_and_masses(ran):
    result, printed = ran
    assert [h["construction_layer"] for h in result.heads] == [2, 5, 6]
    for h in result.heads:
        assert h["construction_mass"] > 0.99 and 0 <= h["trained_mass"] <= 1 + 1e-9
        assert f"L{h['trained_layer']}H{h['trained_head']}: {h['trained_mass']:.3f}" in printed
    run = load_checkpoint(str(example.CHECKPOINT))
    assert result.dla["trained"]["heads"].shape == (run.config.n_layers, run.config.n_heads)


def test_figures(ran):
    result, _ = ran
    assert [p.name for p in result.figures] == ["inside_probes.png", "inside_task_vectors.png", "inside_circuits.png"]
    for path in result.figures:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size < 400_000


def test_the_readme_patching_snippet_prints_what_the_readme_says(capsys, monkeypatch):
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## Inside a trained model"):]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "activation_patch(" in snippet and f'load_checkpoint("{example.CHECKPOINT.relative_to(root)}")' in snippet
    monkeypatch.chdir(root)
    exec(compile(snippet, "README snippet", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    said = section[section.index("```", section.index("```python") + 3):][:600]   # the prose after the snippet
    assert lines[0].startswith("clean ") and lines[-1].startswith("L2H0 ")
    assert f"`{lines[0]}`" in said and f"`{lines[-1]}`" in said
    layers = [line.split(" ", 1) for line in lines[1:-1]]
    assert [int(layer) for layer, _ in layers] == list(range(1, len(layers) + 1))
    for value in {value for _, value in layers}:      # each patched value the README quotes
        assert f"`{value}`" in said
