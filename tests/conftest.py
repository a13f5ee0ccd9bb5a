import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from superpose import Example, Prompt, Task, TaskSet

settings.register_profile(
    "default", deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def two_tasks() -> TaskSet:
    """Copy slot 0, and 'next' of slot 1, over 5 tokens with 2 input slots."""
    return TaskSet(vocab_size=5, slots=2, tasks=[
        Task("copy0", 0, [0, 1, 2, 3, 4]),
        Task("next1", 1, [1, 2, 3, 4, 0]),
    ])


@pytest.fixture
def mixed_prompt(two_tasks) -> Prompt:
    """Consistent, ambiguous and noise examples mixed."""
    return Prompt([
        Example([0, 3], 0),   # copy0 only
        Example([2, 1], 2),   # copy0 and next1 (ambiguous)
        Example([4, 4], 1),   # noise: copy0 -> 4, next1 -> 0
        Example([3, 0], 1),   # next1 only
        Example([1, 2], 1),   # copy0 only
    ], query=[2, 2])


def random_prompt(tasks: TaskSet, m: int, rng: np.random.Generator, noise: float = 0.2) -> Prompt:
    examples = []
    for _ in range(m):
        x = rng.integers(0, tasks.vocab_size, tasks.slots).tolist()
        if rng.random() < noise:
            y = int(rng.integers(0, tasks.vocab_size))
        else:
            y = tasks.tasks[int(rng.integers(0, tasks.K))](x)
        examples.append(Example(x, y))
    return Prompt(examples, rng.integers(0, tasks.vocab_size, tasks.slots).tolist())


# The task set and prompt the command-line tests write to files (tests/test_cli.py, test_reliability.py).
TASKS = {"vocab_size": 4, "slots": 2, "tasks": [
    {"name": "copy0", "slot": 0, "table": [0, 1, 2, 3]},
    {"name": "inc1", "slot": 1, "table": [1, 2, 3, 0]},
]}
PROMPT = {"examples": [{"inputs": [0, 1], "answer": 0}, {"inputs": [2, 2], "answer": 3},
                       {"inputs": [1, 2], "answer": 1}], "query": [3, 3]}


def write_input(tmp_path, name, obj) -> str:
    """Write ``obj`` (JSON-encoded unless a string, kept byte for byte via surrogateescape) to tmp_path/name."""
    path = tmp_path / name
    path.write_bytes((obj if isinstance(obj, str) else json.dumps(obj)).encode("utf-8", "surrogateescape"))
    return str(path)
