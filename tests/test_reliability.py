"""Issue 10 (reliability): a strict input schema, typed errors from the API, no silent data loss,
no unbounded allocation, no tracebacks, deterministic --json output."""

import json
import re

import pytest

from superpose import (Example, InputFileError, Prompt, PromptError, Task, TaskSet,
                       TaskSetError, build)
from superpose.cli import main
from superpose.setting import load_json_file

from conftest import PROMPT, TASKS, write_input as write  # the CLI tests' shared task set and prompt


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
    ("a megabyte token", TASKS, {**PROMPT, "query": [3, "y" * 10 ** 6]},
     r"^error: query\[1\]: expected an integer, got 'y{59}\.\.\.$"),
    ("a key with a newline", {**TASKS, "vocab\nsize": 4}, PROMPT, r"unknown field 'vocab\\nsize'"),
    ("not UTF-8", TASKS, '{"examples": [], "query": "\udcff"}', r"PROMPT: .* is not UTF-8 text \(byte \d+\)"),
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
    (lambda: Task("t", 0, {0: 1, 1: 2, 2: 3}), TaskSetError, r"task 't': table is a dict; expected a nested list of tokens"),
    (lambda: Task("t", 0, {0, 1, 2}), TaskSetError, r"table is a set; expected a nested list of tokens"),
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

    b = error_bound(K=3, T=1024, L=10, beta=beta, dtype=dtype, arity=2, vocab_size=8)
    # exact arithmetic leaks nothing at such a sharpness, and (issue 17) the rounding of the scores
    # never defeats the construction before they overflow: the bound holds until the look-back
    # scores (about 2 L beta) pass the largest float, then there is no bound, with the reason
    assert b.leak == 0.0 and b.snap_input_error < 0.25
    import numpy as np

    overflows = 4 * 10 * beta > float(np.finfo(dtype).max) / 2
    assert b.holds == (not overflows) and b.why == ("overflow" if overflows else "")
    assert (b.total < 1e-4) if b.holds else b.total == float("inf")


# ---------------------------------------------------------------------------------------------
# Python API: typed errors at the run and bound entry points, save into a missing directory

def test_model_run_and_error_bound_reject_bad_arguments(tmp_path):
    from superpose import OutputFileError, save

    tasks = TaskSet(3, 1, [Task("id", 0, [0, 1, 2]), Task("inc", 0, [1, 2, 0])])
    model = build(tasks, max_examples=4)  # context 3 * 5 = 15 tokens
    with pytest.raises(PromptError, match="prompts: expected a Prompt or a list of Prompts, got Example"):
        model.run(Example([0], 0))
    with pytest.raises(PromptError, match=r"prompt 0: prompt: expected a Prompt, got tuple"):
        model.run([([0], 0)])
    for bad in (-1, 0, 16, 10 ** 6):
        with pytest.raises(PromptError, match=r"prompt_length: must lie in 1\.\.15 \(the model's context\)"):
            model.error_bound("float64", prompt_length=bad)
    with pytest.raises(PromptError, match="prompt_length: expected an integer"):
        model.error_bound("float64", prompt_length=2.5)
    assert model.error_bound("float64", prompt_length=15) == model.error_bound("float64")
    with pytest.raises(OutputFileError, match="does not exist"):
        save(model, str(tmp_path / "no" / "such" / "dir" / "m.npz"))


# ---------------------------------------------------------------------------------------------
# Memory: planned_config is build's config; estimates; refusals come before anything is built

PLANNED = [(1, 1, 1, 0), (4, 2, 2, 8), (5, 3, 7, 40), (10, 1, 3, 64), (2, 2, 12, 3), (16, 2, 1, 1023)]


@pytest.mark.parametrize("d,s,K,m", PLANNED)
def test_planned_config_is_the_config_build_makes(d, s, K, m):
    from superpose.construct.build import planned_config
    from superpose.resources import n_params

    tasks = TaskSet(d, s, [Task(f"t{k}", k % s, [(x * (k + 1) + k) % d for x in range(d)]) for k in range(K)])
    model = build(tasks, m)
    assert planned_config(tasks, m) == model.config
    assert n_params(model.config) == model.n_params


def test_parse_size_and_the_limit_precedence(monkeypatch):
    from superpose.resources import ENV_VAR, ResourceError, memory_limit, parse_size

    assert parse_size("4G") == 4 * 2 ** 30 and parse_size("512M") == 2 ** 29 and parse_size("123") == 123
    assert parse_size("1.5GiB") == 3 * 2 ** 29 and parse_size("2 kb") == 2048 and parse_size("1e3") == 1000
    for bad in ("", "G", "-1G", "0", "4X", "four", "nan", "1e400"):
        with pytest.raises(ResourceError, match="--memory-limit"):
            parse_size(bad)
    monkeypatch.setenv(ENV_VAR, "3G")
    assert memory_limit().bytes == 3 * 2 ** 30 and memory_limit("1M").bytes == 2 ** 20
    monkeypatch.setenv(ENV_VAR, "lots")
    with pytest.raises(ResourceError, match=ENV_VAR):
        memory_limit()
    monkeypatch.delenv(ENV_VAR)
    assert 0 < memory_limit().bytes and "available" in memory_limit().source


def test_estimates_scale_as_the_executors_do():
    from superpose.resources import estimate_memory

    tasks = TaskSet(4, 2, [Task("a", 0, [0, 1, 2, 3]), Task("b", 1, [1, 2, 3, 0])])
    m = 4095
    T = tasks.prompt_length(m)
    dense = [estimate_memory(tasks, m, t, executor="dense").activations for t in (T // 4, T)]
    chunk = [estimate_memory(tasks, m, t, executor="chunked").activations for t in (T // 4, T)]
    assert 12 < dense[1] / dense[0] <= 16      # T^2
    assert 3 < chunk[1] / chunk[0] <= 4.5      # T
    # the default executor runs short prompts densely and long ones block by block, as superpose.model does
    assert estimate_memory(tasks, m, 200).activations == estimate_memory(tasks, m, 200, executor="dense").activations
    assert estimate_memory(tasks, m, T).activations == estimate_memory(tasks, m, T, executor="chunked").activations
    f32, f64 = (estimate_memory(tasks, m, T, dtype=dt) for dt in ("float32", "float64"))
    assert f64.activations == 2 * f32.activations and f64.weights > f32.weights
    built = build(tasks, 64)
    assert estimate_memory(tasks, 64).weights >= 8 * built.n_params


def _tasks_file(tmp_path, K, d, name="t.json"):
    return write(tmp_path, name, {"vocab_size": d, "slots": 2, "tasks": [
        {"name": f"t{k}", "slot": k % 2, "table": [(x + k) % d for x in range(d)]} for k in range(K)]})


def _prompt_file(tmp_path, m, d=4, name="p.json"):
    return write(tmp_path, name, {"examples": [{"inputs": [i % d, (3 * i) % d], "answer": i % d} for i in range(m)],
                                  "query": [0, 1]})


@pytest.fixture
def nothing_is_built(monkeypatch):
    """Fail the test if any command gets as far as building (or loading) weights."""
    def refuse(*args, **kwargs):
        raise AssertionError("weights were built before the memory check refused the job")
    import superpose.cli
    import superpose.commands
    import superpose.io

    for module in (superpose.cli, superpose.commands, superpose.io):
        monkeypatch.setattr(module, "build", refuse)


def test_absurd_jobs_are_refused_before_anything_is_built(tmp_path, capsys, nothing_is_built):
    limit = ["--memory-limit", "1G"]
    tasks, huge_k, huge_d = _tasks_file(tmp_path, 2, 4), _tasks_file(tmp_path, 3000, 4, "k.json"), \
        _tasks_file(tmp_path, 2, 20000, "d.json")
    empty = write(tmp_path, "e.json", {"examples": [], "query": [0, 1]})
    cases = [
        (["run", huge_k, empty, *limit], r"K = 3000 tasks .* would need about .* TiB .* over the memory limit 1 GiB "
                                         r"\(--memory-limit\); use a shorter prompt, fewer tasks"),
        (["build", huge_k, "-o", str(tmp_path / "k.npz"), *limit], r"use fewer than 3000 tasks"),
        (["layers", huge_k, *limit], r"K = 3000 tasks"),
        (["export", huge_k, "-o", str(tmp_path / "k.safetensors"), *limit], r"K = 3000 tasks"),
        (["run", huge_d, empty, *limit], r"d = 20000 tokens"),
        # block-wise attention: 2.5 GiB for 400,004 tokens (dense attention would need 3.5 TiB)
        (["run", tasks, _prompt_file(tmp_path, 100_000), *limit],
         r"running a 400004-token prompt \(100000 examples\) .* about 2\.5\d GiB .* over the memory limit 1 GiB"),
        (["build", tasks, "-o", str(tmp_path / "m.npz"), "--max-examples", str(10 ** 7), *limit],
         r"up to 10000000 examples \(40000004 tokens\).* use --max-examples \d+ or less"),
        (["build", tasks, "-o", str(tmp_path / "m.npz"), "--max-examples", str(10 ** 6), *limit],
         r"use --max-examples \d+ or less"),
        (["run", tasks, empty, "--max-examples", str(10 ** 7), *limit], r"use --max-examples \d+ or less"),
    ]
    for argv, pattern in cases:
        one_line_error(capsys, main(argv), pattern)
    assert not (tmp_path / "k.npz").exists() and not (tmp_path / "m.npz").exists()


def test_the_limit_comes_from_the_environment_too(tmp_path, capsys, monkeypatch, nothing_is_built):
    monkeypatch.setenv("SUPERPOSE_MEMORY_LIMIT", "1K")
    one_line_error(capsys, main(["run", _tasks_file(tmp_path, 2, 4), _prompt_file(tmp_path, 3)]),
                   r"over the memory limit 1 KiB \(SUPERPOSE_MEMORY_LIMIT\)")
    monkeypatch.setenv("SUPERPOSE_MEMORY_LIMIT", "plenty")
    one_line_error(capsys, main(["run", _tasks_file(tmp_path, 2, 4), _prompt_file(tmp_path, 3)]),
                   r"SUPERPOSE_MEMORY_LIMIT: expected a size such as 4G")


def test_a_suggested_max_examples_fits(tmp_path, capsys):
    tasks = _tasks_file(tmp_path, 2, 4)
    out = str(tmp_path / "m.npz")
    line = one_line_error(capsys, main(["build", tasks, "-o", out, "--max-examples", "100000", "--memory-limit",
                                        "64M"]), r"use --max-examples (\d+) or less")
    best = int(re.search(r"use --max-examples (\d+) or less", line).group(1))
    assert 0 < best < 100000
    assert main(["build", tasks, "-o", out, "--max-examples", str(best), "--memory-limit", "64M"]) == 0
    one_line_error(capsys, main(["build", tasks, "-o", out, "--force", "--max-examples", str(best + 1),
                                 "--memory-limit", "64M"]), "over the memory limit")


def test_a_long_prompt_runs_block_wise_within_a_small_memory_limit(tmp_path, capsys):
    """1,204 tokens: dense attention would need 3 H T^2 values; the executor's blocks fit 40 MB."""
    from superpose.resources import estimate_memory

    tasks, prompt = _tasks_file(tmp_path, 2, 4), _prompt_file(tmp_path, 300)
    args = ["run", tasks, prompt, "--json", "--dtype", "float64", "--memory-limit", "40M"]
    task_set = TaskSet(4, 2, [Task(f"t{k}", k % 2, [(x + k) % 4 for x in range(4)]) for k in range(2)])
    assert estimate_memory(task_set, 300, 1204, dtype="float64", executor="dense").total > 40 * 2 ** 20
    reports = {}
    for extra in ([], ["--executor", "chunked", "--block", "64"]):
        assert main([*args, *extra]) == 0
        reports[bool(extra)] = report = json.loads(capsys.readouterr().out)
        assert report["status"] == "within_bound"
        assert len(report["predictions"]) == 301 and report["max_abs_error"] <= report["bound"]["total"] < 1e-9
    assert reports[True]["executor"] == "chunked"
    one_line_error(capsys, main([*args, "--executor", "chunked", "--block", "48"]), "--block: must be a power of two")


def test_a_big_json_input_is_refused_by_its_size(tmp_path, capsys):
    prompt = _prompt_file(tmp_path, 20_000)  # about 1 MB of JSON
    one_line_error(capsys, main(["run", _tasks_file(tmp_path, 2, 4), prompt, "--memory-limit", "8M"]),
                   r"PROMPT: .* reading it would need about .* over the memory limit 8 MiB")


# ---------------------------------------------------------------------------------------------
# No silent data loss: refused overwrites, inputs never overwritten, atomic replacement

def test_build_over_an_existing_file_leaves_it_untouched(tmp_path, capsys):
    tasks = _tasks_file(tmp_path, 2, 4)
    out = tmp_path / "m.npz"
    assert main(["build", tasks, "-o", str(out), "--max-examples", "3"]) == 0
    capsys.readouterr()
    before = out.read_bytes()
    one_line_error(capsys, main(["build", tasks, "-o", str(out), "--max-examples", "5"]),
                   rf"--output: {re.escape(str(out))} exists; pass --force to overwrite it")
    assert out.read_bytes() == before
    # the command's own input, even with --force (also through another spelling of the path)
    tasks_before = open(tasks, "rb").read()
    for target in (tasks, str(tmp_path / "." / "t.json")):
        one_line_error(capsys, main(["build", tasks, "-o", target, "--force"]),
                       "is also an input of this command; refusing to overwrite it")
    assert open(tasks, "rb").read() == tasks_before
    assert main(["build", tasks, "-o", str(out), "--max-examples", "5", "--force"]) == 0
    from superpose import load

    assert out.read_bytes() != before and load(str(out)).max_examples == 5
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []   # no temporary left behind
    one_line_error(capsys, main(["build", tasks, "-o", str(tmp_path / "nowhere" / "m.npz")]),
                   r"directory .*nowhere does not exist")
    one_line_error(capsys, main(["build", tasks, "-o", str(tmp_path)]), r"is a directory")


WRITER = r"""
import sys
from superpose.files import atomic_write
with atomic_write(sys.argv[1], force=True) as tmp:
    with open(tmp, "wb") as f:
        chunk = b"x" * 2 ** 20
        f.write(chunk); f.flush()
        print("writing", flush=True)
        while True:          # a large write that never finishes: killed from outside
            f.write(chunk); f.flush()
"""


def test_a_writer_killed_mid_write_leaves_the_old_file_intact(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    target = tmp_path / "model.npz"
    old = os.urandom(100_000)
    target.write_bytes(old)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"writing\n"
        deadline = time.monotonic() + 120   # a wait, not an assertion on time
        while time.monotonic() < deadline:
            temporaries = [p for p in tmp_path.iterdir() if p.name.startswith(".model.npz.")]
            if temporaries and temporaries[0].stat().st_size > 16 * 2 ** 20:
                break
            time.sleep(0.05)
        assert temporaries and temporaries[0].stat().st_size > 16 * 2 ** 20   # it was mid-way through a large write
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == old           # byte for byte


def test_atomic_write_removes_its_temporary_on_failure(tmp_path):
    from superpose.files import atomic_write

    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(str(target), force=True) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("writer failed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_every_writing_command_refuses_an_existing_output_at_once(tmp_path, capsys, monkeypatch):
    import superpose.verify.cli
    import superpose.verify.sweep

    def never(*args, **kwargs):
        raise AssertionError("the command started its work before refusing the output")
    monkeypatch.setattr(superpose.verify.sweep, "run_sweep", never)
    monkeypatch.setattr(superpose.verify.cli, "load_bench_program", never)
    monkeypatch.setattr(superpose.verify.sweep, "read_records", never)
    existing = tmp_path / "existing"
    existing.write_text("precious")
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "calibration.svg").write_text("precious")
    train_out = tmp_path / "run"
    train_out.mkdir()
    (train_out / "checkpoint.json").write_text("precious")
    eval_out = tmp_path / "eval"
    eval_out.mkdir()
    (eval_out / "mixtures.json").write_text("precious")
    commands = [
        ["sweep", "-o", str(existing), "--vocab", "3"],
        ["bench", "--quick", "-o", str(existing)],
        ["plot", str(existing), "-o", str(figures)],
        ["export", _tasks_file(tmp_path, 2, 4), "-o", str(existing)],
        ["train", "--out", str(train_out), "--steps", "1"],
        ["evaluate-mixtures", "--checkpoint", str(train_out), "--out", str(eval_out)],
    ]
    for argv in commands:
        one_line_error(capsys, main(argv), r"exists; pass --force to overwrite it")
    for path in (existing, figures / "calibration.svg", train_out / "checkpoint.json", eval_out / "mixtures.json"):
        assert path.read_text() == "precious"


# ---------------------------------------------------------------------------------------------
# Weights files: headers checked before any data is read

def _saved(tmp_path, max_examples=3):
    from superpose import save

    tasks = TaskSet(4, 2, [Task("a", 0, [0, 1, 2, 3]), Task("b", 1, [1, 2, 3, 0])])
    path = tmp_path / "m.npz"
    save(build(tasks, max_examples), str(path))
    return tasks, path


def _rewrite_npz(path, change):
    """Rewrite the archive with ``change(name, raw_bytes) -> raw_bytes`` applied to each member."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = [(info.filename, z.read(info)) for info in z.infolist()]
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members:
            z.writestr(name, change(name, data))


def _npy(shape, dtype="<f8", payload=b""):
    """The bytes of an ``.npy`` file whose header claims ``shape`` and ``dtype``, followed by ``payload``."""
    import io

    import numpy as np

    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + payload  # write_array_header_1_0 writes the magic string too


def test_a_member_claiming_a_huge_shape_is_refused_before_its_data_is_read(tmp_path, monkeypatch):
    import superpose.io
    from superpose import WeightsFileError, load

    _, path = _saved(tmp_path)
    _rewrite_npz(path, lambda name, data: _npy((10 ** 12, 57), payload=b"\0" * 4096)
                 if name == "layer_3/mlp/W_in.npy" else data)
    read = []
    original = superpose.io._read_member
    monkeypatch.setattr(superpose.io, "_read_member",
                        lambda archive, info, *a: read.append(info.filename) or original(archive, info, *a))
    with pytest.raises(WeightsFileError, match=r"layer_3/mlp/W_in is float64 of shape \(1000000000000, 57\), "
                                               r"config says float64 of shape"):
        load(str(path))
    assert read == ["__metadata__.npy"]


def test_wrong_dtype_objects_and_truncated_members_are_typed_errors(tmp_path):
    from superpose import WeightsFileError, load

    tasks, path = _saved(tmp_path)
    model = build(tasks, 3)
    shape = model.params["layer_1"]["attn"]["W_Q"].shape
    _rewrite_npz(path, lambda name, data: _npy(shape, "<f4") if name == "layer_1/attn/W_Q.npy" else data)
    with pytest.raises(WeightsFileError, match=r"layer_1/attn/W_Q is float32"):
        load(str(path))
    tasks, path = _saved(tmp_path)
    _rewrite_npz(path, lambda name, data: _npy(shape, "|O") if name == "layer_1/attn/W_Q.npy" else data)
    with pytest.raises(WeightsFileError, match=r"holds objects|not a NumPy array"):
        load(str(path))
    tasks, path = _saved(tmp_path)
    _rewrite_npz(path, lambda name, data: data[:-8] if name == "layer_1/attn/W_Q.npy" else data)
    with pytest.raises(WeightsFileError, match=r"truncated"):
        load(str(path))


def test_metadata_claiming_a_huge_model_is_refused_by_the_memory_limit(tmp_path):
    import numpy as np

    from superpose import ResourceError, load
    from superpose.construct.build import planned_config
    from superpose.resources import MemoryLimit

    tasks, path = _saved(tmp_path)

    def inflate(name, data):
        if name != "__metadata__.npy":
            return data
        meta = json.loads(np.load(__import__("io").BytesIO(data)).tobytes())
        meta["max_examples"] = 10 ** 9
        meta["config"] = planned_config(tasks, 10 ** 9).to_json()
        blob = json.dumps(meta).encode()
        return _npy((len(blob),), "|u1", blob)
    _rewrite_npz(path, inflate)
    with pytest.raises(ResourceError, match=r"loading this model \(context 4000000004 tokens\) would need about "
                                            r".* over the memory limit 1 GiB"):
        load(str(path), limit=MemoryLimit(2 ** 30, "test"))


def test_a_random_binary_file_is_not_a_weights_file(tmp_path, capsys):
    import os

    from superpose import WeightsFileError, load

    junk = tmp_path / "junk.npz"
    junk.write_bytes(os.urandom(5000))
    with pytest.raises(WeightsFileError, match="not a superpose weights file") as info:
        load(str(junk))
    assert "pickle" not in str(info.value)
    line = one_line_error(capsys, main(["run", _tasks_file(tmp_path, 2, 4), _prompt_file(tmp_path, 2), "--weights",
                                        str(junk)]), "not a superpose weights file")
    assert "pickle" not in line


# ---------------------------------------------------------------------------------------------
# No misleading messages: the bound's status, exit codes, deterministic --json

def test_json_output_is_byte_identical_across_runs(tmp_path, capsys):
    """Two fresh processes print the same bytes; ``--timing`` (here in this process) adds only its timings."""
    import subprocess
    import sys

    argv = ["run", _tasks_file(tmp_path, 2, 4), _prompt_file(tmp_path, 5), "--json"]
    first, second = (subprocess.run([sys.executable, "-m", "superpose.cli", *argv], capture_output=True,
                                    check=True).stdout for _ in range(2))
    assert first == second and b'"seconds"' not in first and b'"timing"' not in first
    assert main([*argv, "--timing"]) == 0
    timed = json.loads(capsys.readouterr().out)
    assert timed["timing"]["run_seconds"] > 0
    del timed["timing"]
    assert timed == json.loads(first)


def test_no_bound_says_why_and_exits_0(tmp_path, capsys):
    tasks, prompt = _tasks_file(tmp_path, 2, 4), _prompt_file(tmp_path, 5)
    assert main(["run", tasks, prompt, "--sharpness", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "no bound: sharpness 0.5 is too low for K = 2 and 24 tokens" in out and "NOT within" not in out
    assert re.search(r"Result: no bound to check against \(see above\); measured error \d\.\d+e[+-]\d+", out)
    assert main(["run", tasks, prompt, "--sharpness", "1e38", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "no_bound" and report["bound"]["total"] is None
    assert "sharpness 1e+38 overflows float32" in report["no_bound_reason"]
    assert "too low" not in report["no_bound_reason"]   # the output itself overflows: max_abs_error may be null
    for beta in ("1e10", "1e300"):
        for dtype in ("float32", "float64"):
            code = main(["run", tasks, prompt, "--sharpness", beta, "--dtype", dtype, "--json"])
            captured = capsys.readouterr()
            assert code == 0 and captured.err == "", captured.err
            report = json.loads(captured.out)   # strict JSON: no NaN even if the output overflowed
            assert report["status"] in ("no_bound", "within_bound")


def test_a_violated_bound_exits_1(tmp_path, capsys, monkeypatch):
    import superpose.construct.bound as bound_module
    from superpose.construct.bound import ErrorBound

    monkeypatch.setattr(bound_module, "error_bound", lambda *a, **k: ErrorBound(0.0, 1e-30, 1e-30, 0.0, True))
    assert main(["run", _tasks_file(tmp_path, 2, 4), _prompt_file(tmp_path, 5), "--sharpness", "3"]) == 1
    assert "Result: the model's output is NOT within the bound" in capsys.readouterr().out


def test_bench_says_not_measured_without_long_prompts():
    from superpose.verify.cli import load_bench_program

    target_line = load_bench_program().target_line
    line = target_line({"min_ratio_numpy_T_ge_1024": None, "ratio_numpy_target_met": False,
                        "min_ratio_lens_T_ge_1024": None, "ratio_lens_target_met": False,
                        "time_exponent_T_ge_1024": None, "time_exponent_target_met": False,
                        "memory_exponent_T_ge_1024": None, "largest_T_run": 256})
    assert "not measured" in line and "MISSED" not in line and "-x" not in line
    line = target_line({"min_ratio_numpy_T_ge_1024": 8.0, "ratio_numpy_target_met": False,
                        "min_ratio_lens_T_ge_1024": 12.0, "ratio_lens_target_met": True,
                        "time_exponent_T_ge_1024": 1.92, "time_exponent_target_met": True,
                        "memory_exponent_T_ge_1024": 1.01, "largest_T_run": 4096})
    assert "JAX/NumPy at T >= 1024 at least 8x (target 10x: MISSED)" in line and "T^1.92" in line
    assert "JAX/TransformerLens at T >= 1024 at least 12x (target 10x: met)" in line


def test_running_saved_weights_is_checked_against_the_limit_before_loading(tmp_path, capsys, monkeypatch):
    import superpose.io

    tasks = _tasks_file(tmp_path, 2, 4)
    weights = str(tmp_path / "m.npz")
    assert main(["build", tasks, "-o", weights, "--max-examples", "300"]) == 0
    capsys.readouterr()

    def never(*args, **kwargs):
        raise AssertionError("the weights were loaded before the memory check")
    monkeypatch.setattr(superpose.io, "load", never)
    one_line_error(capsys, main(["run", tasks, _prompt_file(tmp_path, 300), "--weights", weights,
                                 "--memory-limit", "8M"]), r"running a 1204-token prompt on .*m\.npz would need")
