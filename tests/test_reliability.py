"""Issue 10 (reliability): a strict input schema, typed errors from the API, no silent data loss,
no unbounded allocation, no tracebacks, deterministic --json output."""

import json
import re

import pytest

from superpose import (Example, InputFileError, Prompt, PromptError, SuperposeError, Task, TaskSet,
                       TaskSetError, build)
from superpose.cli import main
from superpose.setting import load_json_file

TASKS = {"vocab_size": 4, "slots": 2, "tasks": [
    {"name": "copy0", "slot": 0, "table": [0, 1, 2, 3]},
    {"name": "inc1", "slot": 1, "table": [1, 2, 3, 0]},
]}
PROMPT = {"examples": [{"inputs": [0, 1], "answer": 0}, {"inputs": [2, 2], "answer": 3},
                       {"inputs": [1, 2], "answer": 1}], "query": [3, 3]}


def write(tmp_path, name, obj):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(path)


def one_line_error(capsys, code, pattern):
    """Exit status 2, nothing on stdout, exactly one line on stderr matching ``pattern``."""
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------------
# A strict schema

def _task(**changes):
    return {**TASKS["tasks"][0], **changes}


SCHEMA_CASES = [
    ("vocabsize", {**{k: v for k, v in TASKS.items() if k != "vocab_size"}, "vocabsize": 4}, PROMPT,
     r"task set: unknown field 'vocabsize' \(did you mean \"vocab_size\"\?\)"),
    ("tabel", {**TASKS, "tasks": [{"name": "a", "slot": 0, "tabel": [0, 1, 2, 3], "table": [0, 1, 2, 3]}]}, PROMPT,
     r"tasks\[0\]: unknown field 'tabel' \(did you mean \"table\"\?\)"),
    ("token_name", {**TASKS, "token_name": ["a", "b", "c", "d"]}, PROMPT,
     r"unknown field 'token_name' \(did you mean \"token_names\"\?\)"),
    ("anwser", TASKS, {**PROMPT, "examples": [{"inputs": [0, 1], "anwser": 0}]},
     r"examples\[0\]: unknown field 'anwser' \(did you mean \"answer\"\?\)"),
    ("exampels", TASKS, {"exampels": PROMPT["examples"], "query": [3, 3]},
     r"prompt: unknown field 'exampels' \(did you mean \"examples\"\?\)"),
    ("no examples field", TASKS, {"query": [3, 3]}, r"prompt: missing field 'examples'"),
    ("unrelated key", {**TASKS, "zzz": 1}, PROMPT, r"unknown field 'zzz' \(known fields: vocab_size, slots"),
    ("duplicate key", '{"vocab_size": 4, "vocab_size": 5, "slots": 2, "tasks": []}', PROMPT,
     r"has the key 'vocab_size' twice in one object"),
    ("duplicate task names", {**TASKS, "tasks": [_task(), _task()]}, PROMPT,
     r"tasks: the name 'copy0' is used twice \(at 0 and 1\)"),
    ("duplicate token names", {**TASKS, "token_names": ["a", "b", "a", "d"]}, PROMPT,
     r"token_names: the name 'a' is used twice \(at 0 and 2\)"),
    ("deep nesting", "[" * 100_000 + "]" * 100_000, PROMPT, r"TASKS: .* is nested too deeply"),
    ("deep object nesting", TASKS, '{"a":' * 100_000 + "1" + "}" * 100_000, r"PROMPT: .* is nested too deeply"),
    ("integer of 5000 digits", '{"vocab_size": ' + "9" * 5000 + "}", PROMPT, r"integer too long"),
    ("name not a string", {**TASKS, "tasks": [_task(name=5)]}, PROMPT, r"name: expected a string"),
]


@pytest.mark.parametrize("label,tasks,prompt,pattern", SCHEMA_CASES, ids=[c[0] for c in SCHEMA_CASES])
def test_schema_errors_exit_2_with_one_line(tmp_path, capsys, label, tasks, prompt, pattern):
    code = main(["run", write(tmp_path, "t.json", tasks), write(tmp_path, "p.json", prompt), "--json"])
    one_line_error(capsys, code, pattern)


def test_an_empty_example_list_is_fine(tmp_path, capsys):
    code = main(["run", write(tmp_path, "t.json", TASKS), write(tmp_path, "p.json", {"examples": [], "query": [1, 2]}),
                 "--json", "--dtype", "float64"])
    assert code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    # no example: the uniform prior; query [1, 2]: copy0 -> 1, inc1 -> 3
    assert [p["analytic"] for p in report["predictions"]] == [[0.0, 0.5, 0.0, 0.5]]


def test_load_json_file_keeps_no_duplicate(tmp_path):
    path = write(tmp_path, "d.json", '{"examples": [{"inputs": [1], "answer": 1, "answer": 2}], "query": [0]}')
    with pytest.raises(InputFileError, match="key 'answer' twice"):
        load_json_file(path, "PROMPT")


@pytest.mark.parametrize("call,error,pattern", [
    (lambda: Task("t", 0, {0: 1, 1: 2, 2: 3}), TaskSetError, r"task 't': table: expected a list of tokens, got a dict"),
    (lambda: Task("t", 0, {0, 1, 2}), TaskSetError, r"table: expected a list of tokens, got a set"),
    (lambda: Task(None, 0, [0, 1]), TaskSetError, r"name: expected a string"),
    (lambda: Prompt([([0, 1], 0)], query=[0, 0]), PromptError, r"examples\[0\]: expected an Example"),
    (lambda: Prompt([{"inputs": [0, 1], "answer": 0}], query=[0, 0]), PromptError, r"examples\[0\]: expected an Example"),
    (lambda: Prompt(Example([0, 1], 0), query=[0, 0]), PromptError, r"examples: expected a list of Example"),
    (lambda: Prompt([], query=None), PromptError, r"query: expected a list of tokens, got NoneType"),
    (lambda: Prompt([], query=5), PromptError, r"query: expected a list of tokens, got int"),
    (lambda: Example(None, 0), PromptError, r"inputs: expected a list of tokens"),
    (lambda: Example({0: 1}, 0), PromptError, r"inputs: expected a list of tokens, got dict"),
    (lambda: TaskSet(3, 1, [Task("a", 0, [0, 1, 2]), Task("a", 0, [1, 2, 0])]), TaskSetError,
     r"tasks: the name 'a' is used twice"),
    (lambda: TaskSet(2, 1, [Task("a", 0, [0, 1])], token_names=["x", "x"]), TaskSetError,
     r"token_names: the name 'x' is used twice"),
    (lambda: TaskSet(2, 1, [Task("a", 0, [0, 1])]).prompt_length(-1), PromptError, r"n_examples: must be >= 0"),
    (lambda: TaskSet(2, 1, [Task("a", 0, [0, 1])]).prompt_length(1.5), PromptError, r"n_examples: expected an integer"),
    (lambda: TaskSet.from_json({"vocab_size": 2, "slots": 1, "tasks": [{"slot": 0, "table": [0, 1], "nmae": "x"}]}),
     TaskSetError, r"tasks\[0\]: unknown field 'nmae' \(did you mean \"name\"\?\)"),
    (lambda: Prompt.from_json({"examples": [], "query": [0], "extra": 1}), PromptError, r"unknown field 'extra'"),
])
def test_python_api_raises_typed_errors_naming_the_argument(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_the_dict_check_does_not_reject_sequences():
    # range, tuples and NumPy arrays are still tables
    import numpy as np

    tasks = TaskSet(3, 1, [Task("r", 0, range(3)), Task("t", 0, (1, 2, 0)), Task("n", 0, np.array([2, 0, 1]))])
    assert [t.table for t in tasks.tasks] == [(0, 1, 2), (1, 2, 0), (2, 0, 1)]
    assert Prompt((Example((0,), 1) for _ in range(2)), query=(2,)).n_examples == 2


# ---------------------------------------------------------------------------------------------
# The bound for a huge sharpness: computed without overflow

@pytest.mark.parametrize("beta", [1e8, 1e10, 1e100, 1e300, 1.7e308])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_error_bound_for_huge_sharpness_does_not_overflow(beta, dtype):
    from superpose.construct.bound import error_bound

    b = error_bound(K=3, T=1024, L=10, beta=beta, dtype=dtype)
    # exact arithmetic leaks nothing at such a sharpness; the rounding of scores of size beta
    # defeats the tally in float32 from 1e8 and in float64 from 1e100 (no bound then)
    assert b.leak == 0.0 and b.snap_input_error < 0.25
    assert b.holds == (dtype == "float64" and beta <= 1e10)
    assert (b.total < 1e-2) if b.holds else b.total == float("inf")
