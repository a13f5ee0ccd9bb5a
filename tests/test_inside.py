"""Probes (verify/probes.py) and the measurements inside a model (train/inside.py)."""

import numpy as np
import pytest

from superpose import build
from superpose.train import inside
from superpose.train.data import retrieval_tasks
from superpose.verify.patching import from_constructed
from superpose.verify.probes import ProbeError, fit_probe, r2_score, ridge


def test_probe_recovers_a_planted_linear_signal():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 30))
    W = rng.normal(size=(30, 3))
    probe = fit_probe(X, X @ W + 2.0 + 0.01 * rng.normal(size=(500, 3)), seed=1)
    assert probe.r2 > 0.999
    assert np.abs(probe.W - W).max() < 0.01


def test_probe_fails_on_shuffled_labels():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 30))
    Y = X @ rng.normal(size=(30, 3))
    assert fit_probe(X, rng.permutation(Y), seed=2).r2 < 0.1


def test_ridge_without_penalty_is_least_squares_and_r2_is_the_textbook_one():
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(60, 5)), rng.normal(size=(60, 2))
    W, b = ridge(X, Y, 0.0)
    A = np.hstack([X, np.ones((60, 1))])
    reference = np.linalg.lstsq(A, Y, rcond=None)[0]
    assert np.allclose(W, reference[:5]) and np.allclose(b, reference[5])
    y, f = Y[:, 0], A @ reference[:, 0]
    assert r2_score(y[:, None], f[:, None]) == pytest.approx(1 - ((y - f) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def test_probe_input_errors():
    with pytest.raises(ProbeError, match="too few"):
        fit_probe(np.zeros((5, 2)), np.zeros(5))
    with pytest.raises(ProbeError, match="must be"):
        fit_probe(np.zeros((30, 2)), np.zeros(29))
    with pytest.raises(ProbeError, match="constant"):
        fit_probe(np.random.default_rng(0).normal(size=(30, 2)), np.ones(30))


@pytest.fixture(scope="module")
def tasks():
    return retrieval_tasks(vocab_size=8, slots=2)      # copy slot 0, copy slot 1, successor of slot 0


def test_mixture_prompts_shares_and_answers(tasks):
    n = 4
    prompts = inside.mixture_prompts(tasks, n, 30, seed=3)
    s, L = tasks.slots, tasks.example_length
    for tokens, shares, answers in zip(prompts.tokens, prompts.shares, prompts.answers):
        assert tokens[0] == tasks.bos and tokens[-1] == tasks.arrow
        fits = np.zeros(tasks.K)
        for i in range(n):
            x, y = tokens[1 + i * L: 1 + i * L + s].tolist(), int(tokens[1 + i * L + s + 1])
            fit = [k for k, t in enumerate(tasks.tasks) if t(x) == y]
            assert len(fit) == 1
            fits[fit[0]] += 1
        assert np.allclose(shares, fits / n)
        query = tokens[-1 - s:-1].tolist()
        assert answers.tolist() == [query[0], query[1], (query[0] + 1) % 8]


def test_position_masks_point_at_the_right_tokens(tasks):
    n = 3
    prompts = inside.mixture_prompts(tasks, n, 1, seed=4)
    tokens = prompts.tokens[0]
    masks = inside.position_masks(tasks, n)
    assert tokens[masks["bos"]].tolist() == [tasks.bos]
    assert (tokens[np.flatnonzero(masks["answers"]) - 1] == tasks.arrow).all()       # answers follow ARROWs
    assert tokens[masks["query slots read"]].tolist() == tokens[-3:-1].tolist()      # both slots are read
    for i, position in enumerate(masks["example answer positions"]):
        assert tokens[masks["own slots read"][i]].tolist() == tokens[position - 3: position - 1].tolist()


@pytest.fixture(scope="module")
def constructed(tasks):
    return build(tasks, max_examples=4)


def test_constructed_mix_is_read_by_a_probe_from_layer_5_on(tasks, constructed):
    weights = from_constructed(constructed)
    prompts = inside.mixture_prompts(tasks, 4, 120, seed=5)
    _, residuals = inside.run_batched(weights, prompts.tokens, layers=True)
    mix = constructed.layout["mix"].slice
    assert np.abs(residuals[5][:, mix] - prompts.shares).max() < 1e-6     # the construction's own claim
    r2 = [p.r2 for p in inside.probe_layers(residuals, prompts.shares)]
    assert min(r2[5:]) > 0.999


def test_constructed_attention_profile_matches_its_layers(tasks, constructed):
    weights = from_constructed(constructed)
    prompts = inside.mixture_prompts(tasks, 4, 16, seed=6)
    profile = inside.attention_profile(weights, tasks, prompts.tokens, 4)
    heads = inside.matching_heads(profile, profile)     # a model compared with itself finds its own layers' mass
    for h in heads:
        assert h["construction_mass"] > 0.99 and h["trained_mass"] >= h["construction_mass"]
    # layer 2 has one look-back head per slot read (slots 0 and 1): each of them reads one of its example's slots
    assert (profile["own slots read"][1][:2] > 0.99).all()


def test_constructed_steering_along_mix_moves_the_answer(tasks, constructed):
    weights = from_constructed(constructed)
    prompts = inside.mixture_prompts(tasks, 4, 150, seed=7)
    _, residuals = inside.run_batched(weights, prompts.tokens, layers=True)
    probe = inside.probe_layers(residuals[5:6], prompts.shares)[0]
    subset = inside.PromptSet(prompts.tokens[:24], prompts.shares[:24], prompts.answers[:24], 4)
    result = inside.steer(weights, subset, 5, probe, deltas=(-0.05, 0.0, 0.05))
    # layer 7 reads mix linearly where it stays non-negative: each task's answer moves with the probe's share,
    # at most one for one (less where a share at 0 cannot go lower)
    assert all(0.5 < a <= 1 + 1e-6 for a in result["slope_along_probe"])


def test_constructed_task_vectors_into_a_balanced_query(tasks, constructed):
    weights = from_constructed(constructed)
    tv = inside.task_vectors(weights, tasks, 4, n_queries=3, destination="balanced")
    distances = [x["distance_to_mixed_prompt"] for x in tv["per_layer"]]
    # before layer 5 the single-task states differ only where the query-independent mean washes out
    assert distances[5] < 1e-6 < tv["unpatched_distance_to_mixed_prompt"]
    assert np.allclose(tv["per_layer"][5]["p_answer_j"], tv["weights"], atol=1e-6)
    with pytest.raises(ValueError, match="destination"):
        inside.task_vectors(weights, tasks, 4, destination="nowhere")
