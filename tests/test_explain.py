"""``superpose explain``: the page's data is right and the file is self-contained (no browser needed).

The expected values come from the analytic prediction (``superpose.verify.analytic``),
from ``superpose run --json`` for the same files, from the layer specs, or are derived by
hand from the prompt. ``tests/test_explain_browser.py`` renders the page in Chromium.
"""

import contextlib
import io
import json
import re
from fractions import Fraction

import numpy as np
import pytest

from superpose import Example, Prompt, build
from superpose.cli import main
from superpose.construct.build import LAYER_SPECS
from superpose.demo import digit_tasks, mixed_prompt
from superpose.examples.ab_digits import ab_prompt, ab_tasks
from superpose.verify.analytic import task_mixture
from superpose.verify.explain import READABLE_TOKENS, page_data, render, shown_positions

DATA = re.compile(r'<script type="application/json" id="superpose-data">(.*?)</script>', re.S)


def write_json(path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def call(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def data_of(page: str) -> dict:
    match = DATA.search(page)
    assert match, "no data element"
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's files, the page written by `superpose explain` and the `run --json` report, both float64."""
    d = tmp_path_factory.mktemp("explain")
    tasks = digit_tasks()
    prompt = mixed_prompt(tasks)
    files = write_json(d / "tasks.json", tasks.to_json()), write_json(d / "prompt.json", prompt.to_json())
    page = d / "page.html"
    code, out, err = call("explain", *files, "-o", str(page))
    assert code == 0, err
    code, report, err = call("run", *files, "--json", "--dtype", "float64")
    assert code == 0, err
    text = page.read_text(encoding="utf-8")
    return {"dir": d, "files": files, "page": page, "text": text, "data": data_of(text),
            "report": json.loads(report), "printed": out, "tasks": tasks, "prompt": prompt}


def test_the_page_is_one_self_contained_file(demo):
    text = demo["text"]
    assert text.startswith("<!DOCTYPE html>")
    # nothing to fetch: no src/href attributes, no CSS imports or url(...), only inline scripts
    assert not re.search(r"\s(src|href)\s*=", text)
    assert "@import" not in text and "url(" not in text
    assert re.findall(r"<script[^>]*>", text) == ['<script type="application/json" id="superpose-data">', "<script>"]
    assert text.count("</script>") == 2
    assert len(text.encode()) < 1_000_000          # the demo page: about 150 KB
    assert "wrote " in demo["printed"] and "within_bound" in demo["printed"]


def test_every_layer_is_described_by_its_spec(demo):
    data, tasks = demo["data"], demo["tasks"]
    assert [layer["number"] for layer in data["layers"]] == [1, 2, 3, 4, 5, 6, 7]
    columns = len(data["shown"]) + (data["hidden"] is not None)
    for spec, layer in zip(LAYER_SPECS, data["layers"]):
        assert (layer["title"], layer["in_words"]) == (spec.title, spec.in_words)
        assert len(layer["heads"]) == spec.n_heads(tasks) and layer["n_units"] == spec.n_units(tasks)
        for head in layer["heads"]:
            assert len(head["pattern"]) == len(data["shown"])
            assert all(len(row) == columns for row in head["pattern"])
            # causal softmax: every row's weights sum to 1 (to the 4 digits kept)
            assert all(abs(sum(row) - 1) < 1e-3 for row in head["pattern"])
        for part in ("attention", "mlp"):
            assert {row["block"] for row in layer[part]["rows"]} <= set(spec.writes)
        # the spec's exact values and the float64 run agree to the soft-attention leak
        assert layer["exact"]["max_abs_diff"] < 1e-12


def test_the_writes_are_the_algorithm(demo):
    """Hand-derived from the prompt: where each layer writes what."""
    data, tasks, prompt = demo["data"], demo["tasks"], demo["prompt"]
    roles = {tok["t"]: tok for tok in data["tokens"]}
    layers = {layer["number"]: layer for layer in data["layers"]}

    def row(layer, part, name):
        rows = {r["name"]: r for r in layers[layer][part]["rows"]}
        return rows[name]["text"]

    # layer 1's MLP: is_answer = 1 exactly at the answers, nothing elsewhere
    is_answer = row(1, "mlp", "is_answer")
    assert [t for t, text in enumerate(is_answer) if text] == [t for t, r in roles.items() if r["role"] == "answer"]
    assert set(is_answer) == {"", "1"}
    # layer 4: each answer votes 1 for the one task its example fits (the demo has no ambiguous example)
    for k, task in enumerate(tasks.tasks):
        votes = row(4, "mlp", f"vote[{task.name}]")
        fits = [roles[t]["example"] for t, text in enumerate(votes) if text == "1"]
        assert fits == [i for i, e in enumerate(prompt.examples) if task(e.inputs) == e.answer]
    # layer 5 at the query's ARROW: the mixture of all twelve examples, 1/2, 1/3, 1/6
    q = data["outputs"]["query"]["t"]
    mixture = [row(5, "attention", f"mix[{t.name}]")[q] for t in tasks.tasks]
    assert mixture == [str(p) for p in task_mixture(tasks, prompt.examples)] == ["1/2", "1/3", "1/6"]
    # layer 7 writes the answer there: 7 (copy), 8 (next digit), seven (to word)
    assert {name: row(7, "mlp", name)[q] for name in ("out[7]", "out[8]", "out[seven]")} == \
        {"out[7]": "1/2", "out[8]": "1/3", "out[seven]": "1/6"}


def test_shares_and_outputs_equal_run_json(demo):
    data, report, tasks, prompt = demo["data"], demo["report"], demo["tasks"], demo["prompt"]
    shares = data["shares"]
    assert shares["shares_text"] == [str(p) for p in task_mixture(tasks, prompt.examples)]
    assert shares["votes_text"] == ["6", "4", "2"] and shares["consistent"] == 12
    assert [e["index"] for e in shares["examples"]] == list(range(12))
    out = data["outputs"]
    assert out["query"]["model"] == report["predictions"][-1]["model"]          # exactly, not approximately
    assert out["query"]["analytic"] == report["predictions"][-1]["analytic"]
    assert [p["model"] for p in out["predictions"]] == [p["model"] for p in report["predictions"]]
    assert (out["status"], out["max_abs_error"], out["bound"]) == \
        (report["status"], report["max_abs_error"], report["bound"])
    assert out["capture_vs_report"] == 0.0


def test_output_file_rules(demo, capsys):
    tasks_file, prompt_file = demo["files"]
    page = str(demo["page"])
    # an existing page is refused without --force (one line, exit 2) and kept as it was
    code, _, err = call("explain", tasks_file, prompt_file, "-o", page)
    assert code == 2 and err.count("\n") == 1 and "exists; pass --force" in err
    assert demo["page"].read_text(encoding="utf-8") == demo["text"]
    # never over an input, even with --force
    code, _, err = call("explain", tasks_file, prompt_file, "-o", prompt_file, "--force")
    assert code == 2 and "is also an input" in err
    # both files or neither
    code, _, err = call("explain", tasks_file, "-o", str(demo["dir"] / "x.html"))
    assert code == 2 and err.count("\n") == 1 and "both TASKS.json and PROMPT.json" in err
    # bad input: one line naming the field
    bad = write_json(demo["dir"] / "bad.json", {"examples": [{"inputs": [42], "answer": 1}], "query": [1]})
    code, _, err = call("explain", tasks_file, bad, "-o", str(demo["dir"] / "y.html"))
    assert code == 2 and err.count("\n") == 1 and "outside the vocabulary" in err
    assert not (demo["dir"] / "y.html").exists()
    # over the memory limit: refused before building
    code, _, err = call("explain", tasks_file, prompt_file, "-o", str(demo["dir"] / "z.html"), "--memory-limit", "1M")
    assert code == 2 and err.count("\n") == 1 and "over the memory limit" in err


def test_the_demo_without_files(tmp_path):
    code, out, err = call("explain", "-o", str(tmp_path / "demo.html"), "--dtype", "float32")
    assert code == 0, err
    data = data_of((tmp_path / "demo.html").read_text(encoding="utf-8"))
    assert data["dtype"] == "float32" and data["T"] == 39 and data["hidden"] is None
    assert data["command"] == "superpose explain --dtype float32"     # no local paths in a shared page


def test_long_two_slot_prompts_are_summarised():
    """100 tokens of the AB family (two slots, a two-slot task): BOS, the last examples and the query."""
    tasks = ab_tasks()
    prompt = ab_prompt(tasks, (10, 8, 6))
    model = build(tasks, max_examples=prompt.n_examples)
    data = page_data(model, prompt, "float64")
    T = tasks.prompt_length(prompt.n_examples)
    assert data["T"] == T == 100 and len(data["shown"]) <= READABLE_TOKENS
    n = tasks.example_length
    assert data["shown"] == [0, *range(T - len(data["shown"]) + 1, T)]
    assert (data["shown"][1] - 1) % n == 0                       # the fold ends on an example boundary
    hidden = data["hidden"]
    assert (hidden["first"], hidden["last"]) == (1, data["shown"][1] - 1)
    assert hidden["examples"] == list(range((hidden["last"]) // n))
    # the shares still count all 24 examples; only the shown ones are listed
    assert data["shares"]["shares_text"] == [str(p) for p in task_mixture(tasks, prompt.examples)]
    assert data["shares"]["n_examples"] == 24 and len(data["shares"]["examples"]) == 24 - len(hidden["examples"])
    # two heads (slots 0 and 1) in layers 2 and 6; the fold column holds the weight the hidden keys get
    heads = {layer["number"]: layer["heads"] for layer in data["layers"]}
    assert [len(heads[i]) for i in range(1, 8)] == [1, 2, 0, 0, 1, 2, 0]
    tally = heads[5][0]["pattern"][-1]              # the query's row: BOS, fold, shown keys
    answers_hidden = len(hidden["examples"])
    assert tally[1] == pytest.approx(answers_hidden / 24, abs=1e-3)   # each consistent answer gets 1/24
    assert data["outputs"]["n_predictions"] == 25
    assert data["outputs"]["predictions"][-1]["example"] == "query"
    assert len(render(data).encode()) < 1_000_000


def test_shown_positions_short_prompts_are_whole():
    tasks = digit_tasks()
    model = build(tasks, max_examples=0)
    assert shown_positions(model, Prompt([], query=[3])) == [0, 1, 2]
    long = Prompt([Example([1], 1)] * 30, query=[2])
    assert len(shown_positions(build(tasks, 30), long, limit=10)) <= 10


def test_names_cannot_break_out_of_the_page(tmp_path):
    """Token and task names are user text: they stay data (escaped JSON, set as text by the script)."""
    evil = "</script><script>alert(1)</script><!--"
    tasks = {"vocab_size": 2, "slots": 1, "token_names": [evil, "b&<i>"], "tasks": [
        {"name": evil + "task", "slot": 0, "table": [0, 1]}]}
    prompt = {"examples": [{"inputs": [0], "answer": 0}], "query": [1]}
    page = tmp_path / "evil.html"
    code, _, err = call("explain", write_json(tmp_path / "t.json", tasks), write_json(tmp_path / "p.json", prompt),
                        "-o", str(page))
    assert code == 0, err
    text = page.read_text(encoding="utf-8")
    assert text.count("</script>") == 2 and "<script>alert" not in text and "<i>" not in text
    data = data_of(text)
    assert data["tasks"]["tasks"][0]["name"] == evil + "task"
    assert [t["name"] for t in data["tokens"]][1:3] == [evil, "->"]


def test_page_numbers_are_exact_fractions_in_float64(demo):
    """Every non-zero write in the demo is a simple fraction (the construction's values), or the rare soft value."""
    texts = [t for layer in demo["data"]["layers"] for part in ("attention", "mlp")
             for row in layer[part]["rows"] for t in row["text"] if t]
    as_fractions = [t for t in texts if re.fullmatch(r"-?\d+(/\d+)?", t)]
    assert len(as_fractions) >= 0.95 * len(texts)
    assert all(Fraction(t).denominator <= 12 for t in as_fractions)
    assert np.isfinite([float(Fraction(t)) for t in as_fractions]).all()


@pytest.mark.parametrize("sharpness, reason", [(1.0, "too low"), (1e38, "overflows")])
def test_a_page_without_a_bound_says_why(demo, sharpness, reason):
    """float32 at a low sharpness (soft attention breaks the snaps) or beyond float32's range (overflow)."""
    page = demo["dir"] / f"sharpness-{sharpness:g}.html"
    code, out, err = call("explain", *demo["files"], "-o", str(page), "--dtype", "float32",
                          "--sharpness", str(sharpness), "--force")
    assert code == 0, err
    data = data_of(page.read_text(encoding="utf-8"))
    assert data["outputs"]["status"] == "no_bound" and data["outputs"]["bound"]["total"] is None
    code, report, _ = call("run", *demo["files"], "--json", "--dtype", "float32", "--sharpness", str(sharpness))
    report = json.loads(report)
    assert data["outputs"]["no_bound_reason"] == report["no_bound_reason"]
    assert data["outputs"]["query"]["model"] == report["predictions"][-1]["model"]
    assert reason in report["no_bound_reason"]
    if sharpness > 1e30:   # the scores overflow: the output is NaN, shown as "not finite"
        assert all(p is None for p in data["outputs"]["query"]["model"])
        assert "query answer: not finite (the model's output overflowed)" in out
    else:
        assert data["outputs"]["max_abs_error"] > 1e-3


def test_answers_of_several_tokens(tmp_path):
    """Two-token answers with one token of the query's answer generated: roles, sites and numbers as run --json."""
    from superpose import Task, TaskSet

    tasks = TaskSet(6, 1, [Task("word", 0, [[0, 1], [2, 3], [4, 5], [1, 1], [0, 0], [0, 0]]),
                           Task("other", 0, [[0, 3], [2, 0], [5, 5], [1, 0], [0, 0], [0, 0]])], answer_length=2)
    prompt = Prompt([Example([0], [0, 1]), Example([1], [2, 3]), Example([3], [1, 0])], [0], query_prefix=[0])
    files = write_json(tmp_path / "t.json", tasks.to_json()), write_json(tmp_path / "p.json", prompt.to_json())
    code, _, err = call("explain", *files, "-o", str(tmp_path / "page.html"))
    assert code == 0, err
    data = data_of((tmp_path / "page.html").read_text(encoding="utf-8"))
    report = json.loads(call("run", *files, "--json", "--dtype", "float64")[1])
    # BOS, then (input, ARROW, answer 0, answer 1) per example, then the query's input, ARROW, prefix
    assert data["T"] == 1 + 3 * 4 + 3 == len(data["tokens"])
    assert [(t["role"], t.get("answer_token")) for t in data["tokens"][1:5]] == \
        [("input", None), ("arrow", None), ("answer", 0), ("answer", 1)]
    assert data["tokens"][-1] == {"t": 15, "id": 0, "name": "0", "role": "answer", "example": "query", "answer_token": 0}
    # a prediction at each example's ARROW and first answer token, then the query's ARROW and its prefix token
    assert [(p["example"], p["answer_token"], p["t"]) for p in data["outputs"]["predictions"]] == \
        [(0, 0, 2), (0, 1, 3), (1, 0, 6), (1, 1, 7), (2, 0, 10), (2, 1, 11), ("query", 0, 14), ("query", 1, 15)]
    assert [p["model"] for p in data["outputs"]["predictions"]] == [p["model"] for p in report["predictions"]]
    # both tasks' answers to 0 start with 0: word says 1 (share 2/3), other says 3 (1/3)
    q = data["outputs"]["query"]
    assert q["answers"] == [1, 3] and q["prefix"] == ["0"]
    assert q["analytic"] == pytest.approx([0, 2 / 3, 0, 1 / 3, 0, 0], abs=1e-15)
    assert [len(layer["heads"]) for layer in data["layers"]] == \
        [spec.n_heads(tasks) for spec in LAYER_SPECS]
