"""The `superpose` console script: demo, run (--json), build and layers; bad input exits 2 with one line."""

import json
import os
import subprocess
import sys

import pytest

from superpose.cli import main

EXE = [sys.executable, "-m", "superpose.cli"]

from conftest import PROMPT, TASKS, write_input as write  # the CLI tests' shared task set and prompt


def console(*args):
    """Run the real console entry point in a subprocess (exit code, stdout, stderr)."""
    proc = subprocess.run([*EXE, *args], capture_output=True, text=True, env={**os.environ})
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def cli(capsys):
    """``superpose.cli.main`` in this process (a fresh interpreter per call costs seconds): (exit code,
    stdout, stderr)."""
    def call(*args):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err
    return call


def test_demo_prints_the_table_and_passes():
    code, out, err = console("demo")
    assert code == 0, err
    assert "seven" in out and "0.500000000" in out and "within the bound" in out
    # three tasks, all reading slot 0: one head per slot read, not one per task
    assert "7 layers, 1 head per attention layer" in out and "K = 3 tasks" in out


def test_run_json_has_one_entry_per_prediction_position(tmp_path, cli):
    code, out, err = cli("run", write(tmp_path, "t.json", TASKS), write(tmp_path, "p.json", PROMPT),
                         "--json", "--dtype", "float64")
    assert code == 0, err
    report = json.loads(out)
    # d = 4, S = 2 slots read, K = 2, T_max = (3 + 1) * 4 = 16 so L = 4: 2d + Sd + 5K + 2L + 5 = 39
    d, S, K, L = 4, 2, 2, 4
    D, H, dh, M = 2 * d + S * d + 5 * K + 2 * L + 5, S, max(2 * L, d, K), max(d + d + S * d, 6 * K + 2, 3 * S * d)
    per_layer = 3 * (H * D * dh + H * dh) + H * dh * D + D + D * M + M + M * D + D
    params = (d + 2) * D + 16 * D + 7 * per_layer + D * d + d
    assert report["model"] == {"layers": 7, "heads": 2, "d_model": 39, "params": params}
    preds = report["predictions"]
    assert [p["example"] for p in preds] == [0, 1, 2, 3]
    # query [3, 3]: copy0 -> 3, inc1 -> 0; the 3 examples fit copy0, inc1, copy0
    two_slot = {**TASKS, "tasks": TASKS["tasks"] + [
        {"name": "A+B", "slots": [0, 1], "table": [[(a + b) % 4 for b in range(4)] for a in range(4)]}]}
    code, out, err = cli("run", write(tmp_path, "t2.json", two_slot), write(tmp_path, "p.json", PROMPT),
                         "--json", "--dtype", "float64")
    assert code == 0, err
    wide = json.loads(out)
    # the two-slot task reads slots 0 and 1, already read: still 2 heads; K = 3 adds 5 dimensions
    assert wide["model"]["heads"] == 2 and wide["model"]["d_model"] == 39 + 5
    # no example fits A+B (0+1 = 1, 2+2 = 0, 1+2 = 3 against answers 0, 3, 1): its share is 0
    assert wide["predictions"][-1]["analytic"] == [pytest.approx(1 / 3), 0, pytest.approx(0), pytest.approx(2 / 3)]
    assert preds[-1]["analytic"] == [pytest.approx(1 / 3), 0, 0, pytest.approx(2 / 3)]
    for p in preds:
        assert len(p["model"]) == len(p["analytic"]) == 4
        assert p["max_abs_error"] <= p["bound"] <= 1e-10


def test_build_then_run_with_weights(tmp_path, cli):
    tasks = write(tmp_path, "t.json", TASKS)
    weights = str(tmp_path / "m.npz")
    code, out, err = cli("build", tasks, "-o", weights, "--max-examples", "5")
    assert code == 0, err
    assert "wrote" in out
    code, out, err = cli("run", tasks, write(tmp_path, "p.json", PROMPT), "--weights", weights, "--json")
    assert code == 0, err
    assert json.loads(out)["predictions"][-1]["max_abs_error"] < 1e-5


def test_layers_describes_all_seven(tmp_path, cli):
    code, out, err = cli("layers")
    assert code == 0, err
    for i in range(1, 8):
        assert f"Layer {i}:" in out
    assert "Residual stream:" in out and "slot" in out
    assert "Heads used per layer: 1, 1, 0, 0, 1, 1, 0" in out   # the digit tasks all read slot 0


BAD_INPUTS = [
    ("token outside vocabulary", TASKS, {**PROMPT, "query": [3, 9]}, r"query\[1\]: token 9 is outside"),
    ("table of wrong length", {**TASKS, "tasks": [{"name": "a", "slot": 0, "table": [0, 1]}]}, PROMPT,
     r"tasks\[0\]\.table: has length 2, expected vocab_size = 4"),
    ("table entry out of range", {**TASKS, "tasks": [{"name": "a", "slot": 0, "table": [0, 1, 2, 7]}]}, PROMPT,
     r"tasks\[0\]\.table\[3\]: token 7 is outside"),
    ("slot outside 0..s-1", {**TASKS, "tasks": [{"name": "a", "slot": 2, "table": [0, 1, 2, 3]}]}, PROMPT,
     r"tasks\[0\]\.slot: 2 is outside 0\.\.1"),
    ("wrong number of inputs", TASKS, {**PROMPT, "examples": [{"inputs": [0], "answer": 0}]},
     r"examples\[0\]\.inputs: has 1 input tokens, expected slots = 2"),
    ("K = 0", {**TASKS, "tasks": []}, PROMPT, r"tasks: K = 0"),
    ("answer outside vocabulary", TASKS, {**PROMPT, "examples": [{"inputs": [0, 0], "answer": -1}]},
     r"examples\[0\]\.answer: token -1 is outside"),
    ("non-integer token", TASKS, {**PROMPT, "query": [1, "a"]}, r"query\[1\]: expected an integer"),
    ("malformed tasks JSON", "{not json", PROMPT, r"TASKS: .* is not valid JSON"),
    ("malformed prompt JSON", TASKS, "[1, 2", r"PROMPT: .* is not valid JSON"),
    ("missing field", {"vocab_size": 4, "tasks": []}, PROMPT, r"missing field 'slots'"),
    ("slots repeated", {**TASKS, "tasks": [{"name": "a", "slots": [1, 1], "table": [[0] * 4] * 4}]}, PROMPT,
     r"tasks\[0\]\.slots: \[1, 1\] repeats a slot"),
    ("more slots than inputs", {**TASKS, "tasks": [{"name": "a", "slots": [0, 1, 2], "table": [[[0] * 4] * 4] * 4}]},
     PROMPT, r"tasks\[0\]\.slots: reads 3 slots, but examples have only slots = 2"),
    ("table not nested deep enough", {**TASKS, "tasks": [{"name": "a", "slots": [0, 1], "table": [0, 1, 2, 3]}]},
     PROMPT, r"tasks\[0\]\.table\[0\]: expected a list of tokens"),
    ("ragged nested table", {**TASKS, "tasks": [{"name": "a", "slots": [0, 1], "table": [[0] * 4] * 3 + [[0]]}]},
     PROMPT, r"tasks\[0\]\.table\[3\]: has length 1"),
    ("both slot and slots", {**TASKS, "tasks": [{"name": "a", "slot": 0, "slots": [0], "table": [0] * 4}]},
     PROMPT, r"tasks\[0\]: give exactly one of 'slot'"),
    ("table too large to build", {"vocab_size": 1001, "slots": 2, "tasks": [{"name": "a", "slots": [0, 1],
                                                                               "table": []}]},
     PROMPT, r"tasks\[0\]\.table: d\^r = 1001\^2 = 1,002,001 entries exceeds the limit"),
]


@pytest.mark.parametrize("label,tasks,prompt,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, label, tasks, prompt, message):
    code = main(["run", write(tmp_path, "t.json", tasks), write(tmp_path, "p.json", prompt), "--json"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err
    assert __import__("re").search(message, lines[0]), lines[0]


def test_prompt_longer_than_the_model_and_bad_weights_files(tmp_path, capsys):
    tasks, prompt = write(tmp_path, "t.json", TASKS), write(tmp_path, "p.json", PROMPT)
    assert main(["run", tasks, prompt, "--max-examples", "2"]) == 2
    assert "the model was built for at most 2" in capsys.readouterr().err
    weights = str(tmp_path / "m.npz")
    assert main(["build", tasks, "-o", weights, "--max-examples", "2"]) == 0
    capsys.readouterr()
    assert main(["run", tasks, prompt, "--weights", weights]) == 2
    assert "at most 2" in capsys.readouterr().err
    other = write(tmp_path, "o.json", {**TASKS, "tasks": TASKS["tasks"][:1]})
    assert main(["run", other, prompt, "--weights", weights]) == 2
    assert "different task set" in capsys.readouterr().err
    with open(weights, "r+b") as f:
        f.truncate(1000)
    assert main(["run", tasks, prompt, "--weights", weights]) == 2
    err = capsys.readouterr().err
    assert "truncated" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    (["run"], "the following arguments are required"),
    (["demo", "--dtype", "float16"], "invalid choice"),
    (["demo", "--sharpness", "-1"], "sharpness: must be a finite number > 0"),
    (["run", "missing.json", "missing.json"], "TASKS: file not found"),
    (["frobnicate"], "invalid choice"),
])
def test_usage_errors_exit_2_with_one_line(args, message, cli):
    code, out, err = cli(*args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err
