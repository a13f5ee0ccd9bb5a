r"""Calibration: how closely the model's answer probabilities follow the in-context task shares.

The metric is the one of the paper's code (``edixiong/task-superposition``,
``run_experiments.py``: ``F.kl_div(probs.log(), target, reduction="sum")``), stated
exactly here:

    KL(P || Q) = sum_v P(v) ln(P(v) / Q(v))          (natural log, in nats)

* Direction: ``P`` is the *target* (the task shares), ``Q`` the model. ``KL`` is the
  expected extra surprise of the model's probabilities under the task shares.
* ``P`` over tasks: ``shares[k] >= 0`` summing to 1, e.g. ``count_k / sum_j count_j``
  over the in-context examples drawn from each task (noise examples are no task's and
  are not counted).
* Tasks with the same answer on the query are indistinguishable from the model's
  output, so ``P`` and ``Q`` live on the *distinct answers* ``v`` of the tasks:
  ``P(v) = sum_{k: answer_k = v} shares[k]`` and ``Q(v) = probabilities[v]``, counted
  once. (The paper's code has one term per task; for tasks that share an answer that
  would compare each task's share with the whole probability of the shared answer.)
* ``Q`` is *not* renormalised over the task answers: it is the model's probability
  on each answer token as read out (for this construction the readout is itself a
  distribution over the ``d`` content tokens), as in the paper's code. Mass the model
  puts on other tokens lowers every ``Q(v)``; since then ``sum_v Q(v) <= 1``,
  Gibbs' inequality still gives ``KL >= 0``, with equality iff ``Q(v) = P(v)`` for all ``v``.
* ``0 ln(0 / q) = 0``; a ``P(v) > 0`` with ``Q(v) <= 0`` gives ``+inf``.

>>> shares, answers = [0.5, 0.25, 0.25], [3, 1, 3]      # tasks 0 and 2 both answer 3
>>> probs = [0.0, 0.25, 0.0, 0.75]
>>> calibration_kl(shares, answers, probs)              # P = Q = {1: 1/4, 3: 3/4}
0.0
>>> answer_distribution(shares, answers)
{3: 0.75, 1: 0.25}
>>> round(calibration_kl([0.5, 0.5], [0, 1], [0.25, 0.25]), 12) == round(__import__("math").log(2), 12)
True
"""

from __future__ import annotations

import math
from typing import Sequence


def answer_distribution(shares: Sequence[float], answers: Sequence[int]) -> dict[int, float]:
    """``P(v) = sum of shares[k] over the tasks k with answers[k] == v`` (first-seen order of v)."""
    if len(shares) != len(answers):
        raise ValueError(f"{len(shares)} shares for {len(answers)} answers")
    merged: dict[int, float] = {}
    for share, answer in zip(shares, answers):
        merged[int(answer)] = merged.get(int(answer), 0.0) + float(share)
    return merged


def calibration_kl(shares: Sequence[float], answers: Sequence[int], probabilities: Sequence[float]) -> float:
    """``KL(P || Q)`` in nats between the task shares and the model's answer probabilities.

    ``shares[k]``: task k's share (summing to 1); ``answers[k]``: task k's answer token
    on the query; ``probabilities[v]``: the model's readout on token v. See the module
    docstring for the exact definition.
    """
    total = 0.0
    for answer, p in answer_distribution(shares, answers).items():
        if p <= 0.0:
            continue
        q = float(probabilities[answer])
        if not q > 0.0:
            return math.inf
        total += p * math.log(p / q)
    return total
