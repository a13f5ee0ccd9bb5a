"""The Bayes-optimal predictors of the training arms against brute-force enumeration of the generative process."""

import itertools
import math

import numpy as np
import pytest

from superpose.setting import Example, Prompt
from superpose.train.bayes import (answer_predictive, batch_bayes_losses, bayes_probabilities, likelihoods,
                                   mixed_task_predictive, single_task_predictive)
from superpose.train.data import arm_batch, position_tasks
from superpose.train.trainer import TrainConfig


def answer_probability(y, x, k, eps, d):
    """P(y | x, task k) as the generator draws it: the true answer with probability 1 - eps, else uniform."""
    return (1 - eps) * (y == x[k]) + eps / d


def polya_sequence_probability(z, K, alpha):
    """P(z_1..z_n) with p ~ Dirichlet(alpha) integrated out, by the urn: (n_k + alpha) / (i + K alpha) each step."""
    counts, prob = [0] * K, 1.0
    for i, k in enumerate(z):
        prob *= (counts[k] + alpha) / (i + K * alpha)
        counts[k] += 1
    return prob


def brute_next_answer(arm, xs, ys, x_next, K, d, eps, alpha):
    """P(y_next = v | x's, y's) for every v, by summing the joint over every latent assignment and answer."""
    joint = np.zeros(d)
    if arm == "mixed":
        for z in itertools.product(range(K), repeat=len(xs) + 1):
            prior = polya_sequence_probability(z, K, alpha)
            lik = math.prod(answer_probability(y, x, k, eps, d) for x, y, k in zip(xs, ys, z))
            for v in range(d):
                joint[v] += prior * lik * answer_probability(v, x_next, z[-1], eps, d)
    else:
        for k in range(K):
            lik = math.prod(answer_probability(y, x, k, eps, d) for x, y in zip(xs, ys))
            for v in range(d):
                joint[v] += lik * answer_probability(v, x_next, k, eps, d) / K
    return joint / joint.sum()


def tiny_prompts(rng, n, m, K, d, distinct):
    for _ in range(n):
        if distinct:
            x = np.array([rng.permutation(d)[:K] for _ in range(m + 1)])
        else:
            x = rng.integers(0, d, (m + 1, K))
        y = np.array([rng.integers(0, d) if rng.random() < 0.3 else x[i, rng.integers(0, K)] for i in range(m)])
        yield x, y


@pytest.mark.parametrize("arm", ["conclusive", "weak", "mixed"])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_every_prefix_predictive_matches_brute_force(arm, eps):
    K, d, m, alpha = 3, 4, 4, 0.7
    tasks = position_tasks(d, K)
    rng = np.random.default_rng(5)
    for x, y in tiny_prompts(rng, 6, m, K, d, distinct=arm != "weak"):
        L = likelihoods(tasks, x[None, :m], y[None], eps)
        if eps == 0 and arm != "mixed" and not (L[0].prod(0) > 0).any():
            continue          # no task fits every example: probability 0 under a clean single-task arm
        if eps == 0 and arm == "mixed" and not (L[0].sum(1) > 0).all():
            continue          # an example fits no task
        probs = mixed_task_predictive(L, alpha) if arm == "mixed" else single_task_predictive(L)
        for j in range(m + 1):   # the predictive of example j+1's answer after j examples (j = m: a query)
            mine = answer_predictive(tasks, probs[0, j], x[j], eps)
            brute = brute_next_answer(arm, x[:j], y[:j], x[j], K, d, eps, alpha)
            np.testing.assert_allclose(mine, brute, rtol=1e-9, atol=1e-12)


def test_single_task_posterior_is_a_softmax_of_consistent_counts():
    """On examples that each fit one task the single-task posterior is softmax(c_k ln((1 - eps + eps/d) / (eps/d)))."""
    d, eps = 16, 0.05
    tasks = position_tasks(d, 8)
    rng = np.random.default_rng(0)
    x = np.array([rng.permutation(d)[:8] for _ in range(6)])
    z = [0, 0, 0, 1, 1, 5]
    y = x[np.arange(6), z]
    post = single_task_predictive(likelihoods(tasks, x[None], y[None], eps))[0, -1]
    counts = np.bincount(z, minlength=8)
    logits = counts * np.log((1 - eps + eps / d) / (eps / d))
    np.testing.assert_allclose(post, np.exp(logits) / np.exp(logits).sum(), rtol=1e-10)


def test_mixed_predictive_without_noise_is_the_dirichlet_posterior_mean():
    d, alpha = 16, 0.25
    tasks = position_tasks(d, 8)
    rng = np.random.default_rng(1)
    x = np.array([rng.permutation(d)[:8] for _ in range(8)])
    z = [2, 2, 2, 2, 2, 7, 7, 3]
    y = x[np.arange(8), z]
    pred = mixed_task_predictive(likelihoods(tasks, x[None], y[None], 0.0), alpha)[0, -1]
    counts = np.bincount(z, minlength=8)
    np.testing.assert_allclose(pred, (counts + alpha) / (8 + 8 * alpha), rtol=1e-10)


def test_bayes_probabilities_on_prompts_and_losses_on_batches_agree():
    config = TrainConfig(family="positions", vocab_size=6, slots=3, n_examples=3, arm="mixed", label_noise=0.1,
                         dirichlet_alpha=0.5, d_model=8, n_heads=2, n_layers=1)
    tasks = config.tasks
    batch = arm_batch(tasks, "mixed", 5, 3, np.random.default_rng(2), 0.1, 0.5)
    losses = batch_bayes_losses(config, batch)
    x = batch.tokens[:, 1:].reshape(5, 3, tasks.example_length)[..., :3]
    fn = bayes_probabilities(tasks, "mixed", 0.1, 0.5)
    for b in range(5):   # the loss of the last answer is -ln of the predictive at a query holding its inputs
        prompt = Prompt([Example(x[b, i].tolist(), int(batch.answers[b, i])) for i in range(2)], x[b, 2].tolist())
        assert losses[b, 2] == pytest.approx(-np.log(fn([prompt])[0, batch.answers[b, 2]]), rel=1e-12)
        brute = brute_next_answer("mixed", x[b, :2], batch.answers[b, :2], x[b, 2], 3, 6, 0.1, 0.5)
        assert losses[b, 2] == pytest.approx(-np.log(brute[batch.answers[b, 2]]), rel=1e-9)
