"""The embedded default: digit tasks in superposition (the paper's Figure 1, made exact).

Vocabulary: the digits ``0..9`` (tokens 0..9) and their words ``zero..nine`` (tokens
10..19), so d = 20. One input slot. Three tasks on a digit x:

* ``copy``:       x -> x
* ``next digit``: x -> (x + 1) mod 10
* ``to word``:    x -> the word for x

(On word tokens every table is the identity; prompts never feed them in.)
The default prompt mixes 6 copy, 4 next-digit and 2 to-word examples, so the
query's answer should be split 1/2 : 1/3 : 1/6.
"""

from __future__ import annotations

import random

from superpose.setting import Example, Prompt, Task, TaskSet

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def digit_tasks() -> TaskSet:
    words = list(range(10, 20))
    copy = list(range(10)) + words
    next_digit = [(x + 1) % 10 for x in range(10)] + words
    to_word = [x + 10 for x in range(10)] + words
    return TaskSet(
        vocab_size=20, slots=1,
        tasks=[Task("copy", 0, copy), Task("next digit", 0, next_digit), Task("to word", 0, to_word)],
        token_names=[str(x) for x in range(10)] + list(DIGIT_WORDS),
    )


def mixed_prompt(tasks: TaskSet, counts: tuple[int, ...] = (6, 4, 2), query: int = 7, seed: int = 0) -> Prompt:
    """``counts[k]`` examples of task k in shuffled order (digits drawn with ``seed``), then the query."""
    rng = random.Random(seed)
    examples = []
    for k, count in enumerate(counts):
        for _ in range(count):
            x = rng.randrange(10)
            examples.append(Example([x], tasks.tasks[k]([x])))
    rng.shuffle(examples)
    return Prompt(examples, [query])
