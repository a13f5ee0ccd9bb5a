"""``superpose generate``: the JSON contract, the constructed and analytic models, and bad input (exit 2, one line)."""

import json

import numpy as np
import pytest

import superpose.cli
from superpose import build
from superpose.setting import TaskSet

PAIRS = {"vocab_size": 4, "slots": 3, "answer_length": 2, "tasks": [
    {"name": "AB", "slots": [0, 1], "table": [[[u, w] for w in range(4)] for u in range(4)]},
    {"name": "AC", "slots": [0, 2], "table": [[[u, w] for w in range(4)] for u in range(4)]},
    {"name": "BA", "slots": [1, 0], "table": [[[u, w] for w in range(4)] for u in range(4)]},
]}
# AB 2 examples, AC 1, BA 1 (each fits its own task only: distinct inputs); query (0, 1, 2)
PROMPT = {"examples": [{"inputs": [1, 2, 3], "answer": [1, 2]}, {"inputs": [3, 0, 1], "answer": [3, 0]},
                       {"inputs": [2, 3, 0], "answer": [2, 0]}, {"inputs": [0, 3, 1], "answer": [3, 0]}],
          "query": [0, 1, 2]}
SHARES = {(0, 1): 0.5, (0, 2): 0.25, (1, 0): 0.25}
ONE_TOKEN = {"vocab_size": 4, "slots": 2, "tasks": [{"name": "copy0", "slot": 0, "table": [0, 1, 2, 3]},
                                                    {"name": "next1", "slot": 1, "table": [1, 2, 3, 0]}]}
ONE_PROMPT = {"examples": [{"inputs": [0, 2], "answer": 0}, {"inputs": [1, 3], "answer": 1},
                           {"inputs": [2, 2], "answer": 3}], "query": [1, 2]}   # copy0 2/3 -> 1, next1 1/3 -> 3


@pytest.fixture
def files(tmp_path):
    def write(name, data):
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        return str(path)
    return write


def generate(capsys, *argv):
    code = superpose.cli.main(["generate", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = generate(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("decoder", ["greedy", "sample", "beam", "superposed"])
def test_json_contract(capsys, files, decoder):
    tasks, prompt = files("t.json", PAIRS), files("p.json", PROMPT)
    report = run_json(capsys, tasks, prompt, "--model", "analytic", "--decoder", decoder)
    assert list(report) == ["decoder", "answers", "forward_passes", "metrics"]
    assert report["decoder"] == decoder
    assert set(report["metrics"]) == {"kl", "coverage", "chimera_mass", "collapse_point"}
    assert isinstance(report["forward_passes"], int) and report["forward_passes"] >= 1
    probabilities = [a["probability"] for a in report["answers"]]
    assert probabilities == sorted(probabilities, reverse=True)
    for answer in report["answers"]:
        assert list(answer) == ["tokens", "probability"]
        assert len(answer["tokens"]) == 2 and all(isinstance(t, int) for t in answer["tokens"])
    assert report["metrics"]["chimera_mass"] == 0.0
    if decoder == "superposed":
        assert {tuple(a["tokens"]): a["probability"] for a in report["answers"]} == SHARES
        assert report["forward_passes"] == 3 <= 3 * 2
        assert report["metrics"] == {"kl": 0.0, "coverage": 1.0, "chimera_mass": 0.0, "collapse_point": 2}
    else:   # one answer each (beam width 2 keeps AB and AC, not BA): collapse
        assert report["metrics"]["kl"] is None and report["metrics"]["coverage"] < 1


def test_options_reach_the_decoders(capsys, files):
    tasks, prompt = files("t.json", PAIRS), files("p.json", PROMPT)
    many = run_json(capsys, tasks, prompt, "--model", "analytic", "--decoder", "sample", "--samples", "400",
                    "--seed", "3")
    assert sum(a["probability"] for a in many["answers"]) == pytest.approx(1.0)
    assert {tuple(a["tokens"]) for a in many["answers"]} == set(SHARES)
    assert many == run_json(capsys, tasks, prompt, "--model", "analytic", "--decoder", "sample", "--samples",
                            "400", "--seed", "3")
    wide = run_json(capsys, tasks, prompt, "--model", "analytic", "--decoder", "beam", "--beam-width", "3")
    assert wide["metrics"]["coverage"] == 1.0 and wide["metrics"]["kl"] == 0.0
    # threshold 0.6: the first token 0 (3/4, not 1 with 1/4), then 1 (2/3, not 2 with 1/3)
    high = run_json(capsys, tasks, prompt, "--model", "analytic", "--threshold", "0.6")
    assert high["answers"] == [{"tokens": [0, 1], "probability": 0.5}]
    marginal = run_json(capsys, tasks, prompt, "--model", "analytic", "--mode", "marginal")
    # token 0: 0 with 3/4, 1 with 1/4; token 1 (no conditioning): 1 1/2, 2 1/4, 0 1/4
    got = {tuple(a["tokens"]): a["probability"] for a in marginal["answers"]}
    assert got == {(0, 1): 3 / 8, (0, 2): 3 / 16, (0, 0): 3 / 16, (1, 1): 1 / 8, (1, 2): 1 / 16, (1, 0): 1 / 16}
    assert marginal["metrics"]["chimera_mass"] == pytest.approx(3 / 16 + 1 / 8 + 1 / 16)


def test_query_prefix_is_continued(capsys, files):
    tasks = files("t.json", PAIRS)
    prompt = files("p.json", {**PROMPT, "query_prefix": [0]})
    report = run_json(capsys, tasks, prompt, "--model", "analytic")
    assert {tuple(a["tokens"]): a["probability"] for a in report["answers"]} == {(0, 1): 2 / 3, (0, 2): 1 / 3}
    assert report["forward_passes"] == 1 and report["metrics"]["kl"] == 0.0


def test_text_output_names_tasks_and_chimeras(capsys, files):
    code, out, err = generate(capsys, files("t.json", PAIRS), files("p.json", PROMPT), "--model", "analytic",
                              "--mode", "marginal")
    assert code == 0 and err == ""
    assert "AB 1/2" in out and "chimera" in out and "collapse point 2" in out


def test_constructed_model_one_token(capsys, files):
    report = run_json(capsys, files("t.json", ONE_TOKEN), files("p.json", ONE_PROMPT))
    got = {tuple(a["tokens"]): a["probability"] for a in report["answers"]}
    assert got.keys() == {(1,), (3,)}
    assert abs(got[(1,)] - 2 / 3) < 1e-12 and abs(got[(3,)] - 1 / 3) < 1e-12
    assert report["forward_passes"] == 1 and report["metrics"]["kl"] < 1e-12
    f32 = run_json(capsys, files("t.json", ONE_TOKEN), files("p.json", ONE_PROMPT), "--dtype", "float32")
    assert abs(f32["answers"][0]["probability"] - 2 / 3) < 1e-5


def test_constructed_model_several_tokens(capsys, files):
    """The constructed model decodes the separable PAIRS prompt to the shares, within its bound, in
    both modes (the marginal model's answers are the analytic marginal rule's)."""
    tasks, prompt = files("t.json", PAIRS), files("p.json", PROMPT)
    bound = build(TaskSet.from_json(PAIRS), max_examples=4).error_bound("float64").total
    report = run_json(capsys, tasks, prompt)
    got = {tuple(a["tokens"]): a["probability"] for a in report["answers"]}
    assert got.keys() == SHARES.keys() and report["forward_passes"] == 3
    assert max(abs(got[a] - p) for a, p in SHARES.items()) <= 3 * bound   # a product of two readouts
    marginal = run_json(capsys, tasks, prompt, "--mode", "marginal", "--threshold", "0")
    expected = run_json(capsys, tasks, prompt, "--model", "analytic", "--mode", "marginal", "--threshold", "0")
    got = {tuple(a["tokens"]): a["probability"] for a in marginal["answers"]}
    want = {tuple(a["tokens"]): a["probability"] for a in expected["answers"]}
    assert got.keys() == want.keys() and max(abs(got[a] - want[a]) for a in want) <= 3 * bound
    assert marginal["metrics"]["chimera_mass"] == pytest.approx(3 / 8, abs=3 * bound)
    code, out, err = generate(capsys, tasks, prompt, "--max-examples", "3")
    assert code == 2 and err.count("\n") == 1 and "examples" in err


def test_constructed_marginal_mode_one_token(capsys, files):
    """One-token answers: the marginal and conditioned constructed models agree."""
    code, out, err = generate(capsys, files("t.json", ONE_TOKEN), files("p.json", ONE_PROMPT), "--mode",
                              "marginal", "--json")
    assert code == 0 and abs(json.loads(out)["answers"][0]["probability"] - 2 / 3) < 1e-12


BAD = [
    (["--samples", "0", "--decoder", "sample"], "--samples"),
    (["--seed", "-1"], "--seed"),
    (["--beam-width", "0"], "--beam-width"),
    (["--threshold", "1.5"], "--threshold"),
    (["--threshold", "nan"], "--threshold"),
    (["--decoder", "nucleus"], "--decoder"),
    (["--mode", "bayes"], "--mode"),
    (["--model", "trained"], "--model"),
    (["--samples", "many"], "--samples"),
    (["--max-examples", "-1"], "--max-examples"),
    (["--max-examples", "2"], "examples"),
]


@pytest.mark.parametrize("extra, needle", BAD)
def test_bad_options_exit_2_with_one_line(capsys, files, extra, needle):
    model = ["--model", "analytic"] if needle not in ("--max-examples", "examples") else []
    code, out, err = generate(capsys, files("t.json", ONE_TOKEN), files("p.json", ONE_PROMPT), *model, *extra)
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("error: ") and needle in err


@pytest.mark.parametrize("tasks, prompt, needle", [
    (PAIRS, {**PROMPT, "query_prefix": [0, 1]}, "query_prefix"),
    (PAIRS, {**PROMPT, "query_prefix": [9]}, "query_prefix[0]"),
    (PAIRS, {**PROMPT, "examples": [{"inputs": [1, 2, 3], "answer": 1}]}, "examples[0].answer"),
    (PAIRS, {**PROMPT, "query_prefx": [0]}, "did you mean"),
    ({**PAIRS, "answer_length": 0}, PROMPT, "answer_length"),
    ({**PAIRS, "answer_length": 3}, PROMPT, "answer tokens"),
    ("{not json", PROMPT, "not valid JSON"),
    (PAIRS, "[]", "expected a JSON object"),
])
def test_bad_files_exit_2_with_one_line(capsys, files, tasks, prompt, needle):
    code, out, err = generate(capsys, files("t.json", tasks), files("p.json", prompt), "--model", "analytic")
    assert code == 2 and out == "" and err.count("\n") == 1 and needle in err, err


def test_missing_file_exit_2(capsys, files, tmp_path):
    code, out, err = generate(capsys, str(tmp_path / "none.json"), files("p.json", PROMPT))
    assert code == 2 and err.count("\n") == 1 and "file not found" in err


def test_json_is_deterministic(capsys, files):
    tasks, prompt = files("t.json", ONE_TOKEN), files("p.json", ONE_PROMPT)
    first = generate(capsys, tasks, prompt, "--json")[1]
    assert first == generate(capsys, tasks, prompt, "--json")[1]
    assert np.isclose(json.loads(first)["answers"][0]["probability"], 2 / 3)
