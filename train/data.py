"""Training and evaluation prompts for the emergence experiment.

The task family is ``retrieval_tasks(d, s)``: ``copy slot a`` for every slot (the
paper's retrieval tasks) plus ``successor of slot 0`` (a token map, ``x -> x + 1 mod d``).
A training prompt draws one task and ``m`` examples of it, in exactly the
construction's format (``superpose.setting``)::

    BOS, x^1_0 .. x^1_{s-1}, ARROW, y^1, ..., x^m_0 .. x^m_{s-1}, ARROW, y^m

and the loss is next-token cross-entropy at every ARROW (predicting ``y^i`` from the
examples before it). Inputs within an example are distinct tokens. Mixed evaluation
prompts (``mixed_prompt``) go further: each of their examples fits its own task and no
other task of the family, so the share of examples *is* the analytic task mixture.

>>> tasks = retrieval_tasks(vocab_size=8, slots=2)
>>> [t.name for t in tasks.tasks]
['copy slot 0', 'copy slot 1', 'successor of slot 0']
>>> batch = single_task_batch(tasks, batch_size=4, n_examples=3, rng=np.random.default_rng(0))
>>> batch.tokens.shape, batch.answer_positions.tolist()
((4, 13), [3, 7, 11])
>>> bool((batch.tokens[:, batch.answer_positions] == tasks.arrow).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from superpose.setting import Example, Prompt, Task, TaskSet


def retrieval_tasks(vocab_size: int = 16, slots: int = 3) -> TaskSet:
    """Copy each slot, plus the successor of slot 0."""
    if slots + 1 > vocab_size:
        raise ValueError("need vocab_size > slots so that example inputs can be distinct")
    tasks = [Task(f"copy slot {a}", a, list(range(vocab_size))) for a in range(slots)]
    tasks.append(Task("successor of slot 0", 0, [(x + 1) % vocab_size for x in range(vocab_size)]))
    return TaskSet(vocab_size, slots, tasks)


@dataclass(frozen=True)
class Batch:
    tokens: np.ndarray            # [B, T] int32, T = 1 + m (s + 2)
    answer_positions: np.ndarray  # [m] positions of the ARROWs; the target is the next token
    answers: np.ndarray           # [B, m] the answer after each ARROW
    task_ids: np.ndarray          # [B] which task each prompt shows


def distinct_inputs(rng: np.random.Generator, vocab_size: int, shape: tuple[int, ...], slots: int) -> np.ndarray:
    """Random inputs ``shape + (slots,)`` whose slots hold distinct tokens."""
    keys = rng.random(shape + (vocab_size,))
    return np.argsort(keys, axis=-1)[..., :slots].astype(np.int32)


def single_task_batch(tasks: TaskSet, batch_size: int, n_examples: int, rng: np.random.Generator) -> Batch:
    """``batch_size`` prompts, each with ``n_examples`` examples of one random task."""
    s, n = tasks.slots, tasks.example_length
    task_ids = rng.integers(0, tasks.K, batch_size)
    x = distinct_inputs(rng, tasks.vocab_size, (batch_size, n_examples), s)
    y = np.empty((batch_size, n_examples), dtype=np.int64)
    for k, task in enumerate(tasks.tasks):   # G_k(x[a_1], .., x[a_r]) for the prompts of task k
        rows = task_ids == k
        y[rows] = task.table_array()[tuple(x[rows][..., a] for a in task.slots)]
    tokens = np.full((batch_size, 1 + n_examples * n), tasks.bos, dtype=np.int32)
    for i in range(n_examples):
        start = 1 + i * n
        tokens[:, start:start + s] = x[:, i]
        tokens[:, start + s] = tasks.arrow
        tokens[:, start + s + 1] = y[:, i]
    positions = np.array([1 + i * n + s for i in range(n_examples)])
    return Batch(tokens, positions, y.astype(np.int32), task_ids)


def mixed_prompt(tasks: TaskSet, task_ids: list[int], counts: list[int],
                 rng: np.random.Generator) -> tuple[Prompt, list[int]]:
    """A prompt with ``counts[j]`` examples of task ``task_ids[j]`` in random order, and a query.

    Every example fits its own task only (inputs are redrawn until no other task of
    the family gives the same answer), and the query's inputs are chosen so that every
    task gives a different answer; returns the prompt and the answers of ``task_ids``.
    """
    s = tasks.slots
    examples = []
    for k, count in zip(task_ids, counts):
        while count:
            x = distinct_inputs(rng, tasks.vocab_size, (), s).tolist()
            y = tasks.tasks[k](x)
            if sum(t(x) == y for t in tasks.tasks) == 1:
                examples.append(Example(x, y))
                count -= 1
    order = rng.permutation(len(examples))
    examples = [examples[i] for i in order]
    while True:
        query = distinct_inputs(rng, tasks.vocab_size, (), s).tolist()
        answers = [t(query) for t in tasks.tasks]
        if len(set(answers)) == len(answers):
            break
    return Prompt(examples, query), [answers[k] for k in task_ids]

