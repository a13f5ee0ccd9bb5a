"""The worked examples in examples/ run (at their small sizes) and their numbers are right.

Every expected value here comes from the analytic prediction (``superpose.verify``,
written independently of the construction) or is derived by hand from the prompt;
none is read back from the code under test.
"""

import doctest
import importlib
import itertools
import math
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_example

import superpose.cli
import superpose.examples
from superpose import Example, Prompt
from superpose.demo import digit_tasks, mixed_prompt
from superpose.examples import cli as examples_cli
from superpose.verify.analytic import predict, task_mixture

TOL = 1e-12          # float64 at sharpness 50: the model's own bound is ~7e-12
ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WORD = {"seven": 17, "six": 16, "two": 12}  # digit_tasks: the word for x is token 10 + x


def assert_png(path: Path):
    assert path.exists(), path
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size < 400_000  # committed figures stay small


def one_hot_mixture(d: int, weights: dict[int, float]) -> np.ndarray:
    out = np.zeros(d)
    for token, p in weights.items():
        out[token] += p
    return out


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("figures")


# --- 1. digits in superposition -------------------------------------------------------------

@pytest.fixture(scope="module")
def digits(out_dir):
    return run_example("digits_in_superposition", out_dir)


def test_digits_query_answer_is_split_by_the_task_shares(digits):
    result, printed = digits
    # small size: 3 copy, 2 next digit, 1 to word examples; query 7 -> 7, 8, seven
    expected = one_hot_mixture(20, {7: 1 / 2, 8: 1 / 3, WORD["seven"]: 1 / 6})
    assert np.abs(result.query_distribution - expected).max() <= TOL
    tasks = digit_tasks()
    analytic = predict(tasks, mixed_prompt(tasks, counts=(3, 2, 1), query=7))[-1]
    assert np.abs(result.query_distribution - analytic).max() <= TOL
    for line in ("7  0.500000000", "8  0.333333333", "seven  0.166666667"):
        assert line in printed


def test_digits_sweep_covers_every_split_and_lies_on_the_diagonal(digits):
    result, _ = digits
    n = 6
    every_split = {c for c in itertools.product(range(n + 1), repeat=3) if sum(c) == n}
    assert {tuple(row) for row in result.sweep_counts} == every_split
    assert len(result.sweep_counts) == math.comb(n + 2, 2)
    # the three digit tasks never give the same answer, so probability = share exactly
    assert np.abs(result.sweep_probabilities - result.sweep_counts / n).max() <= TOL
    assert result.max_error <= result.bound < 1e-10


def test_digits_figure(digits, out_dir):
    assert_png(out_dir / "digits_in_superposition.png")


# --- 2. inside the seven layers -------------------------------------------------------------

@pytest.fixture(scope="module")
def layers(out_dir):
    return run_example("inside_the_seven_layers", out_dir)


PROMPT_TOKENS = ["BOS", "3", "->", "3", "1", "->", "1", "5", "->", "6", "2", "->", "two", "7", "->"]
ANSWERS = [3, 6, 9, 12]            # positions right after an ARROW
PREDICTIONS = [2, 5, 8, 11, 14]    # ARROW positions, the query's last
# examples 3->3 and 1->1 fit copy (task 0), 5->6 next digit (1), 2->two to word (2)
FITS = {3: 0, 6: 0, 9: 1, 12: 2}


def test_layers_trace_the_small_prompt(layers):
    result, printed = layers
    assert result.tokens == PROMPT_TOKENS
    assert "Layer 7 (weight and sum)" in printed


def test_layers_each_layer_writes_its_stage(layers):
    result, _ = layers
    blocks = {layer: {label.split("[")[0] for part in result.changes[layer].values()
                      for entries in part.values() for label in entries}
              for layer in range(1, 8)}
    assert blocks == {1: {"answer_raw", "is_answer"}, 2: {"slot", "match_raw"}, 3: {"match", "count_is", "valid"},
                      4: {"vote"}, 5: {"mix"}, 6: {"slot"}, 7: {"out"}}
    assert result.changes[3]["attention"] == result.changes[4]["attention"] == result.changes[7]["attention"] == {}


def test_layers_find_check_count_and_vote_exactly(layers):
    result, _ = layers
    ch = result.changes
    assert set(ch[1]["mlp"]) == set(ANSWERS)
    for t, k in FITS.items():
        assert ch[1]["mlp"][t] == pytest.approx({"is_answer": 1.0}, abs=TOL)
        assert ch[3]["mlp"][t] == pytest.approx({f"match[{k}]": 1.0, "count_is[1]": 1.0, "valid": 1.0}, abs=TOL)
        assert ch[4]["mlp"][t] == pytest.approx({f"vote[{k}]": 1.0}, abs=TOL)
        assert ch[2]["mlp"][t][f"match_raw[{k}]"] == pytest.approx(1.0, abs=TOL)


def test_layers_tally_and_output_match_the_analytic_prediction(layers):
    result, _ = layers
    tasks = digit_tasks()
    examples = [Example([3], 3), Example([1], 1), Example([5], 6), Example([2], 12)]
    for i, t in enumerate(PREDICTIONS):
        mix = result.changes[5]["attention"][t]
        expected = {f"mix[{k}]": float(p) for k, p in enumerate(task_mixture(tasks, examples[:i])) if p}
        assert mix == pytest.approx(expected, abs=TOL)
    analytic = predict(tasks, Prompt(examples, [7]))
    assert np.abs(result.readout[PREDICTIONS] - analytic).max() <= TOL
    assert result.changes[7]["mlp"][14] == pytest.approx({"out[7]": 0.5, "out[8]": 0.25, "out[17]": 0.25}, abs=TOL)


def test_layers_attention_patterns(layers):
    result, _ = layers
    # three tasks read one slot: one head in each of layers 2 and 6, not one per task
    assert sorted(result.patterns) == [(1, 0), (2, 0), (5, 0), (6, 0)]
    offsets = {1: 1, 2: 2, 6: 1}  # one slot: layer 2 looks from an answer back to its input, layer 6 from ARROW
    for (layer, head), pattern in result.patterns.items():
        if layer in offsets:
            for t in range(offsets[layer], len(PROMPT_TOKENS)):
                assert pattern[t, t - offsets[layer]] >= 1 - TOL
    query_row = result.patterns[(5, 0)][-1]  # the tally averages the four valid answers
    assert np.abs(query_row - one_hot_mixture(15, {t: 1 / 4 for t in ANSWERS})).max() <= TOL


def test_layers_figure(layers, out_dir):
    assert_png(out_dir / "inside_the_seven_layers.png")


# --- 3. the in-context learning curve -------------------------------------------------------

@pytest.fixture(scope="module")
def curve(out_dir):
    return run_example("learning_curve", out_dir)


def test_curve_classifies_the_examples(curve):
    result, printed = curve
    # copy, next, double = tasks 0, 1, 2; 1->2 fits next and double, 4->9 fits none
    assert result.fits == [[0], [1], [0], [1, 2], [], [2], [0], [1]]
    assert "ambiguous (next digit + double)" in printed and "noise (fits no task)" in printed


def test_curve_task_weights_are_the_vote_shares(curve):
    result, _ = curve
    by_hand = np.array([[1 / 3, 1 / 3, 1 / 3], [1, 0, 0], [1 / 2, 1 / 2, 0], [2 / 3, 1 / 3, 0],
                        [1 / 2, 3 / 8, 1 / 8],   # the ambiguous example: half a vote each
                        [1 / 2, 3 / 8, 1 / 8],   # the noise example changes nothing
                        [2 / 5, 3 / 10, 3 / 10], [1 / 2, 1 / 4, 1 / 4], [3 / 7, 5 / 14, 3 / 14]])
    assert np.abs(result.task_weights - by_hand).max() <= TOL


def test_curve_predictions_match_the_analytic_prediction(curve):
    result, _ = curve
    prompt = Prompt(result.examples, query=[3])
    from superpose.examples.learning_curve import copy_next_double  # the task set, not the model
    assert np.abs(result.outputs - predict(copy_next_double(), prompt)).max() <= TOL
    # p(answer) before each example: the weights of the tasks it fits
    assert np.abs(result.next_answer_probability - [1 / 3, 0, 1 / 2, 1 / 3, 0, 1 / 8, 2 / 5, 1 / 4]).max() <= TOL
    assert result.max_error <= result.bound


def test_curve_figure(curve, out_dir):
    assert_png(out_dir / "learning_curve.png")


# --- 4. task vectors ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vectors(out_dir):
    return run_example("task_vectors", out_dir)


def test_task_vectors_are_the_one_hot_mixtures(vectors):
    result, _ = vectors
    assert result.differing_blocks == ["mix"]
    assert np.abs(result.task_vectors - np.eye(3)).max() <= TOL


def test_patched_task_vectors_give_the_superposed_answer(vectors):
    result, _ = vectors
    n = 4
    assert {tuple(np.rint(w * n).astype(int)) for w in result.weights} == \
        {c for c in itertools.product(range(n + 1), repeat=3) if sum(c) == n}
    assert result.query == 6  # answers: copy 6, next digit 7, to word six
    expected = np.array([one_hot_mixture(20, {6: a[0], 7: a[1], WORD["six"]: a[2]}) for a in result.weights])
    assert np.abs(result.patched - expected).max() <= TOL
    assert np.abs(result.prompted - expected).max() <= TOL
    assert result.max_patched_vs_prompted <= TOL and result.max_patched_vs_analytic <= TOL


def test_task_vectors_figure(vectors, out_dir):
    assert_png(out_dir / "task_vectors.png")


# --- 5. breaking it on purpose --------------------------------------------------------------

@pytest.fixture(scope="module")
def breaking(out_dir):
    return run_example("breaking_it", out_dir)


def test_breaking_error_stays_under_the_bound(breaking):
    result, printed = breaking
    runs = {r.sharpness: r for r in result.runs}
    assert runs[50].bound_holds and runs[50].error <= TOL
    assert not runs[0.5].bound_holds and math.isinf(runs[0.5].bound)
    for r in result.runs:
        if r.bound_holds:
            assert r.error <= r.bound
    errors = [r.error for r in result.runs if r.sharpness <= 30]  # above 30 it is rounding
    assert errors == sorted(errors)
    assert "inf" in printed


def test_breaking_tally_leak_matches_its_closed_form(breaking):
    result, _ = breaking
    T, N = result.prompt_length, result.n_valid_examples
    assert (T, N) == (39, 12)
    for r in result.runs:
        if r.broken:
            continue
        b = r.sharpness
        # at the query: N valid answers score 2b, BOS b, the T - 1 - N other keys 0
        off = (math.exp(b) + T - 1 - N) / (N * math.exp(2 * b) + math.exp(b) + T - 1 - N)
        assert r.tally_off_target_at_query == pytest.approx(off, rel=1e-6, abs=1e-15)
        # the look-back heads obey the gap lemma: off-target mass <= (T - 1) e^{-2 beta}
        for layer in (1, 2, 6):
            assert r.off_target[layer] <= (T - 1) * math.exp(-2 * b) * 1.001
            assert r.off_target[5] > r.off_target[layer]
        # snapped blocks exact, so the output error is the tally's error
        assert abs(r.error - r.mix_error) <= 1e-15


def test_breaking_snaps_hold_until_the_reported_break(breaking):
    result, _ = breaking
    from superpose.examples.breaking_it import ABSORBS_LEAK_OF
    for r in result.runs:
        exact = all(dev <= 1e-12 for dev in r.snap_deviation.values())
        assert exact == (r.sharpness >= result.break_sharpness)
        if r.bound_holds:  # hypothesis H is what the proof needs for exact snaps
            assert exact
    assert result.break_sharpness < min(r.sharpness for r in result.runs if r.bound_holds)
    assert result.first_broken
    K = 3
    for name in result.first_broken:
        # a snap is exact while its input is within 1/4, a count while the K inputs summed are
        needed = 1 / 4 if name in ("is_answer", "match", "slot") else 1 / (4 * K)
        assert result.off_target_at_break[ABSORBS_LEAK_OF[name]] > needed


def test_breaking_figure(breaking, out_dir):
    assert_png(out_dir / "breaking_it.png")


# --- the command line, the scripts and the doctests ------------------------------------------

def test_every_example_module_is_registered():
    modules = {m.name for m in pkgutil.iter_modules(superpose.examples.__path__)} - {"cli", "common"}
    assert modules == set(examples_cli.EXAMPLES.values())


def test_cli_runs_a_named_example_into_figures_of_the_current_directory(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(superpose.cli, "COMMAND_MODULES", ("superpose.examples.cli",))
    monkeypatch.chdir(tmp_path)
    assert superpose.cli.main(["examples", "curve", "--small"]) == 0
    out = capsys.readouterr().out
    assert "After all 8 examples: copy 3/7, next digit 5/14, double 3/14." in out
    assert "Ran learning_curve" in out
    assert_png(tmp_path / "figures" / "learning_curve.png")
    assert [p.name for p in tmp_path.iterdir()] == ["figures"]


def test_cli_rejects_an_unknown_example(monkeypatch, capsys):
    monkeypatch.setattr(superpose.cli, "COMMAND_MODULES", ("superpose.examples.cli",))
    assert superpose.cli.main(["examples", "no-such-example"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown example 'no-such-example'" in err


@pytest.mark.parametrize("how", ["path", "module"])
def test_an_example_runs_as_a_script(tmp_path, how):
    target = [str(ROOT / "examples" / "learning_curve.py")] if how == "path" else \
        ["-m", "superpose.examples.learning_curve"]
    out = tmp_path / "chosen" if how == "module" else tmp_path / "figures"   # --out, or the default
    proc = subprocess.run([sys.executable, *target, "--small", *(["--out", str(out)] if how == "module" else [])],
                          capture_output=True, text=True, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "copy 3/7, next digit 5/14, double 3/14" in proc.stdout
    assert_png(out / "learning_curve.png")


@pytest.mark.parametrize("module", ["common", "digits_in_superposition"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(f"superpose.examples.{module}"))
    assert result.failed == 0 and result.attempted > 0
