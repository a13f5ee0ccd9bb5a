"""The analytic task-superposition prediction, computed from the prompt alone.

This module is written independently of ``superpose.construct``: it never looks at
weights, layouts or tokens, only at the task set and the examples.

* Task k reads the input slots ``a_k = (a_1..a_r)`` and answers ``G_k(x[a_1], .., x[a_r])``,
  a tuple of ``A`` tokens (``A = answer_length``; one token unless stated otherwise).
* Example i is *consistent* with task k when ``G_k(x^i[a_k]) == y^i`` (every answer token).
* An example consistent with ``C >= 1`` tasks gives a vote of ``1/C`` to each of them;
  an example consistent with no task is noise and is ignored.
* After some examples the mixture is ``p_k = votes_k / (number of consistent examples)``,
  or the uniform prior ``1/K`` when no example so far is consistent.
* The prediction of answer token j for input x, after the answer tokens ``y_{<j}``, is the
  prefix-conditioned (Bayes) rule

      o_v = sum_k p_k ok_k [G_k(x)_j == v] / sum_k p_k ok_k,   ok_k = [G_k(x)_{<j} == y_{<j}]

  (all zero when no task with positive weight fits the prefix: ``survivors`` says where),
  or, with ``mode="marginal"``, ``o_v = sum_k p_k [G_k(x)_j == v]`` (no conditioning). For
  one-token answers both are ``o_v = sum_k p_k [G_k(x) == v]``.

One prediction per prediction site (``setting.prediction_sites``): site ``(i, j)`` uses
examples ``0..i-1``, the inputs of example i (the query's for ``i = m``) and the first j
tokens of its answer (of the query's ``query_prefix``).

>>> from superpose import Task, TaskSet, Prompt, Example
>>> tasks = TaskSet(vocab_size=3, slots=1, tasks=[Task("id", 0, [0, 1, 2]), Task("inc", 0, [1, 2, 0])])
>>> prompt = Prompt([Example([0], 0), Example([1], 2), Example([2], 1)], query=[1])
>>> [str(p) for p in task_mixture(tasks, prompt.examples)]  # fits id; fits inc; noise
['1/2', '1/2']
>>> [str(o) for o in predict(tasks, prompt, exact=True)[-1]]
['0', '1/2', '1/2']
"""

from __future__ import annotations

from fractions import Fraction
from typing import Sequence

import numpy as np

from superpose.setting import Example, Prompt, TaskSet, prediction_sites, validate_prompt

MODES = ("conditioned", "marginal")


def consistent_tasks(tasks: TaskSet, example: Example) -> list[int]:
    """Indices k of the tasks with ``G_k(x[a_k]) == y`` (every answer token) for this example."""
    return [k for k, t in enumerate(tasks.tasks) if tasks.answer_of(t, example.inputs) == example.answer_tokens]


def _mixture(votes: Sequence[Fraction], n_consistent: int, K: int) -> list[Fraction]:
    return [v / n_consistent for v in votes] if n_consistent else [Fraction(1, K)] * K


def mixtures(tasks: TaskSet, examples: Sequence[Example]) -> list[list[Fraction]]:
    """The exact mixture after 0, 1, ..., m examples (votes accumulated once: O(m K))."""
    votes = [Fraction(0)] * tasks.K
    n_consistent = 0
    out = [_mixture(votes, 0, tasks.K)]
    for example in examples:
        fits = consistent_tasks(tasks, example)
        if fits:
            n_consistent += 1
            for k in fits:
                votes[k] += Fraction(1, len(fits))
        out.append(_mixture(votes, n_consistent, tasks.K))
    return out


def task_mixture(tasks: TaskSet, examples: Sequence[Example]) -> list[Fraction]:
    """Exact mixture ``p`` after ``examples`` (uniform prior when none is consistent)."""
    return mixtures(tasks, examples)[-1]


def next_token_distribution(tasks: TaskSet, mixture: Sequence[Fraction], inputs: Sequence[int],
                            prefix: Sequence[int] = (), mode: str = "conditioned") -> tuple[list[Fraction], bool]:
    """``(o, survived)``: the distribution of answer token ``len(prefix)`` and whether any task with
    positive weight fits ``prefix`` (always true in ``marginal`` mode; ``o`` is all zero when not)."""
    if mode not in MODES:
        raise ValueError(f"mode: must be one of {MODES}, got {mode!r}")
    j = len(prefix)
    o = [Fraction(0)] * tasks.vocab_size
    total = Fraction(0)
    for p, t in zip(mixture, tasks.tasks):
        answer = tasks.answer_of(t, inputs)
        if mode == "marginal" or answer[:j] == tuple(prefix):
            o[answer[j]] += p
            total += p
    if mode == "marginal":
        return o, True
    if total == 0:
        return o, False
    return [x / total for x in o], True


def output_distribution(tasks: TaskSet, mixture: Sequence[Fraction], inputs: Sequence[int]) -> list[Fraction]:
    """``o_v = sum_k p_k [G_k(x[a_k])_0 == v]``: the first answer token's distribution."""
    return next_token_distribution(tasks, mixture, inputs)[0]


def _sites(tasks: TaskSet, prompt: Prompt):
    """(example i, answer token j, mixture before example i, inputs, answer prefix) of every site."""
    validate_prompt(tasks, prompt)
    before = mixtures(tasks, prompt.examples)
    for i, j in prediction_sites(tasks, prompt.n_examples, len(prompt.query_prefix)):
        answer = prompt.examples[i].answer_tokens if i < prompt.n_examples else prompt.query_prefix
        yield i, j, before[i], prompt.inputs_at(i), tuple(answer[:j])


def predict(tasks: TaskSet, prompt: Prompt, exact: bool = False, mode: str = "conditioned"):
    """Prediction at every prediction site, in order, the query's last.

    Returns a float64 array ``[sites, d]`` (``[m + 1, d]`` for one-token answers), or nested
    lists of ``Fraction`` with ``exact=True``.
    """
    rows = [next_token_distribution(tasks, mixture, inputs, prefix, mode)[0]
            for _, _, mixture, inputs, prefix in _sites(tasks, prompt)]
    if exact:
        return rows
    return np.array([[float(x) for x in row] for row in rows], dtype=np.float64).reshape(len(rows), tasks.vocab_size)


def survivors(tasks: TaskSet, prompt: Prompt) -> list[bool]:
    """Per site: does some task with positive weight fit the answer prefix? (False: the conditioned
    prediction is undefined and reported as all zero.)"""
    return [next_token_distribution(tasks, mixture, inputs, prefix)[1]
            for _, _, mixture, inputs, prefix in _sites(tasks, prompt)]


def answer_mixture(tasks: TaskSet, mixture: Sequence[Fraction], inputs: Sequence[int]) -> dict[tuple, Fraction]:
    """The sequence-level superposition ``{G_k(x): sum of p_k' over the tasks k' with that answer}``."""
    out: dict[tuple, Fraction] = {}
    for p, t in zip(mixture, tasks.tasks):
        answer = tasks.answer_of(t, inputs)
        out[answer] = out.get(answer, Fraction(0)) + p
    return {a: p for a, p in out.items() if p}


def separable(tasks: TaskSet, prompt: Prompt) -> list[tuple[bool, str]]:
    """Per site: is every earlier consistent example's task set inside or outside the set of tasks
    that fit the answer prefix? Then the prefix-conditioned mixture is the plain average of the
    votes of the examples inside it (the class on which the constructed model conditions exactly);
    otherwise the reason names the first example that straddles the boundary."""
    fits = [consistent_tasks(tasks, e) for e in prompt.examples]
    out = []
    for i, j, _, inputs, prefix in _sites(tasks, prompt):
        fitting = {k for k, t in enumerate(tasks.tasks) if tasks.answer_of(t, inputs)[:j] == prefix}
        straddling = [u for u in range(i) if fits[u] and 0 < len(fitting & set(fits[u])) < len(fits[u])]
        out.append((True, "") if j == 0 or not straddling else
                   (False, f"example {straddling[0]} is consistent with tasks on both sides of the answer prefix "
                           f"(it fits {fits[straddling[0]]}; tasks {sorted(fitting)} fit the prefix)"))
    return out
