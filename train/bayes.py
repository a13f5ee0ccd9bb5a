r"""The Bayes-optimal predictor of each training arm's distribution (``train.data.arm_batch``).

A learner that fits a training distribution perfectly predicts, at every answer, the
posterior predictive of that distribution. Evaluated on mixed prompts it is the
reference a trained model should be read against.

Notation: tasks ``k = 1..K`` with answer maps ``G_k``, ``d`` content tokens, label
noise ``eps``. An example's inputs ``x_j`` are drawn independently of the task, so
only the answers carry evidence, through the per-example likelihood

    L[j, k] = P(y_j | x_j, task k) = (1 - eps) [y_j = G_k(x_j)] + eps / d.

Single-task arms (``conclusive``, ``weak``): one task ``k ~ Uniform(K)`` per prompt, so

    P(task k | first j examples) = prod_{i<=j} L[i, k] / sum_k' prod_{i<=j} L[i, k'].

On a prompt whose examples are each consistent with one task (distinct characters) this
is a softmax of consistent-example counts ``c_k`` with inverse temperature
``ln((1 - eps + eps/d) / (eps/d))``: a *majority detector*. Without label noise
(``eps = 0``) a prompt that mixes tasks has probability 0 and the predictor is
undefined; the experiment's arms therefore train with ``eps > 0`` (as ``eps -> 0`` the
predictor tends to the uniform distribution over the tasks with the most consistent
examples).

Mixed arm: ``p ~ Dirichlet(alpha 1_K)``, each example's task ``z_j ~ Cat(p)``, the
query's (or next example's) task ``~ Cat(p)``. Integrating ``p`` out (the Pólya urn)
the prior of a task sequence with counts ``n`` is
``DM(n) = Gamma(K alpha) / Gamma(|n| + K alpha) * prod_k Gamma(n_k + alpha) / Gamma(alpha)``
and ``P(z_{j+1} = k | z_{1..j}) = (n_k + alpha) / (j + K alpha)``. With
``W_j(n) = sum over z_{1..j} with counts n of prod_{i<=j} L[i, z_i]`` (the answers'
likelihood summed over the assignments with counts ``n``), the exact predictive is

    P(z_{j+1} = k | first j examples) = sum_n W_j(n) DM(n) (n_k + alpha)
                                        / sum_n W_j(n) DM(n) (j + K alpha).

``W`` follows a recursion over count vectors: ``W_0(0) = 1``,
``W_{j+1}(n) = sum_k W_j(n - e_k) L[j+1, k]`` (``mixed_task_predictive``), so the cost
is ``m K C(m + K - 1, K - 1)`` per prompt instead of ``K^m``.

Either way the predictive of the next answer given its inputs ``x`` is

    P(y | x, first j examples) = sum_k P(task k | ...) ((1 - eps) [y = G_k(x)] + eps / d).

``tests/test_bayes.py`` checks all three predictors against brute-force enumeration of
the generative process on tiny cases.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
from scipy.special import gammaln

from superpose.setting import Prompt, TaskSet

from .data import Batch


def task_answers(tasks: TaskSet, x: np.ndarray) -> np.ndarray:
    """``G[..., k] = G_k(x[..])`` for inputs ``x[..., s]`` (one-token answers)."""
    return np.stack([t.table_array()[tuple(x[..., a] for a in t.slots)] for t in tasks.tasks], axis=-1)


def likelihoods(tasks: TaskSet, x: np.ndarray, y: np.ndarray, label_noise: float) -> np.ndarray:
    """``L[..., k] = P(y | x, task k)`` for inputs ``x[..., s]`` and answers ``y[..]``."""
    hit = task_answers(tasks, x) == np.asarray(y)[..., None]
    return (1 - label_noise) * hit + label_noise / tasks.vocab_size


def single_task_predictive(L: np.ndarray) -> np.ndarray:
    """``P[:, j, k] = P(task k | examples 1..j)`` for ``j = 0..m`` under a uniform prior (``L[N, m, K]``)."""
    N, m, K = L.shape
    log = np.concatenate([np.zeros((N, 1, K)), np.cumsum(np.log(np.maximum(L, 1e-300)), axis=1)], axis=1)
    log -= log.max(-1, keepdims=True)
    post = np.exp(log)
    return post / post.sum(-1, keepdims=True)


@functools.lru_cache(maxsize=16)
def _count_states(m: int, K: int):
    """Count vectors with ``|n| = j`` for ``j = 0..m`` (each level an array) and, per level and
    task k, the index of ``n + e_k`` in the next level."""
    levels = []
    for j in range(m + 1):   # compositions of j into K parts (stars and bars)
        rows = [tuple(b - a - 1 for a, b in zip((-1,) + bars, bars + (j + K - 1,)))
                for bars in itertools.combinations(range(j + K - 1), K - 1)]
        levels.append(np.array(rows, dtype=np.int64).reshape(-1, K))
    index = [{tuple(n): i for i, n in enumerate(level)} for level in levels]
    step = [np.array([[index[j + 1][tuple(n + np.eye(K, dtype=np.int64)[k])] for n in levels[j]]
                      for k in range(K)]) for j in range(m)]
    return levels, step


def mixed_task_predictive(L: np.ndarray, alpha: float, chunk: int = 256) -> np.ndarray:
    """``P[:, j, k] = P(z_{j+1} = k | examples 1..j)`` for ``j = 0..m`` under the mixed arm's
    Dirichlet-categorical prior (the recursion of the module docstring; ``L[N, m, K]``)."""
    N, m, K = L.shape
    levels, step = _count_states(m, K)
    log_dm = [gammaln(n + alpha).sum(-1) for n in levels]   # DM(n) up to a factor that depends on |n| only
    out = np.empty((N, m + 1, K))
    for start in range(0, N, chunk):
        Lc = L[start:start + chunk]
        W = np.ones((len(Lc), 1))
        for j in range(m + 1):
            weight = W * np.exp(log_dm[j] - log_dm[j].max())[None]
            pred = weight @ (levels[j] + alpha)
            out[start:start + chunk, j] = pred / pred.sum(-1, keepdims=True)
            if j < m:
                nxt = np.zeros((len(Lc), len(levels[j + 1])))
                for k in range(K):
                    nxt[:, step[j][k]] += W * Lc[:, j, k][:, None]
                W = nxt / nxt.max(-1, keepdims=True)   # rescaled per prompt: only ratios matter
    return out


def task_predictive(arm: str, L: np.ndarray, alpha: float) -> np.ndarray:
    """The arm's ``P(task of example j+1 = k | examples 1..j)``, ``[N, m + 1, K]``."""
    return mixed_task_predictive(L, alpha) if arm == "mixed" else single_task_predictive(L)


def answer_predictive(tasks: TaskSet, task_probs: np.ndarray, x: np.ndarray, label_noise: float) -> np.ndarray:
    """``P(y | x) = sum_k task_probs[.., k] ((1 - eps) [y = G_k(x)] + eps / d)`` over the ``d`` tokens."""
    d = tasks.vocab_size
    onehot = task_answers(tasks, x)[..., None] == np.arange(d)          # [.., K, d]
    return (1 - label_noise) * np.einsum("...k,...kv->...v", task_probs, onehot) + label_noise / d


def batch_bayes_losses(config, batch: Batch) -> np.ndarray:
    """``-ln P_Bayes(y_j | x_j, examples before j)`` for every answer of a batch of the config's arm, ``[B, m]``."""
    tasks, eps = config.tasks, config.label_noise
    B, m = batch.answers.shape
    x = batch.tokens[:, 1:].reshape(B, m, tasks.example_length)[..., :tasks.slots]
    L = likelihoods(tasks, x, batch.answers, eps)
    probs = task_predictive(config.arm, L, config.dirichlet_alpha)[:, :m]
    hit = task_answers(tasks, x) == batch.answers[..., None]
    p_true = (1 - eps) * (probs * hit).sum(-1) + eps / tasks.vocab_size
    return -np.log(p_true)


def bayes_floor(config, n_prompts: int = 4096, seed: int = 1) -> dict:
    """The Bayes floor of the config's training distribution: the expected loss of its
    Bayes-optimal predictor per answer, estimated by averaging the exact predictor's loss over
    ``n_prompts`` fresh prompts (``mean``) with the standard error of that mean (``se``)."""
    from .trainer import config_batch

    per_prompt = batch_bayes_losses(config, config_batch(config, n_prompts, np.random.default_rng([seed, 7]))).mean(1)
    return {"mean": float(per_prompt.mean()), "se": float(per_prompt.std(ddof=1) / np.sqrt(n_prompts)),
            "n_prompts": n_prompts}


def bayes_probabilities(tasks: TaskSet, arm: str, label_noise: float, alpha: float):
    """A ``ProbabilityFn`` (``train.mixtures``): the arm's Bayes-optimal predictive over the ``d``
    tokens at each prompt's query."""
    def probabilities(prompts: list[Prompt]) -> np.ndarray:
        out = np.empty((len(prompts), tasks.vocab_size))
        by_m: dict[int, list[int]] = {}
        for i, p in enumerate(prompts):
            by_m.setdefault(p.n_examples, []).append(i)
        for m, idx in by_m.items():
            x = np.array([[e.inputs for e in prompts[i].examples] for i in idx]).reshape(len(idx), m, tasks.slots)
            y = np.array([[e.answer for e in prompts[i].examples] for i in idx]).reshape(len(idx), m)
            post = task_predictive(arm, likelihoods(tasks, x, y, label_noise), alpha)[:, m]
            query = np.array([prompts[i].query for i in idx])
            out[idx] = answer_predictive(tasks, post, query, label_noise)
        return out

    return probabilities
