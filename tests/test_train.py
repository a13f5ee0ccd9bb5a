"""Emergence experiment: data generator, a short training run, checkpoint resume, mixture evaluation."""

import json
import os

import numpy as np
import pytest

from superpose.setting import Example
from superpose.train.data import distinct_inputs, mixed_prompt, retrieval_tasks, single_task_batch
from superpose.train.mixtures import calibration, constructed_probabilities, proportion_grid
from superpose.train.trainer import TrainConfig, TrainConfigError, evaluate, load_checkpoint, train
from superpose.verify.analytic import consistent_tasks

TINY = TrainConfig(vocab_size=8, slots=2, n_examples=4, d_model=16, n_layers=1, n_heads=2, batch_size=16,
                   steps=40, learning_rate=1e-2, warmup_steps=4, eval_every=20, eval_prompts=32,
                   checkpoint_every=20)


def test_every_training_prompt_is_single_task_and_well_formed():
    tasks = retrieval_tasks(vocab_size=10, slots=3)
    batch = single_task_batch(tasks, batch_size=64, n_examples=5, rng=np.random.default_rng(3))
    n = tasks.example_length
    assert batch.tokens.shape == (64, 1 + 5 * n)
    assert (batch.tokens[:, 0] == tasks.bos).all()
    for b, (row, k) in enumerate(zip(batch.tokens, batch.task_ids)):
        for i in range(5):
            x = row[1 + i * n: 1 + i * n + tasks.slots].tolist()
            y = int(row[1 + i * n + tasks.slots + 1])
            assert row[1 + i * n + tasks.slots] == tasks.arrow
            assert len(set(x)) == tasks.slots and max(x) < tasks.vocab_size
            assert y == tasks.tasks[k](x) == batch.answers[b, i]
            assert k in consistent_tasks(tasks, Example(x, y))
    assert (batch.tokens[:, batch.answer_positions] == tasks.arrow).all()
    assert np.array_equal(batch.tokens[:, batch.answer_positions + 1], batch.answers)


def test_distinct_inputs_and_mixed_prompts():
    rng = np.random.default_rng(0)
    x = distinct_inputs(rng, 6, (100,), 3)
    assert all(len(set(row)) == 3 for row in x.tolist())
    tasks = retrieval_tasks(8, 3)
    prompt, answers = mixed_prompt(tasks, [0, 3], [3, 2], rng)
    assert prompt.n_examples == 5
    fits = sorted(consistent_tasks(tasks, e) for e in prompt.examples)
    assert fits == [[0], [0], [0], [3], [3]]  # each example fits its own task and no other
    assert answers == [tasks.tasks[0](prompt.query), tasks.tasks[3](prompt.query)] and answers[0] != answers[1]
    assert proportion_grid(3, 2) == [(0, 3), (1, 2), (2, 1), (3, 0)]
    assert len(proportion_grid(4, 3)) == 15


def test_short_training_run_lowers_the_loss_and_resumes_exactly(tmp_path):
    full = train(TINY)
    losses = [h["train_loss"] for h in full.history]
    assert losses[-1] < losses[0]
    out = str(tmp_path / "run")
    train(TINY, out, stop_after=20)
    assert load_checkpoint(out).step == 20
    resumed = train(TINY, out, resume=True)
    # batches come from (seed, step) and the optimizer state is restored: resuming is bit-exact
    import jax

    same = jax.tree_util.tree_map(lambda a, b: bool(np.array_equal(a, b)), resumed.params, full.params)
    assert all(jax.tree_util.tree_leaves(same))
    assert resumed.history[-1]["step"] == 40
    with open(os.path.join(out, "checkpoint.json")) as f:
        assert json.load(f)["step"] == 40


def test_resume_rejects_a_different_config_and_corrupt_checkpoints(tmp_path):
    out = str(tmp_path / "run")
    train(TINY, out, stop_after=20)
    with pytest.raises(TrainConfigError, match="different config"):
        train(TrainConfig(**{**TINY.__dict__, "seed": 1}), out, resume=True)
    with open(os.path.join(out, "checkpoint.msgpack"), "r+b") as f:
        f.truncate(100)
    with pytest.raises(TrainConfigError, match="corrupt"):
        load_checkpoint(out)


@pytest.mark.parametrize("field,value,message", [
    ("steps", 0, "steps: must be a positive integer"),
    ("d_model", 15, "not divisible by n_heads"),
    ("vocab_size", 2, "must exceed slots"),
    ("learning_rate", -1.0, "learning_rate: must be > 0"),
])
def test_bad_train_config(field, value, message):
    with pytest.raises(TrainConfigError, match=message):
        TrainConfig(**{**TINY.__dict__, field: value}).validate()
    with pytest.raises(TrainConfigError, match="unknown field"):
        TrainConfig.from_dict({"stepz": 3})


def test_constructed_model_is_exactly_calibrated_on_the_same_prompts():
    tasks = retrieval_tasks(8, 3)
    cal = calibration(tasks, constructed_probabilities(tasks, 6), (0, 1, 3), n_examples=6, prompts_per_point=2)
    assert cal["slope"] == pytest.approx(1, abs=1e-9) and cal["intercept"] == pytest.approx(0, abs=1e-9)
    assert cal["r2"] == pytest.approx(1, abs=1e-9)
    assert cal["kl"] <= 1e-12 and abs(cal["off_task_mass"]) <= 1e-12
    assert len(cal["points"]) == len(proportion_grid(6, 3))


def test_evaluation_of_a_tiny_trained_model_via_the_cli(tmp_path, capsys):
    import superpose.cli

    out = str(tmp_path / "run")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY.__dict__))
    assert superpose.cli.main(["train", "--config", str(config), "--out", out, "--quiet"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 <= metrics["final"]["accuracy_last"] <= 1
    assert superpose.cli.main(["evaluate-mixtures", "--checkpoint", out, "--out", str(tmp_path / "eval"),
                               "--prompts-per-point", "1"]) == 0
    results = json.loads((tmp_path / "eval" / "mixtures.json").read_text())["results"]
    constructed = results["constructed (7 layers)"]["0+1"]
    assert constructed["r2"] == pytest.approx(1) and constructed["kl"] <= 1e-12
    trained = next(v for k, v in results.items() if k.startswith("trained"))["0+1"]
    assert 0 <= trained["off_task_mass"] <= 1 and trained["kl"] >= 0
    assert (tmp_path / "eval" / "calibration.png").stat().st_size > 1000
    assert superpose.cli.main(["train", "--out", out, "--steps", "0"]) == 2
    assert "steps: must be a positive integer" in capsys.readouterr().err


def test_eval_reports_accuracy_per_task_and_per_number_of_examples():
    result = train(TINY)
    metrics = evaluate(TINY, result.params)
    assert len(metrics["accuracy_by_examples_seen"]) == TINY.n_examples
    assert set(metrics["accuracy_by_task"]) <= {t.name for t in TINY.tasks.tasks}
