"""The emergence experiment on character retrieval: each arm's data statistics, a short training run,
the resumable CLI, and the committed checkpoints' evaluation reproduced exactly."""

import json
import os
from dataclasses import replace

import numpy as np
import pytest
from scipy.special import betaln

from superpose.train.data import arm_batch, position_tasks, single_task_batch
from superpose.train.emergence import (bayes_references, coverage, coverage_prompts, evaluate_runs, interval,
                                       reference_name)
from superpose.train.trainer import TrainConfig, TrainConfigError, load_checkpoint, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "train", "results", "emergence")
TASKS = position_tasks(16, 8)


def unpack(batch, tasks):
    B, m = batch.answers.shape
    return batch.tokens[:, 1:].reshape(B, m, tasks.example_length)[..., :tasks.slots], batch.answers


def test_conclusive_arm_is_single_task_with_distinct_characters_and_the_stated_noise():
    eps, d = 0.2, 16
    batch = arm_batch(TASKS, "conclusive", 4000, 6, np.random.default_rng(0), label_noise=eps)
    x, y = unpack(batch, TASKS)
    assert all(len(set(row)) == 8 for row in x.reshape(-1, 8).tolist())
    assert (batch.example_tasks == batch.task_ids[:, None]).all()
    assert np.bincount(batch.task_ids, minlength=8).min() > 4000 / 8 * 0.8
    wrong = (y != np.take_along_axis(x, batch.example_tasks[..., None], -1)[..., 0]).mean()
    assert wrong == pytest.approx(eps * (1 - 1 / d), abs=0.01)   # a noisy answer equals the true one w.p. 1/d
    clean = arm_batch(TASKS, "conclusive", 7, 3, np.random.default_rng(4))
    same = single_task_batch(TASKS, 7, 3, np.random.default_rng(4))
    assert np.array_equal(clean.tokens, same.tokens) and np.array_equal(clean.answers, same.answers)


def test_weak_arm_draws_characters_with_replacement_so_examples_fit_several_tasks():
    batch = arm_batch(TASKS, "weak", 4000, 4, np.random.default_rng(1))
    x, y = unpack(batch, TASKS)
    assert (batch.example_tasks == batch.task_ids[:, None]).all()
    assert np.array_equal(y, np.take_along_axis(x, batch.example_tasks[..., None], -1)[..., 0])
    repeated = np.mean([len(set(row)) < 8 for row in x.reshape(-1, 8).tolist()])
    assert repeated == pytest.approx(1 - np.prod(np.arange(9, 17) / 16), abs=0.01)   # P(8 draws not distinct)
    fits = (x == y[..., None]).sum(-1)
    assert (fits >= 1).all()
    assert (fits > 1).mean() == pytest.approx(1 - (15 / 16) ** 7, abs=0.01)   # another slot shows the answer


def test_mixed_arm_mixes_tasks_as_a_dirichlet_multinomial():
    K, m, alpha = 8, 9, 0.25
    batch = arm_batch(TASKS, "mixed", 6000, m, np.random.default_rng(2), dirichlet_alpha=alpha)
    x, y = unpack(batch, TASKS)
    assert np.array_equal(y, np.take_along_axis(x, batch.example_tasks[..., None], -1)[..., 0])
    assert all(len(set(row)) == 8 for row in x.reshape(-1, 8).tolist())
    distinct = np.mean([len(set(row)) for row in batch.example_tasks.tolist()])
    # E[#tasks seen] = K (1 - E[(1 - p_k)^m]) with p_k ~ Beta(alpha, (K - 1) alpha)
    expected = K * (1 - np.exp(betaln(alpha, (K - 1) * alpha + m) - betaln(alpha, (K - 1) * alpha)))
    assert distinct == pytest.approx(expected, rel=0.03)
    assert np.bincount(batch.example_tasks.ravel(), minlength=K).min() > 6000 * m / K * 0.8


def test_bad_arm_settings_are_typed_errors():
    base = dict(family="positions", vocab_size=16, slots=8, n_examples=3)
    for field, value, message in [("arm", "noisy", "arm: must be one of"), ("label_noise", 1.0, "label_noise"),
                                  ("dirichlet_alpha", 0, "dirichlet_alpha"), ("label_noise", True, "label_noise")]:
        with pytest.raises(TrainConfigError, match=message):
            TrainConfig.from_dict({**base, field: value})
    with pytest.raises(TrainConfigError, match="one-token answers"):
        TrainConfig.from_dict({"family": "pairs", "arm": "weak"})


def test_coverage_prompts_are_uniform_mixtures_and_coverage_counts_top_k():
    prompts, answers = coverage_prompts(TASKS, 3, 8, 20, seed=1)
    for prompt, ans in zip(prompts, answers):
        owners = [[k for k in range(8) if TASKS.tasks[k](e.inputs) == e.answer] for e in prompt.examples]
        counts = sorted(np.bincount([o[0] for o in owners], minlength=8).tolist())
        assert counts[-3:] == [2, 3, 3] and sum(counts) == 8 and len(set(ans.tolist())) == 3
    probs = np.zeros((2, 16))
    probs[0, [answers[0][0], answers[0][1], 15 if 15 not in answers[0] else 14]] = [0.5, 0.3, 0.2]
    probs[1, answers[1]] = 1 / 3
    assert coverage(probs, answers[:2]) == pytest.approx((2 / 3 + 1) / 2)
    assert interval([1.0, 2.0, 3.0])["ci95"] == pytest.approx(4.302652729911275 * 1 / np.sqrt(3))


# The model, optimizer and batch shapes of the two short runs below: they share one compiled step.
SHORT_RUN = dict(family="positions", vocab_size=8, slots=2, n_examples=4, d_model=16, n_layers=1, n_heads=2,
                 batch_size=32, steps=60, learning_rate=1e-2, warmup_steps=5, eval_every=30, eval_prompts=64,
                 checkpoint_every=30)


@pytest.mark.slow
def test_short_training_run_of_the_mixed_arm_approaches_its_bayes_floor(tmp_path):
    config = TrainConfig(**SHORT_RUN, arm="mixed", label_noise=0.05, dirichlet_alpha=0.5)
    result = train(config, str(tmp_path / "run"))
    first, last = result.history[0], result.history[-1]
    assert last["eval_loss"] < first["eval_loss"]
    assert last["eval_loss"] > last["bayes_loss"] > 0   # no predictor beats the Bayes-optimal one on average
    assert load_checkpoint(str(tmp_path / "run")).step == 60


@pytest.mark.slow
def test_continue_skips_finished_runs_and_resumes_interrupted_ones(tmp_path, capsys):
    import superpose.cli

    config = tmp_path / "c.json"
    config.write_text(json.dumps({**SHORT_RUN, "arm": "weak", "label_noise": 0.1}))
    out = str(tmp_path / "run")
    args = ["train", "--config", str(config), "--out", out, "--quiet", "--continue"]
    train(TrainConfig.from_dict(json.loads(config.read_text())), out, stop_after=30)
    assert superpose.cli.main(args) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["resumed_from_step"] == 30
    assert superpose.cli.main(args) == 0
    assert "finished (60 steps), skipped" in capsys.readouterr().out
    assert superpose.cli.main(args + ["--seed", "3"]) == 2
    assert "different config" in capsys.readouterr().err


def test_each_training_distribution_gets_its_own_bayes_reference():
    conclusive = TrainConfig(family="positions", slots=4, arm="conclusive", label_noise=0.05)
    mixed = TrainConfig(family="positions", slots=4, arm="mixed", label_noise=0.05, dirichlet_alpha=0.25)
    peaked = TrainConfig(family="positions", slots=4, arm="mixed", label_noise=0.05, dirichlet_alpha=0.05)
    # one distribution per arm: the plain names (a conclusive arm's alpha is not part of its distribution)
    assert list(bayes_references([conclusive, mixed, replace(conclusive, seed=3, dirichlet_alpha=0.5)])) == \
        ["bayes conclusive", "bayes mixed"]
    references = bayes_references([conclusive, mixed, peaked])
    assert list(references) == ["bayes conclusive", "bayes mixed (alpha 0.25)", "bayes mixed (alpha 0.05)"]
    assert reference_name(peaked, references) == "bayes mixed (alpha 0.05)"
    assert reference_name(mixed, references) == "bayes mixed (alpha 0.25)"
    # the reference's config is the one its predictor is computed from
    assert references["bayes mixed (alpha 0.05)"].dirichlet_alpha == 0.05
    assert references["bayes mixed (alpha 0.25)"].dirichlet_alpha == 0.25
    assert list(bayes_references([conclusive, replace(conclusive, label_noise=0.1)])) == \
        ["bayes conclusive (label_noise 0.05)", "bayes conclusive (label_noise 0.1)"]
    # the committed report measures each run against its own distribution's reference
    with open(os.path.join(RESULTS, "s4-offsets", "emergence.json")) as f:
        models = json.load(f)["models"]
    assert models["bayes mixed (alpha 0.05)"]["dirichlet_alpha"] == 0.05
    assert models["s4-offsets-mixed-long-peaked-seed2"]["reference"] == "bayes mixed (alpha 0.05)"
    assert models["s4-offsets-mixed-long-seed0"]["reference"] == "bayes mixed (alpha 0.25)"


@pytest.mark.parametrize("experiment,run", [("s4", "s4-conclusive-seed0"), ("s4", "s4-mixed-seed0"),
                                            ("s4-offsets", "s4-offsets-conclusive-long-seed0")])
def test_committed_checkpoint_reproduces_its_committed_metrics_exactly(experiment, run):
    with open(os.path.join(RESULTS, experiment, "emergence.json")) as f:
        committed = json.load(f)
    path = os.path.join(RESULTS, experiment, run)
    labels = list(committed["models"][run]["subsets"])
    report = evaluate_runs({run: load_checkpoint(path)}, [tuple(int(k) for k in s.split("+")) for s in labels],
                           committed["prompts_per_point"], committed["coverage_prompts"],
                           constructed_prompts_per_point=0, seed=committed["seed"], floor_prompts=8)
    assert report["models"][run] == committed["models"][run]


@pytest.mark.parametrize("experiment", ["s4", "s8", "s4-offsets"])
def test_the_readme_tables_are_the_ones_evaluate_mixtures_printed(experiment):
    from superpose.train.emergence import report_table, run_table

    with open(os.path.join(RESULTS, experiment, "emergence.json")) as f:
        report = json.load(f)
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert report_table(report) in readme
    if experiment != "s4":   # the runs that learned are told apart from those that did not
        assert run_table(report) in readme


def test_evaluate_mixtures_cli_on_a_committed_checkpoint_and_its_bad_options(tmp_path, capsys):
    import superpose.cli

    run = os.path.join(RESULTS, "s4", "s4-weak-seed0")
    out = str(tmp_path / "eval")
    args = ["evaluate-mixtures", "--checkpoint", run, "--out", out, "--prompts-per-point", "1",
            "--coverage-prompts", "2", "--constructed-prompts-per-point", "1"]
    assert superpose.cli.main(args) == 0
    report = json.loads((tmp_path / "eval" / "emergence.json").read_text())
    assert report["models"]["constructed"]["subsets"]["0+1"]["kl"] <= 1e-9
    assert set(report["models"]) == {"bayes weak", "constructed", "s4-weak-seed0"}
    for name in ("calibration", "coverage", "kl_size"):
        assert (tmp_path / "eval" / f"{name}.png").stat().st_size > 1000
    capsys.readouterr()
    assert superpose.cli.main(args) == 2                      # outputs exist: --force needed
    assert superpose.cli.main(args + ["--force", "--coverage-prompts", "0"]) == 2
    assert superpose.cli.main(args + ["--force", "--subsets", "0,9"]) == 2
    err = capsys.readouterr().err
    assert "--coverage-prompts" in err and "--subsets" in err and "exists" in err.lower()
