"""The small task sets, models and prompts the checks run on by default.

Small enough for exact arithmetic (prompts of at most 16 tokens, so L = 4), and chosen
to exercise every case of the theorem: an example consistent with one task, with two,
with all three (votes 1/C for C = 1, 2, 3), noise examples, a prompt with no consistent
example (uniform prior), the empty prompt, tasks reading different slots (look-backs 1, 2
and 3), a single-slot task set, and tasks reading two slots (in both orders) next to a
one-slot task.
"""

from __future__ import annotations

import random

from superpose.construct.build import DEFAULT_SHARPNESS, SuperposeModel, build
from superpose.setting import Example, Prompt, Task, TaskSet


def three_tasks() -> TaskSet:
    """d = 3, s = 2: copy slot 0, next of slot 1, constant 0 (from slot 0)."""
    return TaskSet(vocab_size=3, slots=2, tasks=[
        Task("copy0", 0, [0, 1, 2]), Task("next1", 1, [1, 2, 0]), Task("zero0", 0, [0, 0, 0])])


def two_tasks() -> TaskSet:
    """d = 5, s = 2: copy slot 0, next of slot 1."""
    return TaskSet(vocab_size=5, slots=2, tasks=[
        Task("copy0", 0, [0, 1, 2, 3, 4]), Task("next1", 1, [1, 2, 3, 4, 0])])


def one_slot_tasks() -> TaskSet:
    """d = 3, s = 1: identity and increment."""
    return TaskSet(vocab_size=3, slots=1, tasks=[Task("id", 0, [0, 1, 2]), Task("inc", 0, [1, 2, 0])])


def two_slot_tasks() -> TaskSet:
    """d = 3, s = 2: copy A (slot 0), A+B mod 3 (slots 0, 1), B-A mod 3 (slots 1, 0)."""
    return TaskSet(vocab_size=3, slots=2, tasks=[
        Task("A", 0, [0, 1, 2]),
        Task("A+B", [0, 1], [[(a + b) % 3 for b in range(3)] for a in range(3)]),
        Task("B-A", [1, 0], [[(b - a) % 3 for a in range(3)] for b in range(3)])])


def prompts_for(tasks: TaskSet) -> list[Prompt]:
    """Prompts for one of the task sets above (every case listed in the module docstring)."""
    if tasks == three_tasks():
        return [
            Prompt([], query=[2, 1]),
            Prompt([Example([0, 2], 0),    # all three tasks (vote 1/3 each)
                    Example([1, 0], 2),    # noise: the tasks give 1, 1, 0
                    Example([1, 1], 1)],   # copy0 only
                   query=[2, 1]),
            Prompt([Example([2, 0], 1),    # next1 only
                    Example([0, 1], 0)],   # copy0 and zero0 (vote 1/2 each)
                   query=[1, 2]),
        ]
    if tasks == two_tasks():
        return [
            Prompt([], query=[2, 2]),
            Prompt([Example([0, 3], 0),    # copy0 only
                    Example([2, 1], 2),    # copy0 and next1
                    Example([4, 4], 1)],   # noise
                   query=[3, 0]),
            Prompt([Example([4, 4], 1), Example([0, 0], 3)], query=[1, 3]),   # noise only: uniform prior
        ]
    if tasks == one_slot_tasks():
        return [
            Prompt([], query=[1]),
            Prompt([Example([0], 0), Example([1], 2), Example([2], 1), Example([2], 2)],   # id, inc, noise, id
                   query=[1]),
        ]
    if tasks == two_slot_tasks():
        return [
            Prompt([], query=[1, 2]),
            Prompt([Example([1, 2], 0),    # A+B only (A gives 1, B-A gives 1)
                    Example([2, 2], 2),    # A only (A+B gives 1, B-A gives 0)
                    Example([0, 0], 0)],   # all three (vote 1/3 each)
                   query=[2, 1]),
            Prompt([Example([1, 0], 2),    # A+B gives 1, B-A gives 2, A gives 1: B-A only
                    Example([2, 1], 1)],   # noise: A 2, A+B 0, B-A 2
                   query=[0, 2]),
        ]
    raise ValueError("prompts_for: not one of the proof task sets")


def proof_models(sharpness: float = DEFAULT_SHARPNESS) -> list[SuperposeModel]:
    """Freshly built models for the four task sets (prompts of up to 3 or 4 examples, 16 tokens at most)."""
    return [build(three_tasks(), max_examples=3, sharpness=sharpness),
            build(two_tasks(), max_examples=3, sharpness=sharpness),
            build(one_slot_tasks(), max_examples=4, sharpness=sharpness),
            build(two_slot_tasks(), max_examples=3, sharpness=sharpness)]


def random_prompts(tasks: TaskSet, max_examples: int, count: int, seed: int = 0) -> list[Prompt]:
    """``count`` seeded prompts of up to ``max_examples`` examples, each answer noise with probability 0.3."""
    rng = random.Random(seed)

    def inputs() -> list[int]:
        return [rng.randrange(tasks.vocab_size) for _ in range(tasks.slots)]

    prompts = []
    for _ in range(count):
        examples = []
        for _ in range(rng.randint(0, max_examples)):
            x = inputs()
            if rng.random() < 0.3:
                y = [rng.randrange(tasks.vocab_size) for _ in range(tasks.answer_length)]
                y = y[0] if tasks.answer_length == 1 else y
            else:
                y = rng.choice(tasks.tasks)(x)
            examples.append(Example(x, y))
        prompts.append(Prompt(examples, inputs()))
    return prompts


def two_token_tasks() -> TaskSet:
    """d = 3, s = 1, answers of two tokens: "ab" (x -> x, x+1) and "ac" (x -> x, x+2) share their first
    token, "cc" (x -> 2, 2) does not: the answer so far decides which tasks survive."""
    return TaskSet(vocab_size=3, slots=1, tasks=[
        Task("ab", 0, [[x, (x + 1) % 3] for x in range(3)]),
        Task("ac", 0, [[x, (x + 2) % 3] for x in range(3)]),
        Task("cc", 0, [[2, 2]] * 3)], answer_length=2)


def two_token_prompts() -> list[Prompt]:
    """Prompts of the two-token task set: surviving and eliminated tasks, the prior, noise."""
    return [
        Prompt([], query=[0], query_prefix=[0]),                                   # prior: ab, ac survive
        Prompt([Example([0], [0, 1]), Example([1], [2, 2])], query=[2], query_prefix=[2]),   # ab; cc; all fit 2..
        Prompt([Example([1], [1, 2]), Example([2], [2, 1])], query=[0], query_prefix=[0]),   # ab; ac; cc eliminated
        Prompt([Example([0], [1, 1])], query=[1], query_prefix=[1]),               # noise only: prior
        Prompt([Example([0], [2, 2])], query=[0], query_prefix=[0]),               # cc only: nobody survives
    ]
