"""Typed errors from the Python API, naming the field and the constraint."""

import pytest

from superpose import (BuildError, Example, Prompt, PromptError, Task, TaskSet, TaskSetError, build,
                       predict, prediction_positions, tokenize)


@pytest.mark.parametrize("kwargs,message", [
    (dict(vocab_size=0, slots=1, tasks=[Task("a", 0, [])]), "vocab_size: must be at least 1"),
    (dict(vocab_size=3, slots=0, tasks=[Task("a", 0, [0, 1, 2])]), "slots: must be at least 1"),
    (dict(vocab_size=3, slots=1, tasks=[]), "tasks: K = 0"),
    (dict(vocab_size=3, slots=1, tasks=[Task("a", 0, [0, 1])]), r"tasks\[0\]\.table: has length 2"),
    (dict(vocab_size=3, slots=1, tasks=[Task("a", 0, [0, 1, 3])]), r"tasks\[0\]\.table\[2\]: token 3"),
    (dict(vocab_size=3, slots=2, tasks=[Task("a", -1, [0, 1, 2])]), r"tasks\[0\]\.slot: -1 is outside 0\.\.1"),
    (dict(vocab_size=3, slots=1, tasks=[Task("a", True, [0, 1, 2])]), r"tasks\[0\]\.slot: expected an integer"),
    (dict(vocab_size=3, slots=1, tasks=["copy"]), r"tasks\[0\]: expected a Task"),
    (dict(vocab_size=3.5, slots=1, tasks=[Task("a", 0, [0, 1, 2])]), "vocab_size: expected an integer"),
    # tasks over several slots
    (dict(vocab_size=3, slots=2, tasks=[Task("a", [1, 1], [[0] * 3] * 3)]),
     r"tasks\[0\]\.slots: \[1, 1\] repeats a slot"),
    (dict(vocab_size=3, slots=1, tasks=[Task("a", [0, 1], [[0] * 3] * 3)]),
     r"tasks\[0\]\.slots: reads 2 slots, but examples have only slots = 1"),
    (dict(vocab_size=3, slots=3, tasks=[Task("a", [0, 2], [0, 1, 2])]),
     r"tasks\[0\]\.table\[0\]: expected a list of tokens"),
    (dict(vocab_size=3, slots=3, tasks=[Task("a", [0, 2], [[0] * 3] * 2)]), r"tasks\[0\]\.table: has length 2"),
    (dict(vocab_size=3, slots=3, tasks=[Task("a", [0, 2], [[0, 1, 2], [0, 1], [0, 1, 2]])]),
     r"tasks\[0\]\.table\[1\]: has length 2"),
    (dict(vocab_size=3, slots=3, tasks=[Task("a", [0, 2], [[0, 1, 2], [0, 1, [2]], [0, 1, 2]])]),
     r"tasks\[0\]\.table\[1\]\[2\]: expected an integer"),
    (dict(vocab_size=3, slots=3, tasks=[Task("a", [0, 1, 2], [[[0] * 3] * 3] * 2 + [[[0, 0, 4]] * 3])]),
     r"tasks\[0\]\.table\[2\]\[0\]\[2\]: token 4 is outside"),
    (dict(vocab_size=101, slots=3, tasks=[Task("a", [0, 1, 2], [[[0]]])]),
     r"tasks\[0\]\.table: d\^r = 101\^3 = 1,030,301 entries exceeds the limit"),
    (dict(vocab_size=3, slots=3, tasks=[Task("a", [], [0, 1, 2])]), r"tasks\[0\]\.slots: a task reads at least one slot"),
])
def test_task_set_errors(kwargs, message):
    with pytest.raises(TaskSetError, match=message):
        TaskSet(**kwargs)


@pytest.mark.parametrize("prompt,message", [
    (Prompt([Example([0, 1, 2], 0)], [0, 0]), r"examples\[0\]\.inputs: has 3 input tokens, expected slots = 2"),
    (Prompt([Example([0, 5], 0)], [0, 0]), r"examples\[0\]\.inputs\[1\]: token 5 is outside the vocabulary 0\.\.4"),
    (Prompt([Example([0, 1], 7)], [0, 0]), r"examples\[0\]\.answer: token 7"),
    (Prompt([], [0]), r"query: has 1 input tokens"),
    (Prompt([], [0, -2]), r"query\[1\]: token -2"),
])
def test_prompt_errors(two_tasks, prompt, message):
    for call in (lambda: tokenize(two_tasks, prompt), lambda: predict(two_tasks, prompt),
                 lambda: build(two_tasks, max_examples=4).run(prompt)):
        with pytest.raises(PromptError, match=message):
            call()


@pytest.mark.parametrize("kwargs,message", [
    (dict(max_examples=-1), "max_examples: must be >= 0"),
    (dict(max_examples=2.5), "max_examples: expected an integer"),
    (dict(sharpness=0), "sharpness: must be a finite number > 0"),
    (dict(sharpness=float("nan")), "sharpness: must be a finite number > 0"),
    (dict(sharpness="50"), "sharpness: expected a number"),
])
def test_build_errors(two_tasks, kwargs, message):
    with pytest.raises(BuildError, match=message):
        build(two_tasks, **kwargs)


def test_tokens_and_prediction_positions(two_tasks, mixed_prompt):
    tokens = tokenize(two_tasks, mixed_prompt)
    n = two_tasks.example_length
    assert len(tokens) == two_tasks.prompt_length(5) == 6 * n
    assert tokens[0] == two_tasks.bos
    positions = prediction_positions(two_tasks, 5)
    assert (tokens[positions] == two_tasks.arrow).all()
    assert (tokens == two_tasks.arrow).sum() == 6
    assert positions[-1] == len(tokens) - 1


def test_analytic_prediction_by_hand(two_tasks, mixed_prompt):
    from fractions import Fraction as F

    rows = predict(two_tasks, mixed_prompt, exact=True)
    # before any example: uniform prior over the 2 tasks on input [0, 3]: copy0 -> 0, next1 -> 4
    assert rows[0] == [F(1, 2), 0, 0, 0, F(1, 2)]
    # query [2, 2] after votes copy0: 1 + 1/2 + 1 = 5/2, next1: 1/2 + 1 = 3/2 over 4 consistent examples
    assert rows[-1] == [0, 0, F(5, 8), F(3, 8), 0]


def test_a_task_table_can_be_a_nested_list_or_an_array_and_a_dict_is_refused():
    import numpy as np
    nested = [[(a * 3 + b) % 3 for b in range(3)] for a in range(3)]
    as_list = TaskSet(3, 2, [Task("f", [0, 1], nested)])
    as_array = TaskSet(3, 2, [Task("f", slots=(0, 1), table=np.array(nested))])
    assert as_list == as_array and as_list.tasks[0]([2, 1]) == nested[2][1] == 1
    assert as_list.tasks[0].arity == 2 and as_list.slots_read == (0, 1)
    assert TaskSet.from_json(as_list.to_json()) == as_list
    assert Task("c", slot=1, table=[0, 1, 2]).slots == (1,)
    with pytest.raises(TaskSetError, match="table is a dict"):
        Task("d", 0, {0: 1, 1: 2, 2: 0})


def test_reading_slots_in_another_order_transposes_the_table():
    forward = Task("A-B", [0, 1], [[(a - b) % 5 for b in range(5)] for a in range(5)])
    backward = Task("A-B", [1, 0], [[(a - b) % 5 for a in range(5)] for b in range(5)])
    for x in ([0, 3], [4, 1], [2, 2]):
        assert forward(x) == backward(x) == (x[0] - x[1]) % 5


def test_a_table_nested_hundreds_deep_is_a_typed_error_not_a_recursion_error():
    table = 0
    for _ in range(900):
        table = [table]
    with pytest.raises(TaskSetError, match=r"tasks\[0\]\.table"):
        TaskSet(2, 1, [Task("deep", 0, table)])
    with pytest.raises(TaskSetError, match="at most 64"):
        TaskSet(1, 70, [Task("wide", list(range(65)), 0)])
