"""The analytic task-superposition prediction, computed from the prompt alone.

This module is written independently of ``superpose.construct``: it never looks at
weights, layouts or tokens, only at the task set and the examples.

* Task k reads the input slots ``a_k = (a_1..a_r)`` and answers ``G_k(x[a_1], .., x[a_r])``.
* Example i is *consistent* with task k when ``G_k(x^i[a_k]) == y^i``.
* An example consistent with ``C >= 1`` tasks gives a vote of ``1/C`` to each of them;
  an example consistent with no task is noise and is ignored.
* After some examples the mixture is ``p_k = votes_k / (number of consistent examples)``,
  or the uniform prior ``1/K`` when no example so far is consistent.
* The prediction for input x is ``o_v = sum_k p_k [G_k(x[a_k]) == v]``.

One prediction per prediction position: position i (0-based) uses examples ``0..i-1``
and the inputs of example i (the query's for the last one).

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

from superpose.setting import Example, Prompt, TaskSet, validate_prompt


def consistent_tasks(tasks: TaskSet, example: Example) -> list[int]:
    """Indices k of the tasks with ``G_k(x[a_k]) == y`` for this example."""
    return [k for k, t in enumerate(tasks.tasks) if t(example.inputs) == example.answer]


def task_mixture(tasks: TaskSet, examples: Sequence[Example]) -> list[Fraction]:
    """Exact mixture ``p`` after ``examples`` (uniform prior when none is consistent)."""
    votes = [Fraction(0)] * tasks.K
    n_consistent = 0
    for example in examples:
        fits = consistent_tasks(tasks, example)
        if not fits:
            continue
        n_consistent += 1
        for k in fits:
            votes[k] += Fraction(1, len(fits))
    if n_consistent == 0:
        return [Fraction(1, tasks.K)] * tasks.K
    return [v / n_consistent for v in votes]


def output_distribution(tasks: TaskSet, mixture: Sequence[Fraction], inputs: Sequence[int]) -> list[Fraction]:
    """``o_v = sum_k p_k [G_k(x[a_k]) == v]``."""
    o = [Fraction(0)] * tasks.vocab_size
    for p, t in zip(mixture, tasks.tasks):
        o[t(inputs)] += p
    return o


def predict(tasks: TaskSet, prompt: Prompt, exact: bool = False):
    """Prediction at every prediction position, in order, the query's last.

    Returns a float64 array ``[m + 1, d]``, or nested lists of ``Fraction`` with ``exact=True``.
    """
    validate_prompt(tasks, prompt)
    rows = [
        output_distribution(tasks, task_mixture(tasks, prompt.examples[:i]), prompt.inputs_at(i))
        for i in range(prompt.n_examples + 1)
    ]
    if exact:
        return rows
    return np.array([[float(x) for x in row] for row in rows], dtype=np.float64)
