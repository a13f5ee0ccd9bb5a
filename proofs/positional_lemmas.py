r"""Lemmas P1-P2: the positional code separates the intended position by a score gap of 2 beta.

``S_L(delta) = sum_{b<L} cos(pi delta / 2^b)``.

P1 (gap lemma). ``S_L(0) = L`` and ``S_L(delta) <= L - 2`` for every integer
``0 < |delta| < 2^L``. Proof: write ``|delta| = 2^v o`` with ``o`` odd. Since
``2^v <= |delta| < 2^L``, ``v < L``, so the sum has the term ``b = v``, which is
``cos(pi o) = -1``; every other term is at most 1. Hence ``S_L(delta) <= (L-1) - 1``.
(The bound is attained at ``delta = 2^{L-1}``.)

P2 (look-back score). With ``R_D`` the block rotation ``[[cos wD, -sin wD], [sin wD,
cos wD]]`` per frequency ``w = pi / 2^b`` (as a bilinear form: query dimension first),
``pos(t)^T (beta R_D) pos(u) = beta S_L(t - D - u)``. Every look-back head of the built
model has this form (lemmas L1, L2, L6), and ``max(D, T_max - 1) < 2^L``, so for
``0 <= u <= t < T_max`` the offset ``delta = t - D - u`` satisfies ``|delta| < 2^L``:
the intended position ``u = t - D`` (when ``t >= D``) out-scores every other one by
at least ``2 beta``.
"""

from __future__ import annotations

import sympy as sp
from sympy.calculus.util import maximum

from superpose.construct.positional import n_frequencies

from .layer_lemmas import models_to_check
from .result import lemma, require


def gap_sum(delta, L) -> sp.Expr:
    """``S_L(delta)`` as an exact sympy expression (``L`` a concrete integer)."""
    return sp.Add(*(sp.cos(sp.pi * delta / 2 ** b) for b in range(L)))


@lemma("P1 positional gap",
       "S_L(delta) = sum_{b<L} cos(pi delta/2^b) is L at delta = 0 and <= L-2 for every integer 0 < |delta| < 2^L")
def check_gap_lemma(exhaustive_up_to: int = 10) -> str:
    b, L = sp.Symbol("b", integer=True, nonnegative=True), sp.Symbol("L", integer=True, positive=True)
    n, v = sp.Symbol("n", integer=True), sp.Symbol("v", integer=True, nonnegative=True)
    x = sp.Symbol("x", real=True)
    # S_L(0) = L for every L.
    require(sp.simplify(sp.summation(sp.cos(sp.pi * 0 / 2 ** b), (b, 0, L - 1)) - L) == 0, "S_L(0) != L")
    # The term b = v of delta = 2^v (2n + 1) is cos(pi * odd) = -1, for all integers n, v >= 0.
    term = sp.cos(sp.pi * (2 ** v * (2 * n + 1)) / 2 ** v)
    require(sp.simplify(term) == -1, f"the b = v2(delta) term simplifies to {sp.simplify(term)}, not -1")
    # cos is even (negative delta reduce to |delta|) and at most 1.
    require(sp.cos(-x) == sp.cos(x), "cos is not recognised as even")
    require(maximum(sp.cos(x), x) == 1, "max cos != 1")
    # Sum of (L - 1) terms <= 1 and one term = -1.
    require(sp.expand((L - 1) * 1 + (-1) - (L - 2)) == 0, "(L-1) - 1 != L - 2")
    # v < L follows from 2^v <= |delta| < 2^L; confirmed, with the -1 term, for every delta when L is small,
    # and the bound L - 2 is attained at delta = 2^(L-1).
    checked = 0
    for size in range(1, exhaustive_up_to + 1):
        for delta in range(1, 2 ** size):
            valuation = sp.multiplicity(2, delta)
            require(valuation < size, f"v2({delta}) = {valuation} >= L = {size}")
            require(sp.cos(sp.pi * sp.Integer(delta) / 2 ** valuation) == -1,
                    f"cos(pi {delta} / 2^{valuation}) != -1")
            checked += 1
        require(gap_sum(0, size) == size, f"S_{size}(0) != {size}")
        require(sp.simplify(gap_sum(2 ** (size - 1), size) - (size - 2)) == 0, f"S_{size}(2^{size - 1}) != {size - 2}")
    return (f"symbolic: S_L(0) = L, cos(pi 2^v (2n+1) / 2^v) = -1, cos <= 1; exhaustive: the -1 term exists "
            f"for all {checked} deltas with L <= {exhaustive_up_to}; tight at delta = 2^(L-1)")


@lemma("P2 look-back score",
       "pos(t)^T (beta R_D) pos(u) = beta S_L(t-D-u) for all t, u, D; every look-back offset D and "
       "context T_max of the built models satisfy max(D, T_max - 1) < 2^L")
def check_look_back_score(model=None) -> str:
    w, t, u, D, beta = sp.symbols("w t u D beta", real=True)
    c, s = sp.cos(w * D), sp.sin(w * D)
    query = (sp.cos(w * t), sp.sin(w * t))   # pos(t) at one frequency: (cos, sin)
    key = (sp.cos(w * u), sp.sin(w * u))
    # bilinear form of beta R_D: rows are query (cos, sin), columns key (cos, sin); as built by add_look_back
    rotation = ((c, -s), (s, c))
    score = beta * sum(query[i] * rotation[i][j] * key[j] for i in range(2) for j in range(2))
    target = beta * sp.cos(sp.expand(w * (t - D - u)))
    require(sp.expand(sp.expand_trig(target) - sp.expand_trig(score)) == 0,
            "the rotation form does not score cos(w (t - D - u))")
    facts = []
    for m in models_to_check(model):
        L, s_, T = m.layout["pos_cos"].size, m.tasks.slots, m.max_len
        require(L == n_frequencies(T), f"L = {L} but n_frequencies({T}) = {n_frequencies(T)}")
        offsets = {1} | {s_ + 1 - a for a in m.tasks.slots_read} | {s_ - a for a in m.tasks.slots_read}
        require(max(max(offsets), T - 1) < 2 ** L, f"offsets {sorted(offsets)} or T_max - 1 = {T - 1} reach 2^L = {2 ** L}")
        facts.append(f"offsets {sorted(offsets)}, T_max = {T} <= 2^{L}")
    return "symbolic rotation identity; " + "; ".join(facts)
