"""A fuzzer for the command line (issue 10): mutated TASKS.json / PROMPT.json files, run in-process.

Hypothesis starts from a valid task set and prompt and mutates them: tokens changed to other
valid tokens (the result must then be right), keys dropped, renamed
(typos, other fields' names, random text) and duplicated; values given another type;
extreme numbers (negative, 2^63, 10^100, a 5000-digit integer, 1e400, NaN, Infinity);
nesting 10 to 100,000 levels deep; strings of a megabyte; lists multiplied (up to
thousands of examples); and the raw text truncated or given invalid UTF-8. Each input
goes through the real entry point ``superpose.cli.main`` (``run --json`` mostly, ``layers``
sometimes) under a 256 MiB memory limit. Every outcome must be

* exit 0 with the correct result: one prediction per prediction position, the analytic
  column equal to ``superpose.verify.analytic.predict`` on the same files, and the
  model within the error bound (or ``no bound`` with its reason); or
* exit 2 with exactly one line on stderr, nothing on stdout;

never a traceback, and the process's peak memory never more than 1 GiB above where it
started. ``pytest tests/test_cli_fuzz.py -s`` prints how many inputs were tried and how
they ended: 500 inputs by default, 5000 with ``HYPOTHESIS_PROFILE=thorough``.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import io
import json
import resource

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from superpose.cli import main
from superpose.setting import Prompt, TaskSet, load_json_file
from superpose.verify.analytic import predict

BASE_TASKS = {"vocab_size": 4, "slots": 2, "tasks": [
    {"name": "copy0", "slot": 0, "table": [0, 1, 2, 3]},
    {"name": "inc1", "slot": 1, "table": [1, 2, 3, 0]},
    {"name": "const", "slot": 0, "table": [2, 2, 2, 2]},
], "token_names": ["a", "b", "c", "d"]}
BASE_PROMPT = {"examples": [{"inputs": [0, 1], "answer": 0}, {"inputs": [2, 2], "answer": 3},
                            {"inputs": [1, 2], "answer": 2}, {"inputs": [3, 0], "answer": 1}], "query": [3, 3]}
KNOWN_KEYS = ["vocab_size", "slots", "tasks", "token_names", "name", "slot", "table", "examples", "query",
              "inputs", "answer"]
TYPOS = ["vocabsize", "tabel", "token_name", "anwser", "exampels", "slot ", "Query", "", "näme"]
MEMORY_LIMIT = "256M"
MAX_LIST = 12_000  # longest list a "grow" makes (repeated growth would make the fuzzer itself the memory hog)
PEAK_GROWTH_LIMIT = 2 ** 30

OUTCOMES: collections.Counter = collections.Counter()


class Obj(list):
    """A JSON object as a list of (key, value) pairs, so that a key can occur twice."""


class Raw(str):
    """JSON text written verbatim (numbers beyond Python's floats, NaN, deep nesting, huge strings)."""


def to_doc(value):
    if isinstance(value, dict):
        return Obj((k, to_doc(v)) for k, v in value.items())
    if isinstance(value, list):
        return [to_doc(v) for v in value]
    return value


def dump(value) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Obj):
        return "{" + ", ".join(f"{json.dumps(k)}: {dump(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dump(v) for v in value) + "]"
    return json.dumps(value)


def slots_of(doc):
    """Every (container, index) in the document: where a mutation can act."""
    out = []
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, (Obj, list)) and not isinstance(node, Raw):
            for i in range(len(node)):
                out.append((node, i))
                child = node[i][1] if isinstance(node, Obj) else node[i]
                stack.append(child)
    return out


EXTREME = [0, -1, 1, 2, 7, 10 ** 6, 2 ** 31, 2 ** 63, -(2 ** 63), 10 ** 100, 0.5, -0.0, 1e308, True, None,
           Raw("9" * 5000), Raw("1e400"), Raw("-1e400"), Raw("NaN"), Raw("Infinity"), Raw("2.0"), Raw("1E2")]


@st.composite
def replacement(draw, old):
    kind = draw(st.sampled_from(["type", "number", "nest", "string", "copy"]))
    if kind == "type":
        return draw(st.sampled_from([None, True, False, "x", "3", 1.5, [], Obj(), [copy.deepcopy(old)],
                                     Obj([("value", copy.deepcopy(old))]), json.dumps(old, default=str)]))
    if kind == "number":
        return draw(st.sampled_from(EXTREME))
    if kind == "nest":
        depth = draw(st.sampled_from([10, 1000, 100_000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a": ', "}")]))
        return Raw(opener * depth + "1" + closer * depth)
    if kind == "string":
        return Raw(json.dumps(draw(st.sampled_from(["", "x" * 10 ** 4, "\u00e9\u4e2d" * 10 ** 5, "y" * 10 ** 6]))))
    return copy.deepcopy(draw(st.sampled_from([BASE_TASKS["tasks"][0], BASE_PROMPT["examples"], [0, 1], 4, 3])))


@st.composite
def mutate(draw, doc):
    places = slots_of(doc)
    if not places:
        return
    parent, i = places[draw(st.integers(0, len(places) - 1))]
    is_obj = isinstance(parent, Obj)
    value = parent[i][1] if is_obj else parent[i]
    op = draw(st.sampled_from(["drop", "rename", "duplicate", "replace", "replace", "grow", "token", "token"]))
    if op == "token" and isinstance(value, int) and not isinstance(value, bool):
        parent[i] = (parent[i][0], draw(st.integers(0, 3))) if is_obj else draw(st.integers(0, 3))  # stays valid
    elif op == "drop":
        del parent[i]
    elif op == "rename" and is_obj:
        key = draw(st.one_of(st.sampled_from(KNOWN_KEYS + TYPOS), st.text(max_size=12)))
        parent[i] = (key, value)
    elif op == "duplicate":
        parent.insert(i, copy.deepcopy(parent[i]))
    elif op == "grow" and isinstance(value, list) and not isinstance(value, Obj) and value:
        factor = min(draw(st.sampled_from([2, 10, 300, 3000])), max(1, MAX_LIST // len(value)))
        new = [copy.deepcopy(v) for v in value] * factor
        parent[i] = (parent[i][0], new) if is_obj else new
    else:
        new = draw(replacement(value))
        parent[i] = (parent[i][0], new) if is_obj else new


@st.composite
def files(draw):
    """(TASKS text, PROMPT text) after 1-3 mutations of one or both, maybe damaged as raw text."""
    docs = {"tasks": to_doc(BASE_TASKS), "prompt": to_doc(BASE_PROMPT)}
    for _ in range(draw(st.integers(1, 3))):
        draw(mutate(docs[draw(st.sampled_from(["tasks", "prompt"]))]))
    texts = {name: dump(doc).encode("utf-8") for name, doc in docs.items()}
    raw = draw(st.sampled_from([None, None, None, None, "truncate", "bad utf-8", "empty"]))
    if raw is not None:
        name = draw(st.sampled_from(["tasks", "prompt"]))
        text = texts[name]
        at = draw(st.integers(0, max(len(text) - 1, 0)))
        texts[name] = {"truncate": text[:at], "bad utf-8": text[:at] + b"\xff\xfe" + text[at:], "empty": b""}[raw]
    return texts["tasks"], texts["prompt"]


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def check_correct(report, tasks_path, prompt_path):
    tasks = TaskSet.from_json(load_json_file(tasks_path, "TASKS"))
    prompt = Prompt.from_json(load_json_file(prompt_path, "PROMPT"))
    expected = predict(tasks, prompt)
    predictions = report["predictions"]
    assert len(predictions) == prompt.n_examples + 1
    assert np.array_equal(np.array([p["analytic"] for p in predictions]), expected)
    if report["status"] == "within_bound":
        model = np.array([p["model"] for p in predictions], dtype=float)
        assert np.abs(model - expected).max() <= report["bound"]["total"]
    else:
        assert report["status"] == "no_bound" and report["no_bound_reason"]


@settings(max_examples=5 * settings().max_examples, deadline=None,  # 500 (5000 with HYPOTHESIS_PROFILE=thorough)
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(texts=files(), command=st.sampled_from(["run", "run", "run", "layers"]))
@example(texts=(json.dumps(BASE_TASKS).encode(), json.dumps(BASE_PROMPT).encode()), command="run")
@example(texts=(json.dumps(BASE_TASKS).encode(), b'{"examples": [], "query": [1, 2]}'), command="run")
def test_mutated_input_files_exit_0_correctly_or_2_with_one_line(tmp_path_factory, texts, command):
    directory = tmp_path_factory.getbasetemp() / "cli-fuzz"
    directory.mkdir(exist_ok=True)
    tasks_path, prompt_path = directory / "TASKS.json", directory / "PROMPT.json"
    tasks_path.write_bytes(texts[0])
    prompt_path.write_bytes(texts[1])
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if command == "run":
        argv = ["run", str(tasks_path), str(prompt_path), "--json", "--dtype", "float64"]
    else:
        argv = ["layers", str(tasks_path), "--max-examples", "8"]
    code, out, err = run_cli([*argv, "--memory-limit", MEMORY_LIMIT])
    OUTCOMES[(command, code)] += 1
    assert code in (0, 2), (code, err[-2000:])
    assert "Traceback" not in err
    if code == 2:
        assert out == "" and err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    elif command == "run":
        assert err == "", err
        check_correct(json.loads(out), str(tasks_path), str(prompt_path))
    else:
        assert err == "" and "Layer 7:" in out
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert peak_after - peak_before <= PEAK_GROWTH_LIMIT


def test_report_how_many_inputs_were_tried():
    """Runs after the fuzzer (file order): prints the count (``pytest tests/test_cli_fuzz.py -s``)."""
    total = sum(OUTCOMES.values())
    print(f"\nCLI fuzzer: {total} mutated inputs tried; outcomes (command, exit status): "
          + ", ".join(f"{cmd} exit {code}: {n}" for (cmd, code), n in sorted(OUTCOMES.items())))
    if total:  # not when the fuzz test was deselected
        assert set(code for _, code in OUTCOMES) <= {0, 2}
        assert OUTCOMES[("run", 0)] > 0 and OUTCOMES[("run", 2)] > 0   # both kinds of outcome were reached
