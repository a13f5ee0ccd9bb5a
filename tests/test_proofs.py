"""The symbolic checks of proofs/: every lemma is proved on the built weights, and a
perturbed copy of a weight (in a gadget, a placed unit, the params or the bound
function) makes the corresponding check fail."""

import copy
import dataclasses
import functools
import json
import math
from fractions import Fraction

import numpy as np
import pytest
from sympy import QQ

import superpose.cli
from superpose.construct import gadgets
from superpose.construct.bound import error_bound
from superpose.construct.build import build
from superpose.proofs import checks
from superpose.proofs.bound_lemmas import check_error_bound_formula, check_error_bound_leak
from superpose.proofs.exact_run import Cyclotomic, add, check_exact_run, check_sharpness_scales_scores, neg, sign
from superpose.proofs.gadget_lemmas import check_conjunction, check_integer_indicator, check_snap
from superpose.proofs.layer_lemmas import (check_embedding_and_readout, check_layer3, check_layer4, check_layer5,
                                           check_layer6, check_layer7, look_back_form)
from superpose.proofs.result import ProofInputError
from superpose.proofs.softmax_lemmas import check_tally_leak
from superpose.proofs.subjects import prompts_for, three_tasks


@pytest.fixture(scope="module")
def model():
    return build(three_tasks(), max_examples=3)


@pytest.fixture
def perturbed(model):
    return copy.deepcopy(model)


@pytest.mark.parametrize("check", checks.ALL_CHECKS, ids=checks.lemma_id)
def test_every_lemma_is_proved(check):
    result = check()
    assert result.proved, f"{result.name}: {result.detail}"
    assert result.check.endswith("::" + check.__name__)


def test_lemma_ids_are_unique_and_the_proof_covers_every_layer():
    ids = [checks.lemma_id(c) for c in checks.ALL_CHECKS]
    assert len(set(ids)) == len(ids)
    assert {f"L{i}" for i in range(1, 8)} <= set(ids)


# ---------------------------------------------------------------- perturbed gadgets


def _with_term(gadget, index, **changes):
    terms = list(gadget.terms)
    terms[index] = dataclasses.replace(terms[index], **changes)
    return dataclasses.replace(gadget, terms=tuple(terms))


def test_snap_check_fails_when_a_bias_moves():
    snap = gadgets.snap()
    result = check_snap(_with_term(snap, 0, bias=Fraction(-1, 2)))   # ramp starts at 1/8: snap(1/4) != 0
    assert not result.proved and "x in" in result.detail


def test_snap_check_fails_when_the_output_weight_changes():
    result = check_snap(_with_term(gadgets.snap(), 1, out=Fraction(-1, 4)))
    assert not result.proved


def test_integer_indicator_check_fails_for_a_shifted_term():
    def shifted(j):
        g = gadgets.integer_indicator(j)
        return _with_term(g, 3, bias=g.terms[3].bias + Fraction(1, 8)) if j == 2 else g
    result = check_integer_indicator(factory=shifted)
    assert not result.proved and "is_integer[2]" in result.detail


def test_conjunction_check_fails_with_the_wrong_threshold():
    def loose(n, scale=1):
        g = gadgets.conjunction(n, scale)
        return _with_term(g, 0, bias=g.terms[0].bias + 1)
    assert not check_conjunction(factory=loose).proved


# ---------------------------------------------------------------- perturbed placed units


def test_layer3_check_fails_when_a_placed_snap_unit_changes(perturbed):
    mlp = perturbed.layers[2].mlp
    unit = next(u for u in mlp.units if u.label.startswith("match[0] = snap"))
    unit.bias = Fraction(-1, 2)
    result = check_layer3(perturbed)
    assert not result.proved and "match[0]" in result.detail


def test_layer7_check_fails_when_a_placed_conjunction_reads_the_wrong_input(perturbed):
    lay = perturbed.layout
    unit = perturbed.layers[6].mlp.units[0]
    unit.reads = {**unit.reads, lay.at("token", perturbed.tasks.bos): Fraction(1)}
    result = check_layer7(perturbed)
    assert not result.proved and "token[BOS]" in result.detail


# ---------------------------------------------------------------- perturbed params


def test_layer4_and_exact_run_fail_when_a_vote_weight_changes(perturbed):
    lay = perturbed.layout
    W_out = perturbed.params["layer_4"]["mlp"]["W_out"]
    j = next(j for j, u in enumerate(perturbed.layers[3].mlp.units) if u.label == "vote[0] += match[0] * count_is[2] / 2")
    W_out[j, lay.at("vote", 0)] = 1 / 3
    result = check_layer4(perturbed)
    assert not result.proved and "W_out" in result.detail
    run = check_exact_run([(perturbed, prompts_for(perturbed.tasks))])
    assert not run.proved and "vote" in run.detail


def test_layer6_and_exact_run_fail_when_a_head_looks_back_the_wrong_distance(perturbed):
    # rebuild head 0's query weights from the look-back form of offset D + 1
    D = perturbed.tasks.slots - perturbed.tasks.slots_read[0]   # head 0 reads the first slot read
    W_Q = perturbed.params["layer_6"]["attn"]["W_Q"][0]
    W_K = perturbed.params["layer_6"]["attn"]["W_K"][0]
    form = look_back_form(perturbed, D + 1)
    for (q_dim, k_dim), value in form.items():
        column = int(np.flatnonzero(W_K[k_dim])[0])
        W_Q[q_dim, column] = float(value)
    result = check_layer6(perturbed)
    assert not result.proved and "layer 6 head 0" in result.detail
    run = check_exact_run([(perturbed, prompts_for(perturbed.tasks))])
    assert not run.proved and ("slot" in run.detail or "readout" in run.detail)


def test_exact_run_fails_on_a_weight_with_no_exact_value(perturbed):
    perturbed.params["layer_1"]["mlp"]["b_in"][0] += 1e-9
    run = check_exact_run([(perturbed, prompts_for(perturbed.tasks)[:1])])
    assert not run.proved and "layer_1/mlp b_in" in run.detail


def test_positional_check_fails_when_the_code_is_perturbed(perturbed):
    perturbed.params["embed"]["W_pos"][5, perturbed.layout.at("pos_cos", 2)] += 1e-6
    assert not check_embedding_and_readout(perturbed).proved


def test_tally_checks_fail_when_the_valid_key_is_weakened(perturbed):
    lay = perturbed.layout
    W_K = perturbed.params["layer_5"]["attn"]["W_K"][0]
    W_K[lay.at("valid")] *= 0.75   # 2 beta -> 1.5 beta: the leak becomes 2e^{-beta/2} + T e^{-1.5 beta}
    assert not check_layer5(perturbed).proved
    result = check_tally_leak(perturbed)
    assert not result.proved and "as construct.bound assumes" in result.detail


def test_sharpness_check_fails_when_a_value_weight_changes(perturbed):
    perturbed.params["layer_1"]["attn"]["W_O"][0] *= 2
    assert not check_sharpness_scales_scores(perturbed).proved


# ---------------------------------------------------------------- perturbed bound


def test_leak_check_fails_for_a_bound_that_drops_a_term():
    def weaker(K, T, L, beta, dtype="float32", **shape):
        b = error_bound(K, T, L, beta, dtype, **shape)
        return dataclasses.replace(b, leak=b.leak - 2 * math.exp(-beta) if b.holds else b.leak)
    assert not check_error_bound_leak(error_bound=weaker).proved


def test_formula_check_fails_for_a_bound_that_rounds_down():
    def lower(K, T, L, beta, dtype="float32", **shape):
        b = error_bound(K, T, L, beta, dtype, **shape)
        return dataclasses.replace(b, total=b.total * (1 - 1e-9))
    result = check_error_bound_formula(error_bound=lower)
    assert not result.proved and "total" in result.detail


# ---------------------------------------------------------------- the exact field


def test_exact_field_decides_ties_and_signs_exactly():
    N = 8
    cos = functools.partial(Cyclotomic.cos_pi, N)
    assert add(cos(3), cos(5)).is_zero()                      # cos(3pi/8) = -cos(5pi/8)
    root2 = add(cos(2), cos(2))                                # 2 cos(pi/4) = sqrt 2
    assert sign(add(root2, QQ(-1))) == 1 and sign(add(QQ(7, 5), neg(root2))) == -1
    assert sign(add(cos(1), QQ(-92387, 100000))) == 1          # cos(pi/8) = 0.9238795...
    assert sign(add(cos(1), QQ(-92388, 100000))) == -1

    def gap_sum(delta, L):   # S_L(delta) in the field of N = 8 (cos(pi delta / 2^b) = cos(pi delta 2^(3-b) / 8))
        total = Cyclotomic(N, [QQ(0)] * N)
        for b in range(L):
            total = add(total, cos(delta * 2 ** (3 - b)))
        return total

    assert add(gap_sum(3, 3), neg(gap_sum(5, 3))).is_zero()   # a tie: both are -1 - sqrt(2)/2
    assert sign(add(gap_sum(3, 4), neg(gap_sum(5, 4)))) == 1  # -1.32... > -2.09...
    assert gap_sum(0, 4).c[0] == 4 and sign(add(gap_sum(1, 4), QQ(-2))) == -1   # S_4(0) = 4, S_4(1) <= 2


def test_bad_input_is_a_typed_error():
    with pytest.raises(ProofInputError):
        check_layer3("not a model")
    with pytest.raises(ProofInputError):
        check_exact_run([("not a model", [])])


# ---------------------------------------------------------------- the prove command


def test_prove_command_prints_one_verdict_per_lemma(monkeypatch, capsys):
    monkeypatch.setattr(superpose.cli, "COMMAND_MODULES", ("superpose.proofs.cli",))
    assert superpose.cli.main(["prove", "--only", "G1", "P1", "L4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["PROVED"] * 3
    assert "G1 snap" in lines[0] and "P1 positional gap" in lines[1] and "L4 cast votes" in lines[2]
    assert lines[3].startswith("3 of 3 lemmas proved")


def test_prove_command_exits_1_when_a_check_fails(monkeypatch, capsys):
    from superpose.proofs import cli as proofs_cli
    broken_snap = _with_term(gadgets.snap(), 0, bias=Fraction(-1, 2))
    failing = functools.wraps(check_snap)(functools.partial(check_snap, broken_snap))
    monkeypatch.setattr(superpose.cli, "COMMAND_MODULES", ("superpose.proofs.cli",))
    monkeypatch.setattr(proofs_cli.checks, "ALL_CHECKS", (failing,))
    assert superpose.cli.main(["prove"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED") and "FAILED: G1 snap" in out


def test_prove_command_rejects_an_unknown_lemma(monkeypatch, capsys):
    monkeypatch.setattr(superpose.cli, "COMMAND_MODULES", ("superpose.proofs.cli",))
    assert superpose.cli.main(["prove", "--only", "Z9"]) == 2
    assert "unknown lemma id" in capsys.readouterr().err


def test_prove_command_runs_the_model_lemmas_on_a_given_task_set(monkeypatch, capsys, tmp_path):
    tasks = {"vocab_size": 4, "slots": 3, "tasks": [
        {"name": "A", "slot": 0, "table": [0, 1, 2, 3]},
        {"name": "C-A", "slots": [2, 0], "table": [[(c - a) % 4 for a in range(4)] for c in range(4)]}]}
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(tasks))
    monkeypatch.setattr(superpose.cli, "COMMAND_MODULES", ("superpose.proofs.cli",))
    assert superpose.cli.main(["prove", str(path), "--only", "D", "L2", "L7", "X", "-v"]) == 0
    out = capsys.readouterr().out
    assert "2 heads/layer" in out                      # slots 0 and 2 are read: S = 2
    assert "1 built models match every formula" in out  # D ran on this model alone, not the built-in ones
    assert "K=2, d=4, s=3" in out                       # L2 and L7 name the model they proved
    assert "9 prompts" in out                           # X: the empty prompt and 8 random ones
    assert "4 of 4 lemmas proved" in out


def test_prove_command_rejects_a_bad_task_set(monkeypatch, capsys, tmp_path):
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps({"vocab_size": 3, "slots": 2, "tasks": [{"name": "a", "slots": [0, 0],
                                                                        "table": [[0] * 3] * 3}]}))
    monkeypatch.setattr(superpose.cli, "COMMAND_MODULES", ("superpose.proofs.cli",))
    assert superpose.cli.main(["prove", str(path)]) == 2
    assert "repeats a slot" in capsys.readouterr().err
