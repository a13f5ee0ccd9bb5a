"""Hypothesis strategies for fuzzing task mixtures.

``task_sets()`` draws vocabularies, slot counts and tables, deliberately including
duplicate tasks (the same slot and table twice), colliding tasks (different tasks
that agree on many inputs) and constant tables. ``prompts(tasks)`` draws a mixture
over the tasks plus a share of noise, then examples from it: an example of task k is
``(x, g_k(x[a_k]))``; a noise example gets an answer that fits no task whenever such
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

from hypothesis import strategies as st

from superpose.setting import Example, Prompt, Task, TaskSet


@st.composite
def tables(draw, vocab_size: int) -> list[int]:
    """A lookup table: identity, a shift, a constant, or arbitrary."""
    kind = draw(st.sampled_from(["identity", "shift", "constant", "random"]))
    if kind == "identity":
        return list(range(vocab_size))
    if kind == "shift":
        shift = draw(st.integers(0, vocab_size - 1))
        return [(x + shift) % vocab_size for x in range(vocab_size)]
    if kind == "constant":
        return [draw(st.integers(0, vocab_size - 1))] * vocab_size
    return draw(st.lists(st.integers(0, vocab_size - 1), min_size=vocab_size, max_size=vocab_size))


@st.composite
def task_sets(draw, max_vocab: int = 8, max_slots: int = 3, max_tasks: int = 4,
              min_vocab: int = 2) -> TaskSet:
    """A random ``TaskSet`` with ``1..max_tasks`` tasks, duplicates and collisions included."""
    d = draw(st.integers(min_vocab, max_vocab))
    s = draw(st.integers(1, max_slots))
    K = draw(st.integers(1, max_tasks))
    tasks: list[Task] = []
    for k in range(K):
        if tasks and draw(st.integers(0, 5)) == 0:  # an exact duplicate of an earlier task
            source = tasks[draw(st.integers(0, len(tasks) - 1))]
            tasks.append(Task(f"dup{k}", source.slot, source.table))
            continue
        slot = draw(st.integers(0, s - 1))
        if tasks and draw(st.integers(0, 4)) == 0:  # collide with an earlier task on most inputs
            table = list(tasks[draw(st.integers(0, len(tasks) - 1))].table)
            table[draw(st.integers(0, d - 1))] = draw(st.integers(0, d - 1))
        else:
            table = draw(tables(d))
        tasks.append(Task(f"t{k}", slot, table))
    return TaskSet(d, s, tasks)


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
        else:
            fits_none = [v for v in range(d) if all(t(x) != v for t in tasks.tasks)]
            y = draw(st.sampled_from(fits_none)) if fits_none else draw(st.integers(0, d - 1))
        examples.append(Example(x, y))
    return Prompt(examples, draw(inputs))


def _cumsum(values: list[int]) -> list[int]:
    out, total = [], 0
    for v in values:
        total += v
        out.append(total)
    return out


@st.composite
def cases(draw, max_vocab: int = 8, max_slots: int = 3, max_tasks: int = 4,
          max_examples: int = 16) -> tuple[TaskSet, Prompt]:
    """``(tasks, prompt)`` drawn together."""
    tasks = draw(task_sets(max_vocab, max_slots, max_tasks))
    return tasks, draw(prompts(tasks, max_examples))
