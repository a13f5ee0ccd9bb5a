"""Training and evaluation prompts for the emergence experiment.

The paper's character retrieval is ``position_tasks(d, s)`` (``retrieve position i``),
trained in the three arms of ``arm_batch`` (conclusive, weak evidence, mixed control). The
earlier task family is ``retrieval_tasks(d, s)``: ``copy slot a`` for every slot (the
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


#: The pairs of slots copied by ``pair_retrieval_tasks``: AB and AC start alike (the first answer token
#: does not tell them apart, the second does), BA starts with another slot.
PAIRS = ((0, 1), (0, 2), (1, 0))
SLOT_LETTERS = "ABCDEFGH"


def pair_retrieval_tasks(vocab_size: int = 16, slots: int = 3, pairs=PAIRS) -> TaskSet:
    """Two-character retrieval: task ``(a, b)`` answers the two tokens ``x[a], x[b]`` (answer_length 2).

    >>> tasks = pair_retrieval_tasks(vocab_size=6, slots=3)
    >>> [t.name for t in tasks.tasks], tasks.answer_length
    (['copy AB', 'copy AC', 'copy BA'], 2)
    >>> [tasks.answer_of(t, [4, 1, 5]) for t in tasks.tasks]
    [(4, 1), (4, 5), (1, 4)]
    """
    if slots + 1 > vocab_size:
        raise ValueError("need vocab_size > slots so that example inputs can be distinct")
    if any(max(pair) >= slots for pair in pairs):
        raise ValueError(f"pairs {pairs} read slots beyond 0..{slots - 1}")
    tasks = [Task(f"copy {SLOT_LETTERS[a]}{SLOT_LETTERS[b]}", slots=[a, b],
                  table=[[(u, w) for w in range(vocab_size)] for u in range(vocab_size)]) for a, b in pairs]
    return TaskSet(vocab_size, slots, tasks, answer_length=2)


def word_tasks(vocab_size: int = 16, slots: int = 3) -> TaskSet:
    """``retrieval_tasks`` with every answer ``y`` written as a two-token word ``(y, (y + d/2) mod d)``,
    like a digit and its spelling: the first token carries the task, the second follows from it.

    >>> tasks = word_tasks(vocab_size=8, slots=2)
    >>> [t.name for t in tasks.tasks], tasks.answer_length
    (['copy slot 0', 'copy slot 1', 'successor of slot 0'], 2)
    >>> [tasks.answer_of(t, [5, 2]) for t in tasks.tasks]
    [(5, 1), (2, 6), (6, 2)]
    """
    base = retrieval_tasks(vocab_size, slots)
    half = vocab_size // 2

    def spelled(table):
        return [(int(y), (int(y) + half) % vocab_size) for y in table]

    return TaskSet(vocab_size, slots, [Task(t.name, t.slots, spelled(t.table)) for t in base.tasks], answer_length=2)


def position_tasks(vocab_size: int = 16, slots: int = 8) -> TaskSet:
    """The paper's character retrieval: task ``i`` answers the token at position ``i`` of the string.

    >>> tasks = position_tasks(vocab_size=16, slots=8)
    >>> [t.name for t in tasks.tasks][:2], tasks.K
    (['retrieve position 0', 'retrieve position 1'], 8)
    """
    return TaskSet(vocab_size, slots, [Task(f"retrieve position {i}", i, list(range(vocab_size)))
                                       for i in range(slots)])


#: Task families a training run may use (``TrainConfig.family``).
FAMILIES = {"retrieval": retrieval_tasks, "pairs": pair_retrieval_tasks, "words": word_tasks,
            "positions": position_tasks}

#: Training distributions (``TrainConfig.arm``), see ``arm_batch``.
ARMS = ("conclusive", "weak", "mixed")


def task_family(name: str, vocab_size: int, slots: int) -> TaskSet:
    """The task set of a family in ``FAMILIES`` (``retrieval``: one-token answers; ``pairs``: two tokens)."""
    return FAMILIES[name](vocab_size, slots)


@dataclass(frozen=True)
class Batch:
    tokens: np.ndarray            # [B, T] int32, T = 1 + m (s + 1 + A)
    answer_positions: np.ndarray  # [m A] the prediction positions (each ARROW and the answer tokens but
    #                               the last); the target is the next token
    answers: np.ndarray           # [B, m A] the token after each prediction position (the answers, in order)
    task_ids: np.ndarray          # [B] which task each prompt shows (a mixed prompt: its last example's task)
    example_tasks: np.ndarray | None = None  # [B, m] the task that generated each example


def distinct_inputs(rng: np.random.Generator, vocab_size: int, shape: tuple[int, ...], slots: int) -> np.ndarray:
    """Random inputs ``shape + (slots,)`` whose slots hold distinct tokens."""
    keys = rng.random(shape + (vocab_size,))
    return np.argsort(keys, axis=-1)[..., :slots].astype(np.int32)


def single_task_batch(tasks: TaskSet, batch_size: int, n_examples: int, rng: np.random.Generator) -> Batch:
    """``batch_size`` prompts, each with ``n_examples`` examples of one random task.

    For answers of ``A > 1`` tokens every example has ``A`` prediction positions (its ARROW and
    its first ``A - 1`` answer tokens, ``superpose.setting.prediction_sites``), in order."""
    s, n, A = tasks.slots, tasks.example_length, tasks.answer_length
    task_ids = rng.integers(0, tasks.K, batch_size)
    x = distinct_inputs(rng, tasks.vocab_size, (batch_size, n_examples), s)
    y = np.empty((batch_size, n_examples, A), dtype=np.int64)
    for k, task in enumerate(tasks.tasks):   # G_k(x[a_1], .., x[a_r]) for the prompts of task k
        rows = task_ids == k
        y[rows] = task.table_array()[tuple(x[rows][..., a] for a in task.slots)].reshape(-1, n_examples, A)
    tokens = np.full((batch_size, 1 + n_examples * n), tasks.bos, dtype=np.int32)
    for i in range(n_examples):
        start = 1 + i * n
        tokens[:, start:start + s] = x[:, i]
        tokens[:, start + s] = tasks.arrow
        tokens[:, start + s + 1:start + s + 1 + A] = y[:, i]
    positions = np.array([1 + i * n + s + j for i in range(n_examples) for j in range(A)])
    return Batch(tokens, positions, y.reshape(batch_size, n_examples * A).astype(np.int32), task_ids,
                 np.repeat(task_ids[:, None], n_examples, axis=1))


def _one_token_batch(tasks: TaskSet, x: np.ndarray, example_tasks: np.ndarray, y: np.ndarray) -> Batch:
    """Tokens of prompts with inputs ``x[B, m, s]`` and one-token answers ``y[B, m]``."""
    B, m, s = x.shape
    n = tasks.example_length
    tokens = np.full((B, 1 + m * n), tasks.bos, dtype=np.int32)
    for i in range(m):
        tokens[:, 1 + i * n:1 + i * n + s] = x[:, i]
        tokens[:, 1 + i * n + s] = tasks.arrow
        tokens[:, 1 + i * n + s + 1] = y[:, i]
    positions = np.array([1 + i * n + s for i in range(m)])
    return Batch(tokens, positions, y.astype(np.int32), example_tasks[:, -1].copy(), example_tasks)


def arm_batch(tasks: TaskSet, arm: str, batch_size: int, n_examples: int, rng: np.random.Generator,
              label_noise: float = 0.0, dirichlet_alpha: float = 1.0) -> Batch:
    """``batch_size`` training prompts of one arm of the emergence experiment (one-token answers):

    * ``conclusive``: one task per prompt, the inputs of an example are distinct tokens
      (``single_task_batch``; for ``retrieve position i`` one example identifies the task);
    * ``weak``: one task per prompt, inputs drawn uniformly *with replacement* from the
      ``d`` tokens, so an example whose answer occurs at several positions fits several tasks;
    * ``mixed``: task proportions ``p ~ Dirichlet(dirichlet_alpha, .., dirichlet_alpha)`` per
      prompt, each example's task ``z_j ~ Cat(p)``, distinct inputs.

    Then, with probability ``label_noise`` independently, an example's answer is replaced by
    a uniformly random content token (which may equal the true one). The input distribution
    never depends on the task, which ``train.bayes`` relies on. With ``label_noise = 0`` the
    conclusive arm is exactly ``single_task_batch`` (same random stream).

    >>> b = arm_batch(position_tasks(16, 8), "mixed", 3, 4, np.random.default_rng(0), dirichlet_alpha=0.5)
    >>> b.tokens.shape, b.example_tasks.shape, b.answer_positions.tolist()
    ((3, 41), (3, 4), [9, 19, 29, 39])
    """
    if arm not in ARMS:
        raise ValueError(f"arm: must be one of {ARMS}, got {arm!r}")
    d, s, K = tasks.vocab_size, tasks.slots, tasks.K
    if arm == "conclusive":
        batch = single_task_batch(tasks, batch_size, n_examples, rng)
        if label_noise == 0:
            return batch
        x = batch.tokens[:, 1:].reshape(batch_size, n_examples, tasks.example_length)[..., :s]
        z = batch.example_tasks
    elif arm == "weak":
        z = np.repeat(rng.integers(0, K, batch_size)[:, None], n_examples, axis=1)
        x = rng.integers(0, d, (batch_size, n_examples, s)).astype(np.int32)
    else:
        p = rng.dirichlet(np.full(K, dirichlet_alpha), batch_size)
        u = rng.random((batch_size, n_examples))
        z = np.minimum((u[..., None] > np.cumsum(p, axis=1)[:, None, :]).sum(-1), K - 1)
        x = distinct_inputs(rng, d, (batch_size, n_examples), s)
    y = answers_of(tasks, x, z)
    if label_noise > 0:
        flip = rng.random(y.shape) < label_noise
        y = np.where(flip, rng.integers(0, d, y.shape), y)
    return _one_token_batch(tasks, x, z, y)


def answers_of(tasks: TaskSet, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``y[..] = G_{z[..]}(x[.., slots of task z])`` for inputs ``x[..., s]`` and task ids ``z[..]``
    (one-token answers)."""
    y = np.empty(z.shape, dtype=np.int64)
    for k, task in enumerate(tasks.tasks):
        rows = z == k
        y[rows] = task.table_array()[tuple(x[rows][..., a] for a in task.slots)]
    return y


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

