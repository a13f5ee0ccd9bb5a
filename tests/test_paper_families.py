"""The paper's task families as worked examples: ab_digits, add_and_translate, country_capital.

Each example runs at its small size. Its returned numbers are checked against the
analytic prediction (``superpose.verify.analytic``, independent of the construction)
computed here, and against mixtures derived by hand from the example counts; the task
tables are checked entry by entry against facts written here or read from the data file.
"""

import json
import subprocess
import sys
from fractions import Fraction
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from conftest import run_example

import superpose.cli
from superpose import Example, Prompt, Task, TaskSet
from superpose.examples import cli as examples_cli
from superpose.verify.analytic import predict, task_mixture

TOL = 1e-12          # float64 at sharpness 50 (the models' own bounds are ~1e-11)
ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAMILIES = ["ab_digits", "add_and_translate", "country_capital"]


def distribution(d: int, weights: dict[int, Fraction]) -> np.ndarray:
    out = np.zeros(d)
    for token, p in weights.items():
        out[token] += float(p)
    return out


def fits(tasks: TaskSet, example: Example) -> list[int]:
    return [k for k, task in enumerate(tasks.tasks) if task(example.inputs) == example.answer]


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("families")


@pytest.fixture(scope="module")
def ran(out_dir):
    """module name -> (result, printed text); each example runs once."""
    return {module: run_example(module, out_dir) for module in FAMILIES}


# --- checks shared by the three families ----------------------------------------------------

@pytest.mark.parametrize("module", FAMILIES)
def test_every_prediction_position_matches_the_analytic_prediction_within_the_bound(ran, module):
    result, printed = ran[module]
    tasks = result.tasks
    prompts = [*result.prompts.values(), *result.sweep_prompts]
    outputs = [*result.outputs.values(), *result.sweep_outputs]
    assert len(prompts) == len(outputs) >= 5
    errors = []
    for prompt, out in zip(prompts, outputs):
        expected = predict(tasks, prompt)
        assert out.shape == expected.shape == (prompt.n_examples + 1, tasks.vocab_size)
        errors.append(np.abs(out - expected).max())
    assert max(errors) <= TOL
    assert 0 < result.bound < 1e-9
    assert max(errors) <= result.bound
    assert result.max_error == max(errors)  # the number the example reports (same float64 arithmetic)
    assert f"{result.bound:.1e}" in printed


@pytest.mark.parametrize("module", FAMILIES)
def test_the_sweep_lies_on_the_diagonal(ran, module):
    result, _ = ran[module]
    tasks = result.tasks
    n = len(result.sweep_prompts)
    # small size: every split of 6 examples among K tasks
    assert n == {2: 7, 3: 28}[tasks.K]
    counts = set()
    for i, prompt in enumerate(result.sweep_prompts):
        per_task = [0] * tasks.K
        for example in prompt.examples:
            (k,) = fits(tasks, example)        # each sweep example fits exactly one task
            per_task[k] += 1
        counts.add(tuple(per_task))
        shares = np.array(per_task) / prompt.n_examples
        answers = [task(prompt.query) for task in tasks.tasks]
        assert len(set(answers)) == tasks.K
        query_out = predict(tasks, prompt)[-1]
        assert np.abs(result.sweep_shares[i] - shares).max() <= TOL
        assert np.abs(result.sweep_probabilities[i] - shares).max() <= TOL
        assert np.abs(query_out[answers] - shares).max() <= TOL
    assert len(counts) == n  # every split once


@pytest.mark.parametrize("module", FAMILIES)
def test_the_task_set_round_trips_through_json(ran, module):
    tasks = ran[module][0].tasks
    text = json.dumps(tasks.to_json())
    again = TaskSet.from_json(json.loads(text))
    assert again == tasks
    assert again.token_names == tasks.token_names
    prompt = ran[module][0].prompts["mixed"]
    assert np.array_equal(predict(again, prompt), predict(tasks, prompt))


@pytest.mark.parametrize("module, name", [(m, f"{m}.png") for m in FAMILIES])
def test_figure(ran, out_dir, module, name):
    result, printed = ran[module]
    path = out_dir / name
    assert result.figures == [path]
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert 10_000 < path.stat().st_size < 400_000
    assert f"Figure: {path}" in printed


# --- 1. the AB family on digits -------------------------------------------------------------

def test_ab_tasks_are_copy_a_copy_b_and_the_sum(ran):
    tasks = ran["ab_digits"][0].tasks
    expected = TaskSet(vocab_size=10, slots=2, tasks=[
        Task("copy A", 0, list(range(10))),
        Task("copy B", 1, list(range(10))),
        Task("A+B", [0, 1], [[(a + b) % 10 for b in range(10)] for a in range(10)]),
    ])
    assert tasks == expected
    assert [t([7, 8]) for t in tasks.tasks] == [7, 8, 5]
    assert tasks.to_json()["tasks"][2]["slots"] == [0, 1]


def test_ab_query_is_split_by_the_task_shares(ran):
    result, printed = ran["ab_digits"]
    tasks, prompt = result.tasks, result.prompts["mixed"]
    assert prompt.query == (3, 5)
    per_task = [0, 0, 0]
    for example in prompt.examples:
        (k,) = fits(tasks, example)
        per_task[k] += 1
    assert per_task == [3, 2, 1]     # small size: 3 copy A, 2 copy B, 1 A+B
    expected = distribution(10, {3: Fraction(1, 2), 5: Fraction(1, 3), 8: Fraction(1, 6)})
    assert np.abs(result.query_distribution("mixed") - expected).max() <= TOL
    assert np.abs(result.shares["mixed"] - [1 / 2, 1 / 3, 1 / 6]).max() <= TOL
    for line in ("3  0.500000000  0.500000000", "5  0.333333333  0.333333333", "8  0.166666667  0.166666667"):
        assert line in printed
    assert "copy A (1/2)" in printed and "A+B (1/6)" in printed


def test_ab_ambiguous_example_splits_its_vote(ran):
    result, printed = ran["ab_digits"]
    prompt = result.prompts["ambiguous example"]
    assert prompt.examples[:-1] == result.prompts["mixed"].examples
    assert prompt.examples[-1] == Example([4, 0], 4)
    assert fits(result.tasks, prompt.examples[-1]) == [0, 2]
    # copy A 3 + 1/2, copy B 2, A+B 1 + 1/2 votes out of 7 consistent examples
    shares = [Fraction(7, 14), Fraction(2, 7), Fraction(3, 14)]
    assert [Fraction(p) for p in task_mixture(result.tasks, prompt.examples)] == shares
    assert np.abs(result.shares["ambiguous example"] - np.array(shares, dtype=float)).max() <= TOL
    expected = distribution(10, {3: shares[0], 5: shares[1], 8: shares[2]})
    assert np.abs(result.query_distribution("ambiguous example") - expected).max() <= TOL
    assert "5  0.285714286" in printed


def test_ab_ambiguous_query_adds_the_probabilities(ran):
    result, printed = ran["ab_digits"]
    assert result.prompts["ambiguous query"].query == (7, 0)
    expected = distribution(10, {7: Fraction(1, 2) + Fraction(1, 6), 0: Fraction(1, 3)})
    assert np.abs(result.query_distribution("ambiguous query") - expected).max() <= TOL
    assert "7  0.666666667" in printed and "copy A (1/2) + A+B (1/6)" in printed


# --- 2. add and translate -------------------------------------------------------------------

def test_add_and_translate_tables(ran):
    tasks = ran["add_and_translate"][0].tasks
    english, spanish = tasks.tasks
    assert tasks.vocab_size == 48 and tasks.slots == 2
    assert len(set(tasks.token_names)) == 48
    assert english.slots == spanish.slots == (0, 1)
    name = tasks.name_of
    for (a, b), en, es in [((7, 8), "fifteen", "quince"), ((9, 9), "eighteen", "dieciocho"),
                           ((0, 0), "zero", "cero"), ((3, 4), "seven", "siete"), ((8, 8), "sixteen", "dieciséis")]:
        assert (name(english([a, b])), name(spanish([a, b]))) == (en, es)
    # every digit pair: a word of the right language; the two words name the same number
    for a in range(10):
        for b in range(10):
            assert english([a, b]) - 10 == spanish([a, b]) - 29 == a + b
    ten = tasks.token_names.index("ten")
    assert english([ten, 3]) == spanish([ten, 3]) == spanish([3, ten]) == tasks.token_names.index("0")


def test_add_and_translate_query_and_variants(ran):
    result, printed = ran["add_and_translate"]
    tasks = result.tasks
    token = {n: i for i, n in enumerate(tasks.token_names)}
    mixed = result.prompts["mixed"]
    assert mixed.query == (7, 8)
    assert [len(fits(tasks, e)) for e in mixed.examples] == [1] * 6
    assert sorted(fits(tasks, e)[0] for e in mixed.examples) == [0, 0, 0, 0, 1, 1]   # 4 English, 2 Spanish
    cases = {
        "mixed": (Fraction(2, 3), Fraction(1, 3)),
        "noise example": (Fraction(2, 3), Fraction(1, 3)),               # fits neither: ignored
        "example outside the family": (Fraction(9, 14), Fraction(5, 14)),  # (4 + 1/2) : (2 + 1/2) out of 7
    }
    for label, (p_en, p_es) in cases.items():
        prompt = result.prompts[label]
        assert prompt.examples[:6] == mixed.examples and prompt.query == mixed.query
        expected = distribution(48, {token["fifteen"]: p_en, token["quince"]: p_es})
        assert np.abs(result.query_distribution(label) - expected).max() <= TOL, label
    assert fits(tasks, result.prompts["noise example"].examples[-1]) == []
    assert fits(tasks, result.prompts["example outside the family"].examples[-1]) == [0, 1]
    assert "fifteen  0.666666667  0.666666667" in printed and "quince  0.333333333" in printed
    assert "fifteen  0.642857143" in printed


# --- 3. country -> capital / continent ------------------------------------------------------

@pytest.fixture(scope="module")
def countries():
    text = resources.files("superpose.examples").joinpath("data/countries.json").read_text(encoding="utf-8")
    return json.loads(text)["countries"]


def test_country_data_file(countries):
    assert len(countries) >= 20
    for row in countries:
        assert set(row) == {"country", "capital", "continent"}
        assert all(isinstance(v, str) and v.strip() == v and v for v in row.values())
    names = [row["country"] for row in countries] + [row["capital"] for row in countries]
    assert len(set(names)) == len(names)               # distinct countries, capitals, and no overlap
    continents = {row["continent"] for row in countries}
    assert continents.isdisjoint(names) and len(continents) >= 5
    assert {"country": "France", "capital": "Paris", "continent": "Europe"} in countries
    assert {"country": "Japan", "capital": "Tokyo", "continent": "Asia"} in countries


def test_country_tables_follow_the_data_file(ran, countries):
    tasks = ran["country_capital"][0].tasks
    capital, continent = tasks.tasks
    names = tasks.token_names
    continents = {row["continent"] for row in countries}
    assert tasks.vocab_size == 2 * len(countries) + len(continents) == len(names) == len(set(names))
    for row in countries:
        x = [names.index(row["country"])]
        assert names[capital(x)] == row["capital"] and names[continent(x)] == row["continent"]
    for name in [row["capital"] for row in countries] + sorted(continents):  # non-countries map to themselves
        t = names.index(name)
        assert capital([t]) == continent([t]) == t


def test_country_query_and_variants(ran):
    result, printed = ran["country_capital"]
    tasks = result.tasks
    token = {n: i for i, n in enumerate(tasks.token_names)}
    mixed = result.prompts["mixed"]
    assert mixed.query == (token["Japan"],)
    assert all(e.inputs != (token["Japan"],) for e in mixed.examples)
    assert sorted(k for e in mixed.examples for k in fits(tasks, e)) == [0, 0, 0, 1]  # 3 capital, 1 continent
    cases = {
        "mixed": (Fraction(3, 4), Fraction(1, 4)),
        "example outside the family": (Fraction(7, 10), Fraction(3, 10)),  # Paris -> Paris: half a vote each
        "wrong example": (Fraction(3, 4), Fraction(1, 4)),                  # Japan -> Europe: ignored
    }
    for label, (p_capital, p_continent) in cases.items():
        expected = distribution(tasks.vocab_size, {token["Tokyo"]: p_capital, token["Asia"]: p_continent})
        assert np.abs(result.query_distribution(label) - expected).max() <= TOL, label
        analytic = predict(tasks, result.prompts[label])[-1]
        assert np.abs(result.query_distribution(label) - analytic).max() <= TOL, label
    assert result.prompts["example outside the family"].examples[-1] == Example([token["Paris"]], token["Paris"])
    assert result.prompts["wrong example"].examples[-1] == Example([token["Japan"]], token["Europe"])
    assert "Tokyo  0.750000000  0.750000000" in printed and "capital (3/4)" in printed
    assert "Asia  0.300000000" in printed


# --- command line and scripts ---------------------------------------------------------------

def test_families_are_registered_under_short_names():
    assert examples_cli.resolve(["ab", "add-translate", "countries"]) == FAMILIES


def test_cli_runs_a_family_example(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(superpose.cli, "COMMAND_MODULES", ("superpose.examples.cli",))
    assert superpose.cli.main(["examples", "countries", "--small", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Tokyo  0.750000000" in out and "Ran country_capital" in out
    assert (tmp_path / "country_capital.png").read_bytes()[:8] == PNG_MAGIC


def test_the_data_file_is_found_from_any_working_directory(tmp_path):
    """The script reads countries.json through importlib.resources, not relative to the cwd."""
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "country_capital.py"), "--small",
                           "--out", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Tokyo  0.750000000" in proc.stdout
    assert (tmp_path / "country_capital.png").exists()


def test_ab_prompt_rejects_an_ambiguous_draw():
    from superpose.examples.ab_digits import ab_tasks
    from superpose.examples.common import mixed_examples
    with pytest.raises(ValueError, match="not an unambiguous example"):
        mixed_examples(ab_tasks(), (1, 0, 0), lambda rng, k: [4, 0])   # copy A and A+B both give 4


def test_the_analytic_mixture_of_a_hand_made_ab_prompt():
    """The hand-derived shares used above, on a prompt written out in full."""
    from superpose.examples.ab_digits import ab_tasks
    tasks = ab_tasks()
    prompt = Prompt([Example([1, 2], 1), Example([5, 6], 6), Example([2, 3], 5), Example([4, 0], 4)], query=[3, 5])
    assert [str(p) for p in task_mixture(tasks, prompt.examples)] == ["3/8", "1/4", "3/8"]
