"""Generation collapse in a trained model: the two-token training family, the evaluation's measures on
the analytic rules (derived by hand), the command line, and the committed checkpoint's numbers."""

import json
from pathlib import Path

import numpy as np
import pytest

import superpose.cli
from superpose.setting import Example
from superpose.train.data import mixed_prompt, pair_retrieval_tasks, single_task_batch
from superpose.train.generation import (analytic_next_token, evaluate_checkpoint, evaluate_generation,
                                        prefix_tables, prompt_metrics, trained_step)
from superpose.train.trainer import TrainConfig, TrainConfigError, TrainResult, evaluate, load_checkpoint, train
from superpose.verify.analytic import consistent_tasks
from superpose.verify.generation import greedy, superposed

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "train" / "results" / "generation"
# The committed run's model and evaluation prompts (train/configs/generation.json), trained for 6 steps:
# Flax evaluates eagerly (a compiled program per operation and shape), so the committed checkpoint's
# evaluation below reuses the programs this run compiled.
TINY = TrainConfig(family="pairs", vocab_size=16, slots=3, n_examples=8, d_model=64, n_layers=3, n_heads=4,
                   batch_size=8, steps=6, learning_rate=1e-2, warmup_steps=1, eval_every=3, eval_prompts=256,
                   checkpoint_every=6)


def test_pair_family_batches_are_single_task_with_two_token_answers():
    tasks = pair_retrieval_tasks(vocab_size=10, slots=3)
    assert [t.name for t in tasks.tasks] == ["copy AB", "copy AC", "copy BA"]
    batch = single_task_batch(tasks, batch_size=32, n_examples=4, rng=np.random.default_rng(1))
    n = tasks.example_length   # 3 inputs, ARROW, 2 answer tokens
    assert n == 6 and batch.tokens.shape == (32, 1 + 4 * n)
    assert batch.answer_positions.tolist() == [4, 5, 10, 11, 16, 17, 22, 23]
    assert np.array_equal(batch.tokens[:, batch.answer_positions + 1], batch.answers)
    assert set(batch.task_ids.tolist()) == {0, 1, 2}
    for row, k in zip(batch.tokens, batch.task_ids):
        for i in range(4):
            x = row[1 + i * n: 4 + i * n].tolist()
            y = row[5 + i * n: 7 + i * n].tolist()
            assert row[4 + i * n] == tasks.arrow and len(set(x)) == 3
            assert consistent_tasks(tasks, Example(x, y)) == [k]   # distinct inputs: one task fits


def test_family_is_checked():
    with pytest.raises(TrainConfigError, match="family"):
        TrainConfig.from_dict({"family": "sentences"})
    with pytest.raises(TrainConfigError, match="family"):
        TrainConfig.from_dict({"family": ["pairs"]})
    with pytest.raises(TrainConfigError, match="pairs"):
        TrainConfig.from_dict({"family": "pairs", "slots": 2})
    assert TrainConfig().family == "retrieval" and TrainConfig().tasks.answer_length == 1
    assert TINY.n_ctx == 9 * 6   # n_examples + 1 examples of s + 1 + A positions
    assert TrainConfig(family="words").tasks.answer_length == 2


@pytest.mark.slow
def test_a_short_pairs_run_and_its_step(tmp_path):
    result = train(TINY, str(tmp_path / "run"))
    loaded = load_checkpoint(str(tmp_path / "run"))
    # the last record is the evaluation of the checkpoint written at step 6
    assert loaded.step == 6 and {k: result.history[-1][k] for k in ("step", "accuracy_last", "eval_loss")} == \
        {"step": 6, **{k: v for k, v in evaluate(TINY, loaded.params).items() if k in ("accuracy_last", "eval_loss")}}
    tasks = TINY.tasks
    prompt, _ = mixed_prompt(tasks, [0, 1], [1, 1], np.random.default_rng(0))
    step = trained_step(loaded.config, loaded.params, prompt)
    first = step(())
    assert first.shape == (16,) and 0 < first.sum() <= 1 + 1e-9
    decoded = superposed(step, threshold=0)
    assert len(decoded.answers) == 16 * 16 and decoded.forward_passes == 1 + 16
    assert step.forward_passes == 1 + decoded.forward_passes   # the call above, then the decode's
    assert sum(p for _, p in decoded.answers) <= first.sum() + 1e-9   # content tokens only, not renormalised
    assert len(greedy(trained_step(loaded.config, loaded.params, prompt)).answers[0][0]) == 2


def hand_prompt(tasks, counts, task_ids, seed=0):
    return mixed_prompt(tasks, list(task_ids), list(counts), np.random.default_rng(seed))[0]


def test_measures_on_the_analytic_rules_by_hand():
    tasks = pair_retrieval_tasks(vocab_size=8, slots=3)
    prompt = hand_prompt(tasks, (3, 1), (0, 2))   # AB 3/4, BA 1/4: first tokens differ
    p = 3 / 4
    cond = prompt_metrics(tasks, prompt, prefix_tables(analytic_next_token(tasks), tasks, [prompt])[0], 0)
    assert cond["collapse_rate"] == 1 and cond["chimera_mass"] == 0 and abs(cond["sequence_kl"]) < 1e-12
    assert cond["decoders"]["greedy"]["coverage"] == 0.5 and cond["decoders"]["superposed"]["coverage"] == 1
    assert cond["decoders"]["superposed"]["forward_passes"] == 3
    marg = prompt_metrics(tasks, prompt, prefix_tables(analytic_next_token(tasks, "marginal"), tasks, [prompt])[0], 0)
    # the second token ignores the first: stays with AB p*p, with BA (1-p)^2; chimeras (x_A,x_A), (x_B,x_B)
    assert marg["collapse_rate"] == pytest.approx(p * p + (1 - p) ** 2, abs=1e-12)
    assert marg["chimera_mass"] == pytest.approx(2 * p * (1 - p), abs=1e-12)
    assert marg["mixed_chimera_mass"] == pytest.approx(2 * p * (1 - p), abs=1e-12)
    assert marg["sequence_kl"] == pytest.approx(p * np.log(p / p ** 2) + (1 - p) * np.log(1 / (1 - p)), abs=1e-12)

    same = hand_prompt(tasks, (1, 3), (0, 1))   # AB 1/4, AC 3/4: the first token is x_A for both
    cond = prompt_metrics(tasks, same, prefix_tables(analytic_next_token(tasks), tasks, [same])[0], 0)
    assert cond["first_token_points"] == [(1.0, 1.0)] and cond["collapse_rate"] == 1
    assert sorted(cond["answer_probabilities"]) == pytest.approx([0.25, 0.75], abs=1e-12)
    assert cond["decoders"]["beam 2"]["coverage"] == 1 and cond["decoders"]["greedy"]["coverage"] == 0.5


def test_evaluation_compares_models_on_the_same_prompts():
    tasks = pair_retrieval_tasks(vocab_size=8, slots=3, pairs=((0, 1), (1, 0), (2, 0)))
    results = evaluate_generation(tasks, {"c": analytic_next_token(tasks), "m": analytic_next_token(tasks, "marginal")},
                                  n_examples=4, subsets=[(0, 1), (0, 1, 2)], prompts_per_point=2)
    c, m = results["c"]["0+1"], results["m"]["0+1"]
    assert c["n_prompts"] == m["n_prompts"] == 3 * 2   # splits (1,3), (2,2), (3,1)
    assert c["collapse_rate"] == 1 and c["chimera_mass"] == 0 and c["decoders"]["superposed"]["kl"] < 1e-12
    assert c["sequence_slope"] == pytest.approx(1) and c["sequence_r2"] == pytest.approx(1)
    # marginal, by hand over the splits p = 1/4, 1/2, 3/4: chimera mass 2p(1-p)
    assert m["chimera_mass"] == pytest.approx(np.mean([2 * p * (1 - p) for p in (0.25, 0.5, 0.75)]), abs=1e-12)
    assert results["m"]["0+1+2"]["chimera_mass"] > 0 and results["c"]["0+1+2"]["n_prompts"] == 3 * 2
    ab_ac = pair_retrieval_tasks(vocab_size=8, slots=3, pairs=((0, 1), (0, 2)))
    shared = evaluate_generation(ab_ac, {"m": analytic_next_token(ab_ac, "marginal")}, 4, [(0, 1)], 1)
    assert shared["m"]["0+1"]["chimera_mass"] == 0   # a shared first token: marginal = conditioned here
    assert c["decoders"]["greedy"]["kl_infinite"] == 1 and c["decoders"]["greedy"]["coverage"] == 0.5


# --- the command line ---------------------------------------------------------------------

def test_cli_refuses_existing_outputs_and_bad_options(tmp_path, capsys, monkeypatch):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "generation.json").write_text("{}")
    args = ["evaluate-generation", "--checkpoint", str(RESULTS), "--out", str(out)]
    assert superpose.cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists; pass --force" in err
    assert (out / "generation.json").read_text() == "{}"
    for extra, needle in ((["--subsets", "0,7"], "--subsets"), (["--subsets", "a"], "--subsets"),
                          (["--prompts-per-point", "0"], "--prompts-per-point"), (["--threshold", "2"], "--threshold")):
        assert superpose.cli.main(args + ["--force", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err
    # a checkpoint of one-token answers (its weights are never read: the command refuses it first)
    one_token = TrainConfig(**{**TINY.__dict__, "family": "retrieval"})
    monkeypatch.setattr("superpose.train.cli.load_checkpoint", lambda path: TrainResult(one_token, None, None, 0))
    assert superpose.cli.main(["evaluate-generation", "--checkpoint", str(RESULTS), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "one-token answers" in err


# --- the committed checkpoint ------------------------------------------------------------------

def test_committed_checkpoint_is_the_config_and_what_it_learned():
    """The committed checkpoint is the config's run; its recorded evaluation is reproduced; it tells BA
    from the tasks starting with slot A (accuracy 1) but not AB from AC (about 1/2: the README says so)."""
    run = load_checkpoint(str(RESULTS))
    with open(ROOT / "train" / "configs" / "generation.json") as f:
        assert run.config == TrainConfig.from_dict(json.load(f))
    assert run.step == run.config.steps
    final = run.history[-1]
    again = evaluate(run.config, run.params)
    assert {k: final[k] for k in again} == again
    assert final["accuracy_by_task"]["copy BA"] == 1.0
    assert 0.3 < final["accuracy_by_task"]["copy AB"] < 0.7 and 0.3 < final["accuracy_by_task"]["copy AC"] < 0.7


def test_committed_evaluation_is_reproduced_exactly():
    """Re-running the evaluation of the committed checkpoint with the options recorded in
    generation.json gives the committed numbers bit for bit (every model, the constructed one included
    when it was run). Each task subset draws its own prompts from the recorded seed, so one subset
    (the first pair) is re-evaluated: the whole report takes minutes, mostly the constructed model."""
    with open(RESULTS / "generation.json") as f:
        committed = json.load(f)
    assert committed["checkpoint"] == "train/results/generation"
    subset = committed["subsets"][0]
    label = "+".join(map(str, subset))
    again = evaluate_checkpoint(load_checkpoint(str(RESULTS)), [tuple(subset)], committed["prompts_per_point"],
                                committed["seed"], committed["threshold"], committed["constructed"])
    again = json.loads(json.dumps(again))
    assert {k: v for k, v in again.items() if k not in ("subsets", "results")} == \
        {k: v for k, v in committed.items() if k not in ("checkpoint", "subsets", "results")}
    assert set(again["results"]) == set(committed["results"])
    for name, by_subset in again["results"].items():
        assert list(by_subset) == [label]
        assert by_subset[label] == committed["results"][name][label], name
    assert (RESULTS / "generation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
