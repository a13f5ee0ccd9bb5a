"""Hypothesis strategies for fuzzing task mixtures.

``task_sets()`` draws vocabularies, slot counts and tasks reading 1..3 slots each,
deliberately including duplicate tasks (the same slots and table twice), tasks
reading the same slots in another order, colliding tasks (different tasks that agree
on many inputs) and constant tables. ``prompts(tasks)`` draws a mixture
over the tasks plus a share of noise, then examples from it: an example of task k is
``(x, G_k(x[a_k]))``; a noise example gets an answer that fits no task whenever such
an answer exists. ``cases()`` draws both.

>>> from hypothesis import given, settings
>>> @settings(max_examples=5, deadline=None)
... @given(cases(max_examples=6))
... def check(case):
...     tasks, prompt = case
...     assert prompt.n_examples <= 6 and len(prompt.query) == tasks.slots
>>> check()
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from superpose.setting import Example, Prompt, Task, TaskSet


@st.composite
def tables(draw, vocab_size: int, arity: int = 1):
    """A lookup table of depth ``arity``: identity/projection, a shift of the sum, a constant, or arbitrary."""
    d = vocab_size
    kind = draw(st.sampled_from(["identity", "shift", "constant", "random"]))
    grid = np.indices((d,) * arity).reshape(arity, -1).T  # every input combination, row-major
    if kind == "identity":   # copy one of the inputs read (a projection when arity > 1)
        j = draw(st.integers(0, arity - 1))
        values = grid[:, j]
    elif kind == "shift":    # (w_1 + ... + w_r + c) mod d: "next digit", "A+B"
        shift = draw(st.integers(0, d - 1))
        values = (grid.sum(axis=1) + shift) % d
    elif kind == "constant":
        values = np.full(len(grid), draw(st.integers(0, d - 1)))
    elif arity == 1:
        values = np.array(draw(st.lists(st.integers(0, d - 1), min_size=d, max_size=d)))
    else:                    # large tables: a seeded generator rather than d^r separate draws
        seed = draw(st.integers(0, 2 ** 32 - 1))
        values = np.random.default_rng(seed).integers(0, d, len(grid))
    table = values.reshape((d,) * arity)
    return table.tolist()


@st.composite
def task_sets(draw, max_vocab: int = 8, max_slots: int = 3, max_tasks: int = 4,
              min_vocab: int = 2, max_arity: int = 3, max_answer_length: int = 1) -> TaskSet:
    """A random ``TaskSet`` with ``1..max_tasks`` tasks reading 1..max_arity slots each, and answers
    of 1..max_answer_length tokens (each answer token its own table of a drawn kind).

    Duplicates (the same slots and table twice), tasks reading the same slots in another
    order, tasks sharing slots, colliding tables (equal on most inputs) and constant
    tables are all drawn on purpose.
    """
    d = draw(st.integers(min_vocab, max_vocab))
    s = draw(st.integers(1, max_slots))
    K = draw(st.integers(1, max_tasks))
    A = draw(st.integers(1, max_answer_length))
    tasks: list[Task] = []
    for k in range(K):
        if tasks and draw(st.integers(0, 5)) == 0:  # an exact duplicate of an earlier task
            source = tasks[draw(st.integers(0, len(tasks) - 1))]
            tasks.append(Task(f"dup{k}", source.slots, source.table))
            continue
        if tasks and draw(st.integers(0, 5)) == 0 and tasks[-1].arity > 1:  # same slots, another order
            source = tasks[-1]
            order = draw(st.permutations(range(source.arity)))
            axes = list(order) + ([source.arity] if A > 1 else [])   # the answer axis stays last
            tasks.append(Task(f"perm{k}", [source.slots[i] for i in order],
                              np.transpose(source.table_array(), axes).tolist()))
            continue
        r = draw(st.integers(1, min(max_arity, s)))
        slots = draw(st.permutations(range(s)))[:r]
        if tasks and draw(st.integers(0, 4)) == 0:  # collide with an earlier task on most inputs
            source = tasks[draw(st.integers(0, len(tasks) - 1))]
            table = source.table_array().copy()
            table[tuple(draw(st.integers(0, d - 1)) for _ in range(source.arity))] = draw(st.integers(0, d - 1))
            slots = source.slots
            table = table.tolist()
        elif A == 1:
            table = draw(tables(d, r))
        else:   # token j of the answer from its own table: tasks may agree on a first token and then part
            table = np.stack([np.asarray(draw(tables(d, r))) for _ in range(A)], axis=-1).tolist()
        tasks.append(Task(f"t{k}", slots, table))
    return TaskSet(d, s, tasks, answer_length=A)


@st.composite
def prompts(draw, tasks: TaskSet, max_examples: int = 16, min_examples: int = 0) -> Prompt:
    """A prompt whose examples come from a random mixture of the tasks and noise."""
    d, s, K = tasks.vocab_size, tasks.slots, tasks.K
    m = draw(st.integers(min_examples, max_examples))
    weights = draw(st.lists(st.integers(0, 8), min_size=K + 1, max_size=K + 1))  # last: noise
    if sum(weights) == 0:
        weights[0] = 1
    inputs = st.lists(st.integers(0, d - 1), min_size=s, max_size=s)
    examples = []
    for _ in range(m):
        x = draw(inputs)
        ticket = draw(st.integers(0, sum(weights) - 1))
        k = next(i for i, cumulative in enumerate(_cumsum(weights)) if ticket < cumulative)
        if k < K:
            y = tasks.tasks[k](x)
        elif tasks.answer_length == 1:
            fits_none = [v for v in range(d) if all(t(x) != v for t in tasks.tasks)]
            y = draw(st.sampled_from(fits_none)) if fits_none else draw(st.integers(0, d - 1))
        else:   # a random answer: usually no task's (a chimera of their tokens, often)
            y = draw(st.lists(st.integers(0, d - 1), min_size=tasks.answer_length, max_size=tasks.answer_length))
        examples.append(Example(x, y))
    query = draw(inputs)
    j = draw(st.integers(0, tasks.answer_length - 1))
    if j and draw(st.booleans()):   # the start of some task's answer (a prefix that tasks survive)
        prefix = tasks.answer_of(tasks.tasks[draw(st.integers(0, K - 1))], query)[:j]
    else:
        prefix = tuple(draw(st.lists(st.integers(0, d - 1), min_size=j, max_size=j)))
    return Prompt(examples, query, prefix)


def _cumsum(values: list[int]) -> list[int]:
    out, total = [], 0
    for v in values:
        total += v
        out.append(total)
    return out


@st.composite
def cases(draw, max_vocab: int = 8, max_slots: int = 3, max_tasks: int = 4,
          max_examples: int = 16, max_arity: int = 3, max_answer_length: int = 1) -> tuple[TaskSet, Prompt]:
    """``(tasks, prompt)`` drawn together."""
    tasks = draw(task_sets(max_vocab, max_slots, max_tasks, max_arity=max_arity,
                           max_answer_length=max_answer_length))
    return tasks, draw(prompts(tasks, max_examples))


def covering_config(max_vocab: int = 8, max_slots: int = 3, max_tasks: int = 4, max_examples: int = 16,
                    max_arity: int = 3, max_answer_length: int = 1):
    """A ``ModelConfig`` at least as large as that of every model ``cases(...)`` can draw.

    Zero-pad every drawn model to it (``superpose.model.run(..., shape=...)``) and a whole
    Hypothesis run compiles one program per prompt-length bucket and dtype.

    >>> covering_config(max_vocab=4, max_slots=2, max_tasks=2, max_examples=3, max_arity=2).n_heads
    2
    """
    from superpose.construct.build import planned_config
    from superpose.executor import covering_config as cover

    s, r = max_slots, min(max_arity, max_slots)
    # K tasks of the largest arity that read as many distinct slots as possible (S = min(s, K r)):
    # the widest layers and the most heads any drawn task set can have, for each answer length
    configs = []
    for A in range(1, max_answer_length + 1):
        shape = (max_vocab,) * r + ((A,) if A > 1 else ())
        widest = TaskSet(max_vocab, s, [Task(f"t{k}", [(k * r + j) % s for j in range(r)], np.zeros(shape, dtype=int))
                                        for k in range(max_tasks)], answer_length=A)
        configs.append(planned_config(widest, max_examples))
    return cover(*configs)
