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

TINY = TrainConfig(vocab_size=8, slots=2, n_examples=4, d_model=16, n_layers=1, n_heads=2, batch_size=32,
                   steps=40, learning_rate=1e-2, warmup_steps=4, eval_every=20, eval_prompts=64,
                   checkpoint_every=20)


@pytest.fixture(scope="module")
def trained():
    """TINY trained for its 40 steps (shared: training is the slow part of these tests)."""
    return train(TINY)


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


@pytest.mark.slow
def test_short_training_run_lowers_the_loss_and_resumes_exactly(tmp_path, trained):
    full = trained
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


@pytest.mark.slow
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
    ("example_positions", 1, "example_positions: must be true or false"),
    ("seed", -1, "seed: must be an integer >= 0"),
    ("data_seed", 1.5, "data_seed: must be an integer >= 0"),
    ("data_seed", True, "data_seed: must be an integer >= 0"),
])
def test_bad_train_config(field, value, message):
    with pytest.raises(TrainConfigError, match=message):
        TrainConfig(**{**TINY.__dict__, field: value}).validate()
    with pytest.raises(TrainConfigError, match="unknown field"):
        TrainConfig.from_dict({"stepz": 3})


def test_the_data_seed_sets_the_prompts_apart_from_the_initial_weights():
    """``data_seed`` None draws the prompts from ``seed``; set, it changes the prompts (training
    batches and evaluation prompts) and leaves the initial weights to ``seed``."""
    import jax

    from superpose.train.trainer import _initial_state, batch_for_step, eval_batch

    same_as_seed = TrainConfig(**{**TINY.__dict__, "data_seed": TINY.seed})
    apart = TrainConfig(**{**TINY.__dict__, "data_seed": TINY.seed + 1})
    other_seed = TrainConfig(**{**TINY.__dict__, "seed": TINY.seed + 1})
    for step in (0, 7):
        assert np.array_equal(batch_for_step(TINY, step).tokens, batch_for_step(same_as_seed, step).tokens)
        assert np.array_equal(batch_for_step(apart, step).tokens, batch_for_step(other_seed, step).tokens)
        assert not np.array_equal(batch_for_step(TINY, step).tokens, batch_for_step(apart, step).tokens)
    assert np.array_equal(eval_batch(apart).tokens, eval_batch(other_seed).tokens)
    leaves = lambda config: jax.tree_util.tree_leaves(_initial_state(config)[0])   # noqa: E731
    assert all(np.array_equal(a, b) for a, b in zip(leaves(TINY), leaves(apart)))
    assert not all(np.array_equal(a, b) for a, b in zip(leaves(TINY), leaves(other_seed)))


def test_constructed_model_is_exactly_calibrated_on_the_same_prompts():
    tasks = retrieval_tasks(8, 3)
    cal = calibration(tasks, constructed_probabilities(tasks, 6), (0, 1, 3), n_examples=6, prompts_per_point=2)
    assert cal["slope"] == pytest.approx(1, abs=1e-9) and cal["intercept"] == pytest.approx(0, abs=1e-9)
    assert cal["r2"] == pytest.approx(1, abs=1e-9)
    assert cal["kl"] <= 1e-12 and abs(cal["off_task_mass"]) <= 1e-12
    assert cal["spread"] <= 1e-12 and cal["peak_probability"] == pytest.approx(cal["peak_share"], abs=1e-12)
    assert len(cal["points"]) == len(proportion_grid(6, 3))


def test_per_prompt_metrics_tell_a_one_task_per_prompt_model_from_a_calibrated_one():
    """Two tasks at shares (1/4, 3/4), 4 prompts: a model that gives each prompt all its mass on one
    task (task 1 on three prompts of four) is calibrated on average, not per prompt."""
    from superpose.train.mixtures import calibration_metrics

    shares = np.array([[0.25, 0.75]] * 4)
    answers = np.array([[0, 1]] * 4)
    calibrated = np.array([[0.25, 0.75, 0.0]] * 4)
    one_task = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    good, picked = (calibration_metrics(p, answers, shares, 4) for p in (calibrated, one_task))
    assert good["spread"] == 0 and good["peak_probability"] == good["peak_share"] == 0.75
    assert picked["points"][0]["mean_probability"] == [0.25, 0.75]          # the same mean
    assert picked["spread"] == pytest.approx(np.sqrt(0.25 * 0.75))           # sd of a Bernoulli(1/4), per task
    assert picked["spread_one_task"] == good["spread_one_task"] == pytest.approx(np.sqrt(0.25 * 0.75))
    assert picked["peak_probability"] == 1.0 and picked["peak_share"] == 0.75


@pytest.mark.slow
def test_evaluation_of_a_tiny_trained_model_via_the_cli(tmp_path, capsys):
    import superpose.cli

    out = str(tmp_path / "run")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY.__dict__))
    assert superpose.cli.main(["train", "--config", str(config), "--out", out, "--quiet"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # the metrics file records the evaluation of the checkpoint written beside it
    assert metrics["final"] == {**evaluate(TINY, load_checkpoint(out).params), "step": 40,
                                "train_loss": metrics["final"]["train_loss"], "seconds": metrics["final"]["seconds"]}
    assert superpose.cli.main(["evaluate-mixtures", "--checkpoint", out, "--out", str(tmp_path / "eval"),
                               "--prompts-per-point", "1"]) == 0
    results = json.loads((tmp_path / "eval" / "mixtures.json").read_text())["results"]
    constructed = results["constructed (7 layers)"]["0+1"]
    assert constructed["r2"] == pytest.approx(1) and constructed["kl"] <= 1e-12
    trained = next(v for k, v in results.items() if k.startswith("trained"))["0+1"]
    # 40 steps of a 1-layer model: measured on the same prompts, and far from the construction's calibration
    assert len(trained["points"]) == len(constructed["points"]) and trained["kl"] > 1e-3
    assert (tmp_path / "eval" / "calibration.png").stat().st_size > 1000
    assert superpose.cli.main(["train", "--out", out, "--steps", "0"]) == 2
    assert "steps: must be a positive integer" in capsys.readouterr().err
    # --data-seed reaches the config (its effect on the prompts: test_the_data_seed_sets_...); a bad one is refused
    assert superpose.cli.main(["train", "--config", str(config), "--out", str(tmp_path / "data3"), "--quiet",
                               "--data-seed", "3"]) == 0   # TINY's steps: the compiled step is reused
    assert load_checkpoint(str(tmp_path / "data3")).config.data_seed == 3
    assert superpose.cli.main(["train", "--config", str(config), "--out", str(tmp_path / "bad"),
                               "--data-seed", "-1"]) == 2
    assert "data_seed: must be an integer >= 0" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_accuracy_is_the_count_of_argmax_hits_on_the_eval_prompts(trained):
    """``evaluate`` against a plain count, prompt by prompt, on the same eval prompts (its fixed seed)."""
    from superpose.train.model import GPT

    metrics = evaluate(TINY, trained.params)
    batch = single_task_batch(TINY.tasks, TINY.eval_prompts, TINY.n_examples,
                              np.random.default_rng([TINY.seed, 10 ** 9]))
    logits = np.asarray(GPT(TINY.model_config).apply({"params": trained.params}, batch.tokens))
    hits = np.zeros((TINY.eval_prompts, TINY.n_examples))
    for b in range(TINY.eval_prompts):
        for i, position in enumerate(batch.answer_positions):
            hits[b, i] = int(np.argmax(logits[b, position, : TINY.vocab_size])) == batch.answers[b, i]
    assert metrics["accuracy_last"] == pytest.approx(hits[:, -1].mean())
    assert metrics["accuracy_by_examples_seen"] == pytest.approx(hits.mean(0).round(4).tolist())
    by_task = {TINY.tasks.tasks[k].name: hits[batch.task_ids == k, -1].mean() for k in set(batch.task_ids.tolist())}
    assert len(by_task) >= 2 and metrics["accuracy_by_task"] == pytest.approx(by_task)
