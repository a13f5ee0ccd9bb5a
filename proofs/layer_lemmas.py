r"""Lemmas E and L1-L7: the built weights of every layer are exactly the circuit the proof uses.

For each layer the check reads the *built* model:

* attention, from ``model.params`` (the arrays the executors run): which heads are
  non-zero, each head's score as a bilinear form ``[h_t, 1] M [h_u, 1]^T`` with
  ``M = [W_Q; b_Q] [W_K; b_K]^T``, and its OV map ``[h, 1] [W_V; b_V] W_O``; each is
  compared with the exact form the proof states (look-back heads: ``beta R_D`` on the
  positional code, irrational entries to within ``1e-10 beta``; everything else
  exactly);
* MLP, from the layer's builder (``model.layers[i].mlp.units``, exact ``Fraction``
  coefficients): every unit is assigned to a claim about one output direction, the
  units of each claim are de-placed into a ReLU sum of the claim's input variables
  (``relu_cases.from_units``), and the claim is proved by symbolic case analysis on its
  stated domain; then ``model.params`` is checked to hold exactly these units.

So a change to a weight, in the builder or in the params, fails the layer's lemma.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Sequence

import numpy as np
import sympy as sp

from superpose.construct.build import SuperposeModel

from .relu_cases import (BIT, from_units, interval, prove_bounds, prove_equal, prove_equal_at, prove_inactive,
                         rational, symbol)
from .result import ProofFailure, ProofInputError, lemma, require
from .subjects import proof_models

QUARTER, THREE_QUARTERS = Fraction(1, 4), Fraction(3, 4)
LOOK_BACK_TOLERANCE = 1e-10  # times beta: the float rotation entries are within ~1e-13 beta of exact


def models_to_check(model: Any, one_token: bool = True) -> list[SuperposeModel]:
    """``None``: freshly built proof models; a model; or a sequence of models (of one-token answers:
    the layer lemmas state the one-token circuit; lemma X certifies models of longer answers)."""
    if model is None:
        return proof_models()
    models = [model] if isinstance(model, SuperposeModel) else model
    if not (isinstance(models, (list, tuple)) and models and all(isinstance(m, SuperposeModel) for m in models)):
        raise ProofInputError(f"model: expected a SuperposeModel or a list of them, got {type(model).__name__}")
    for m in models:
        if one_token and m.tasks.answer_length > 1:
            raise ProofInputError(f"model: answers of {m.tasks.answer_length} tokens; this lemma states the "
                                  "one-token circuit (lemma X certifies models of longer answers)")
    return list(models)


# ----------------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class Case:
    """One statement about a ReLU sum: equal to ``equals``, within ``bounds`` or inactive."""

    statement: str
    domain: dict = field(default_factory=dict)
    equals: Any = None
    bounds: tuple | None = None
    inactive: bool = False
    points: tuple = ()  # explicit points instead of a product domain (with ``equals``)


@dataclass(frozen=True)
class Term:
    """Some of the units writing an output: a ReLU sum of ``variables`` (name -> residual form)."""

    variables: dict
    cases: tuple


@dataclass(frozen=True)
class OutputClaim:
    output: int
    terms: tuple


def _prove_case(f, case: Case) -> int:
    if case.inactive:
        return prove_inactive(f, case.domain)
    if case.bounds is not None:
        return prove_bounds(f, case.domain, *case.bounds)
    if case.points:
        return prove_equal_at(f, case.points, case.equals)
    return prove_equal(f, case.domain, case.equals)


def _snap_cases(var: str) -> tuple:
    return (Case(f"0 for {var} <= 1/4", {var: interval(None, QUARTER)}, equals=0),
            Case(f"1 for {var} >= 3/4", {var: interval(THREE_QUARTERS, None)}, equals=1),
            Case("in [0, 1] everywhere", {var: interval(None, None)}, bounds=(0, 1)))


def prove_mlp(model: SuperposeModel, number: int, claims: Sequence[OutputClaim]) -> int:
    """Prove every claim on the placed units of layer ``number``; check the params hold those units."""
    lay, layer = model.layout, model.layers[number - 1]
    units = layer.mlp.units
    name = lambda d: lay.labels[d]  # noqa: E731
    claimed = {c.output for c in claims}
    for u in units:
        written = {d for d, c in u.writes.items() if c != 0}
        require(len(written) == 1 and written <= claimed,
                f"layer {number} MLP unit {u.label!r} writes {sorted(map(name, written))}, which no claim covers")
    pieces = 0
    for claim in claims:
        writers = [u for u in units if u.writes.get(claim.output, 0) != 0]
        supports = [set().union(*({d for d, c in f.items() if c != 0} for f in t.variables.values()))
                    for t in claim.terms]
        groups: list[list] = [[] for _ in claim.terms]
        for u in writers:
            read = {d for d, c in u.reads.items() if c != 0}
            homes = [i for i, s in enumerate(supports) if read <= s]
            require(len(homes) == 1, f"layer {number} MLP unit {u.label!r} (writing {name(claim.output)}) reads "
                                     f"{sorted(map(name, read))}: fits {len(homes)} of the claimed terms, not 1")
            groups[homes[0]].append(u)
        for term, group in zip(claim.terms, groups):
            try:
                f = from_units(group, claim.output, term.variables, name)
                for case in term.cases:
                    pieces += _prove_case(f, case)
            except ProofFailure as failure:
                raise ProofFailure(f"layer {number} MLP, {name(claim.output)} "
                                   f"(inputs {', '.join(term.variables)}): {failure}") from None
    _require_params_hold_units(model, number)
    return pieces


def _require_params_hold_units(model: SuperposeModel, number: int) -> None:
    units = model.layers[number - 1].mlp.units
    mlp = model.params[f"layer_{number}"]["mlp"]
    D, M = mlp["W_in"].shape
    require(M >= len(units), f"layer {number}: d_mlp {M} < {len(units)} units")
    W_in, b_in, W_out = np.zeros((D, M)), np.zeros(M), np.zeros((M, D))
    for j, u in enumerate(units):
        for d, c in u.reads.items():
            W_in[d, j] += float(c)
        b_in[j] = float(u.bias)
        for d, c in u.writes.items():
            W_out[j, d] += float(c)
    for label, built, expected in (("W_in", mlp["W_in"], W_in), ("b_in", mlp["b_in"], b_in),
                                   ("W_out", mlp["W_out"], W_out), ("b_out", mlp["b_out"], np.zeros(D))):
        bad = np.argwhere(built != expected)
        where = tuple(int(i) for i in bad[0]) if bad.size else ()
        require(bad.size == 0, f"layer {number} params mlp/{label}{list(where)} is {float(built[where])!r}, "
                               f"but the placed units give {float(expected[where])!r}" if bad.size else "")


# -------------------------------------------------------------------------------- attention


def head_bilinear(model: SuperposeModel, number: int, head: int) -> np.ndarray:
    """``M`` with score(t, u) = [h_t, 1] M [h_u, 1]^T for one head (from the params)."""
    a = model.params[f"layer_{number}"]["attn"]
    AQ = np.vstack([a["W_Q"][head], a["b_Q"][head][None]])
    AK = np.vstack([a["W_K"][head], a["b_K"][head][None]])
    return AQ @ AK.T


def head_ov(model: SuperposeModel, number: int, head: int) -> np.ndarray:
    """``[W_V; b_V] W_O``: what a head writes per unit of attention on a position (from the params)."""
    a = model.params[f"layer_{number}"]["attn"]
    return np.vstack([a["W_V"][head], a["b_V"][head][None]]) @ a["W_O"][head]


def look_back_form(model: SuperposeModel, offset: int) -> dict:
    """The exact score form of a look-back head: beta R_D on (pos_cos[b], pos_sin[b]) pairs."""
    lay, beta = model.layout, rational(model.sharpness)
    form = {}
    for b in range(lay["pos_cos"].size):
        angle = sp.pi * offset / 2 ** b
        c, s = beta * sp.cos(angle), beta * sp.sin(angle)
        cos_b, sin_b = lay.at("pos_cos", b), lay.at("pos_sin", b)
        form[(cos_b, cos_b)], form[(sin_b, cos_b)] = c, s
        form[(cos_b, sin_b)], form[(sin_b, sin_b)] = -s, c
    return form


def slot_copy_ov(model: SuperposeModel, a: int) -> dict:
    """The OV map of the head for slot a: token[w] -> slot[a, w] for every content token w."""
    lay, i = model.layout, model.tasks.slots_read.index(a)
    return {(lay.at("token", w), lay.at("slot", i, w)): 1 for w in range(model.tasks.vocab_size)}


def _slot(model: SuperposeModel, a: int, w: int) -> dict:
    return {model.layout.at("slot", model.tasks.slots_read.index(a), w): 1}


def _dense(shape: tuple, entries: dict) -> np.ndarray:
    out = np.zeros(shape)
    for index, value in entries.items():
        out[index] = float(value)
    return out


def prove_attention(model: SuperposeModel, number: int, heads: Sequence[tuple[str, dict, dict, bool]]) -> float:
    """Check layer ``number``'s heads: ``heads[h] = (what, score form, OV map, irrational?)``; the rest are zero.

    Returns the largest deviation of an irrational score entry from its exact value.
    """
    a = model.params[f"layer_{number}"]["attn"]
    D = model.layout.d_model
    name = lambda i: model.layout.labels[i] if i < D else "1 (bias)"  # noqa: E731
    require(not np.any(a["b_O"]), f"layer {number}: attention output bias b_O is not zero")
    n_heads = a["W_Q"].shape[0]
    for h in range(len(heads), n_heads):
        used = any(np.any(a[p][h]) for p in ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V", "W_O"))
        require(not used, f"layer {number}: head {h} should be unused (all zero) but has non-zero weights")
    worst = 0.0
    beta = model.sharpness
    for h, (what, score, ov, irrational) in enumerate(heads):
        require(h < n_heads, f"layer {number}: needs head {h}, the model has {n_heads}")
        M, expected = head_bilinear(model, number, h), _dense((D + 1, D + 1), score)
        if irrational:
            deviation = float(np.max(np.abs(M - expected)))
            worst = max(worst, deviation)
            ok = deviation <= LOOK_BACK_TOLERANCE * beta
        else:
            ok, deviation = bool(np.array_equal(M, expected)), float(np.max(np.abs(M - expected)))
        if not ok:
            i, j = np.unravel_index(np.argmax(np.abs(M - expected)), M.shape)
            raise ProofFailure(f"layer {number} head {h} ({what}): score entry ({name(i)}, {name(j)}) is "
                               f"{float(M[i, j])!r}, expected {float(expected[i, j])!r}")
        OV, expected_ov = head_ov(model, number, h), _dense((D + 1, D), ov)
        if not np.array_equal(OV, expected_ov):
            i, j = np.argwhere(OV != expected_ov)[0]
            raise ProofFailure(f"layer {number} head {h} ({what}): OV entry ({name(i)} -> {name(j)}) is "
                               f"{float(OV[i, j])!r}, expected {float(expected_ov[i, j])!r}")
    return worst


def _form(model: SuperposeModel, *index) -> dict:
    return {model.layout.at(*index): 1}


def _token(model: SuperposeModel, which: str) -> dict:
    return {model.layout.at("token", {"BOS": model.tasks.bos, "ARROW": model.tasks.arrow}[which]): 1}


def _count_form(model: SuperposeModel) -> dict:
    return {model.layout.at("match_raw", k): 1 for k in range(model.tasks.K)}


def _per_model(models: Any, prove_one: Callable[[SuperposeModel], str], one_token: bool = True) -> str:
    return "; ".join(f"K={m.tasks.K}, d={m.tasks.vocab_size}, s={m.tasks.slots}: {prove_one(m)}"
                     for m in models_to_check(models, one_token))


# ----------------------------------------------------------------------------------- lemmas


@lemma("E embedding and readout",
       "W_E is the one-hot token code, W_pos[t] = (cos, sin)(pi t / 2^b) for b < L (to 1e-14), "
       "nothing else is embedded, and the readout is the out block")
def check_embedding_and_readout(model=None) -> str:
    def prove(m: SuperposeModel) -> str:
        lay, tasks, p = m.layout, m.tasks, m.params
        W_E = _dense(p["embed"]["W_E"].shape, {(v, lay.at("token", v)): 1 for v in range(tasks.n_tokens)})
        require(np.array_equal(p["embed"]["W_E"], W_E), "W_E is not the one-hot code of the token block")
        L = lay["pos_cos"].size
        expected = {}
        for t in range(m.max_len):
            for b in range(L):
                expected[(t, lay.at("pos_cos", b))] = sp.cos(sp.pi * t / 2 ** b)
                expected[(t, lay.at("pos_sin", b))] = sp.sin(sp.pi * t / 2 ** b)
        W_pos = _dense(p["embed"]["W_pos"].shape, expected)
        deviation = float(np.max(np.abs(p["embed"]["W_pos"] - W_pos)))
        require(deviation <= 1e-14, f"W_pos deviates from cos/sin(pi t / 2^b) by {deviation:.3g}")
        require(2 ** L >= m.max_len and (L == 1 or 2 ** (L - 1) < m.max_len),
                f"L = {L} is not the least L >= 1 with 2^L >= T_max = {m.max_len}")
        W_U = _dense(p["unembed"]["W_U"].shape, {(lay.at("out", v), v): 1 for v in range(tasks.vocab_size)})
        require(np.array_equal(p["unembed"]["W_U"], W_U) and not np.any(p["unembed"]["b_U"]),
                "the readout is not exactly the out block")
        return f"W_pos within {deviation:.1e} of exact"
    return _per_model(model, prove, one_token=False)


@lemma("L1 find answers",
       "layer 1: head 0 scores beta*S_L(t-1-u) and copies token[ARROW] into answer_raw; "
       "MLP: is_answer = snap(answer_raw), exactly 0 if answer_raw <= 1/4 and 1 if >= 3/4")
def check_layer1(model=None) -> str:
    def prove(m: SuperposeModel) -> str:
        lay = m.layout
        deviation = prove_attention(m, 1, [("look back 1", look_back_form(m, 1),
                                            {(lay.at("token", m.tasks.arrow), lay.at("answer_raw")): 1}, True)])
        claims = [OutputClaim(lay.at("is_answer"), (Term({"x": _form(m, "answer_raw")}, _snap_cases("x")),))]
        pieces = prove_mlp(m, 1, claims)
        return f"score entries within {deviation:.1e}, {pieces} pieces"
    return _per_model(model, prove)


def _conjunction_terms(m: SuperposeModel, task, gate: dict, gate_name: str, lead: dict | None) -> list:
    """The units of one task in layer 2 (``lead`` None: slots, answer token, is_answer) or 7 (lead mix).

    For every input combination w: a term in the variables (lead,) f_1..f_r (the slots
    read), and the gate(s). Proved: equal to the product when at most one input is soft
    (the rest bits), and 0 whenever a gate is 0 (G3 gives the soft-inputs bound).
    """
    r, d = task.arity, m.tasks.vocab_size
    terms = []
    for w in itertools.product(range(d), repeat=r):
        variables = {} if lead is None else {"p": lead}
        variables.update({f"f{j}": _slot(m, a, w_j) for j, (a, w_j) in enumerate(zip(task.slots, w))})
        if lead is None:
            variables["t"] = _form(m, "token", task(dict(zip(task.slots, w))))
        variables[gate_name] = gate
        names = list(variables)
        product = sp.Mul(*(symbol(n) for n in names))
        soft = [n for n in names if n not in ("t", gate_name)]
        cases = tuple(Case(f"= {'*'.join(names)} with {v} soft", {n: interval(0, 1) if n == v else BIT for n in names},
                           equals=product) for v in soft)
        cases += (Case(f"0 where {gate_name} = 0", {n: (0,) if n == gate_name else interval(0, 1) for n in names},
                       inactive=True),)
        terms.append(Term(variables, cases))
    return terms


@lemma("L2 check examples",
       "layer 2: the head for slot a looks back s+1-a and copies the one-hot token into slot[a]; MLP: "
       "match_raw[k] += relu(slot[a_1,w_1] + .. + slot[a_r,w_r] + token[G_k(w)] + is_answer - (r+1)) = the product "
       "when at most one slot is soft, 0 off answers; slot[a,w] -= slot[a,w] (slot >= 0)")
def check_layer2(model=None) -> str:
    def prove(m: SuperposeModel) -> str:
        lay, tasks = m.layout, m.tasks
        heads = [(f"slot {a} looks back {tasks.slots + 1 - a}", look_back_form(m, tasks.slots + 1 - a),
                  slot_copy_ov(m, a), True) for a in tasks.slots_read]
        deviation = prove_attention(m, 2, heads)
        claims = [OutputClaim(lay.at("match_raw", k),
                              tuple(_conjunction_terms(m, task, _form(m, "is_answer"), "a", None)))
                  for k, task in enumerate(tasks.tasks)]
        f = symbol("f")
        erase = (Case("= -f for f >= 0", {"f": interval(0, None)}, equals=-f),)
        claims += [OutputClaim(lay.at("slot", i, w), (Term({"f": _slot(m, a, w)}, erase),))
                   for i, a in enumerate(tasks.slots_read) for w in range(tasks.vocab_size)]
        pieces = prove_mlp(m, 2, claims)
        return f"score entries within {deviation:.1e}, {pieces} pieces"
    return _per_model(model, prove)


@lemma("L3 snap and count",
       "layer 3 (no heads): match[k] = snap(match_raw[k]); where |sum_k match_raw - C| <= 1/4 for an integer "
       "C in 0..K: count_is[j] = [C == j] and valid = [C >= 1]")
def check_layer3(model=None) -> str:
    def prove(m: SuperposeModel) -> str:
        lay, K = m.layout, m.tasks.K
        prove_attention(m, 3, [])
        windows = lambda value: tuple(  # noqa: E731
            Case(f"on the window of C = {C}", {"c": interval(C - QUARTER, C + QUARTER)}, equals=value(C))
            for C in range(K + 1))
        claims = [OutputClaim(lay.at("match", k), (Term({"x": _form(m, "match_raw", k)}, _snap_cases("x")),))
                  for k in range(K)]
        claims += [OutputClaim(lay.at("count_is", j - 1),
                               (Term({"c": _count_form(m)}, windows(lambda C, j=j: int(C == j))),))
                   for j in range(1, K + 1)]
        claims += [OutputClaim(lay.at("valid"), (Term({"c": _count_form(m)}, windows(lambda C: int(C >= 1))),))]
        return f"{prove_mlp(m, 3, claims)} pieces"
    return _per_model(model, prove)


@lemma("L4 cast votes",
       "layer 4 (no heads): vote[k] = match[k]/C when count_is is the indicator of C in 1..K, "
       "and 0 when count_is = 0 (noise), for bits match[k]")
def check_layer4(model=None) -> str:
    def prove(m: SuperposeModel) -> str:
        lay, K = m.layout, m.tasks.K
        prove_attention(m, 4, [])
        counts = [f"count_is_{j}" for j in range(1, K + 1)]
        # match is a bit and count_is is the indicator of C (all zero for C = 0)
        assignments = tuple({"match": bit, **{name: int(j == C) for j, name in enumerate(counts, start=1)}}
                            for C in range(K + 1) for bit in BIT)

        def vote(point: dict):
            C = [j for j, name in enumerate(counts, start=1) if point[name] == 1]
            return sp.Rational(point["match"], C[0]) if C else sp.Integer(0)

        claims = [OutputClaim(lay.at("vote", k), (Term(
            {"match": _form(m, "match", k), **{name: _form(m, "count_is", j - 1) for j, name in enumerate(counts, 1)}},
            (Case("= match / C", points=assignments, equals=vote),)),)) for k in range(K)]
        return f"{prove_mlp(m, 4, claims)} points"
    return _per_model(model, prove)


@lemma("L5 tally mixture",
       "layer 5 (no MLP): head 0 scores 2*beta*valid(u) + beta*[u = BOS] (a query bias times the key) "
       "and averages vote[k] + [BOS]/K into mix[k]")
def check_layer5(model=None) -> str:
    def prove(m: SuperposeModel) -> str:
        lay, K, beta = m.layout, m.tasks.K, rational(m.sharpness)
        bias = lay.d_model
        score = {(bias, lay.at("valid")): 2 * beta, (bias, lay.at("token", m.tasks.bos)): beta}
        ov = {(lay.at("vote", k), lay.at("mix", k)): 1 for k in range(K)}
        ov.update({(lay.at("token", m.tasks.bos), lay.at("mix", k)): Fraction(1, K) for k in range(K)})
        prove_attention(m, 5, [("tally", score, ov, False)])
        prove_mlp(m, 5, [])
        return "exact"
    return _per_model(model, prove)


@lemma("L6 fetch query inputs",
       "layer 6: the head for slot a looks back s-a and copies the one-hot token into slot[a]; "
       "MLP: slot[a,w] += snap(slot[a,w]) - slot[a,w] for slot >= 0, so the block is snapped in place")
def check_layer6(model=None) -> str:
    def prove(m: SuperposeModel) -> str:
        lay, tasks = m.layout, m.tasks
        heads = [(f"slot {a} looks back {tasks.slots - a}", look_back_form(m, tasks.slots - a),
                  slot_copy_ov(m, a), True) for a in tasks.slots_read]
        deviation = prove_attention(m, 6, heads)
        x = symbol("x")
        in_place = (Case("= -x on [0, 1/4]", {"x": interval(0, QUARTER)}, equals=-x),
                    Case("= 2x - 1/2 - x on [1/4, 3/4]", {"x": interval(QUARTER, THREE_QUARTERS)},
                         equals=x - Fraction(1, 2)),
                    Case("= 1 - x on [3/4, oo)", {"x": interval(THREE_QUARTERS, None)}, equals=1 - x))
        claims = [OutputClaim(lay.at("slot", i, w), (Term({"x": _slot(m, a, w)}, in_place),))
                  for i, a in enumerate(tasks.slots_read) for w in range(tasks.vocab_size)]
        return f"score entries within {deviation:.1e}, {prove_mlp(m, 6, claims)} pieces"
    return _per_model(model, prove)


@lemma("L7 weight and sum",
       "layer 7 (no heads): out[G_k(w)] += relu(mix[k] + slot[a_1,w_1] + .. + slot[a_r,w_r] + token[ARROW] - (r+1)) "
       "= mix[k] * prod slot * [ARROW] for mix in [0,1] and bits; 0 where token[ARROW] = 0 and all lie in [0,1]")
def check_layer7(model=None) -> str:
    def prove(m: SuperposeModel) -> str:
        lay, tasks = m.layout, m.tasks
        prove_attention(m, 7, [])
        by_output: dict[int, list] = {}
        for k, task in enumerate(tasks.tasks):
            terms = _conjunction_terms(m, task, _token(m, "ARROW"), "r", _form(m, "mix", k))
            for w, term in zip(itertools.product(range(tasks.vocab_size), repeat=task.arity), terms):
                by_output.setdefault(lay.at("out", task(dict(zip(task.slots, w)))), []).append(term)
        claims = [OutputClaim(output, tuple(terms)) for output, terms in sorted(by_output.items())]
        return f"{prove_mlp(m, 7, claims)} pieces and vertices"
    return _per_model(model, prove)


def dimension_models() -> list[SuperposeModel]:
    """The proof models and builds over a spread of (d, s, K, r, M), each layer's width the largest somewhere."""
    from superpose.construct.build import build
    from superpose.demo import digit_tasks
    from superpose.setting import Task, TaskSet

    def tasks(d: int, s: int, K: int, r: int) -> TaskSet:
        def table(k: int, arity: int):
            return (np.indices((d,) * arity).sum(axis=0) + k) % d
        return TaskSet(d, s, [Task(f"t{k}", [(k + j) % s for j in range(min(r, s))], table(k, min(r, s)))
                              for k in range(K)])

    grid = [(1, 1, 1, 1, 0), (2, 3, 4, 1, 5), (7, 2, 2, 1, 10), (4, 2, 5, 2, 1), (1, 1, 8, 1, 2),
            (3, 4, 6, 3, 30), (5, 3, 2, 2, 3)]
    return proof_models() + [build(tasks(d, s, K, r), max_examples=M) for d, s, K, r, M in grid] \
        + [build(digit_tasks(), max_examples=64)]


@lemma("D dimensions",
       "7 layers, S = (distinct slots read) heads, of which 1, S, 0, 0, 1, S, 0 are used; "
       "d_model = 2d + Sd + 5K + 2L + 5 with L = max(1, ceil(log2 T_max)); d_head = max(2L, d, K); "
       "MLP widths 2, E + Sd, 6K+2, K^2, 0, 3Sd, E with E = sum_k d^{r_k}; d_mlp = the largest; "
       "each as its layer's spec states")
def check_dimensions(model=None) -> str:
    from superpose.construct.build import LAYER_SPECS

    d_, S_, K_, L_ = sp.symbols("d S K L", positive=True, integer=True)
    formula = 2 * d_ + S_ * d_ + 5 * K_ + 2 * L_ + 5
    # the residual table of the theorem, block by block
    blocks = (d_ + 2) + L_ + L_ + 1 + 1 + S_ * d_ + K_ + K_ + K_ + 1 + K_ + K_ + d_
    require(sp.expand(blocks - formula) == 0, "the block sizes do not sum to the d_model formula")
    # the theorem's widths and heads, symbolically equal to the formulas each layer's spec states
    E_ = sp.Symbol("E", positive=True, integer=True)
    theorem_widths = [2, E_ + S_ * d_, 6 * K_ + 2, K_ ** 2, 0, 3 * S_ * d_, E_]
    theorem_heads = [1, S_, 0, 0, 1, S_, 0]
    names = {"d": d_, "S": S_, "K": K_, "E": E_, "A": 1, "C": 1}   # the theorem states one-token answers
    for spec, width, heads in zip(LAYER_SPECS, theorem_widths, theorem_heads):
        stated_width = eval(spec.mlp_width, {"__builtins__": {}, "min": min}, names)   # noqa: S307 -- specs'
        stated_heads = eval(spec.heads, {"__builtins__": {}, "min": min}, names)       # noqa: S307
        require(sp.expand(stated_width - width) == 0 and sp.expand(stated_heads - heads) == 0,
                f"layer {spec.number}'s spec states {spec.heads} heads and {spec.mlp_width} units; "
                f"the theorem {heads} and {width}")
    models = dimension_models() if model is None else models_to_check(model)
    for m in models:
        c, tasks = m.config, m.tasks
        d, K, s, S = tasks.vocab_size, tasks.K, tasks.slots, len(tasks.slots_read)
        E = sum(d ** t.arity for t in tasks.tasks)
        T_max = (m.max_examples + 1) * (s + 2)
        L = max(1, math.ceil(math.log2(T_max)))
        where = f"d={d}, s={s}, S={S}, K={K}, M={m.max_examples}"
        require(c.n_ctx == T_max and m.layout["pos_cos"].size == L, f"{where}: context or L is not as stated")
        require(c.n_layers == 7 and c.n_heads == S, f"{where}: {c.n_layers} layers, {c.n_heads} heads")
        sizes = {b.name: b.size for b in m.layout.blocks.values()}
        require(m.layout.d_model == sum(sizes.values()) == int(formula.subs({d_: d, S_: S, K_: K, L_: L})),
                f"{where}: d_model {m.layout.d_model} != 2d + Sd + 5K + 2L + 5")
        require(c.d_model == m.layout.d_model and c.d_head == max(2 * L, d, K),
                f"{where}: d_head {c.d_head} != max(2L, d, K) = {max(2 * L, d, K)}")
        used = []
        for n in range(1, 8):
            a = m.params[f"layer_{n}"]["attn"]
            used.append(sum(any(np.any(a[p][h]) for p in ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V", "W_O"))
                            for h in range(c.n_heads)))
        stated = [2, E + S * d, 6 * K + 2, K * K, 0, 3 * S * d, E]
        require(used == [1, S, 0, 0, 1, S, 0] == [spec.n_heads(tasks) for spec in LAYER_SPECS],
                f"{where}: heads used per layer {used}")
        widths = [len(layer.mlp.units) for layer in m.layers]
        require(widths == stated == [spec.n_units(tasks) for spec in LAYER_SPECS], f"{where}: MLP widths {widths}")
        for n in range(1, 8):
            W_in = m.params[f"layer_{n}"]["mlp"]["W_in"]
            require(not np.any(W_in[:, widths[n - 1]:]), f"{where}: layer {n} uses more than {widths[n - 1]} units")
        require(c.d_mlp == max(stated), f"{where}: d_mlp {c.d_mlp}")
    return f"{len(models)} built models match every formula"
