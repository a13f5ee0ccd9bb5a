r"""Lemmas S1-S3: how much softmax attention leaks, and where the leak ends up.

S1 (leakage). If one position scores ``s* >= S + g`` and ``N`` others score ``<= S``,
the attention weight on the others is ``E / (e^{s*} + E) <= E / e^{s*} <= N e^{-g}``
(``E`` = the sum of their exponentials). With values in [0, 1] the head's output is
within that weight of the intended value.

S2 (hard-attention limit). With scores ``beta c_u`` and ``A`` the set of maximisers
of ``c`` (``a = |A|``, every other ``c_u`` below by ``g_u > 0``), the weight of
``u in A`` is ``1 / (a + sum_{w not in A} e^{-beta g_w})``, which tends to ``1/a`` as
``beta -> oo``, and the weight of ``u not in A`` is at most ``e^{-beta g_u} / a -> 0``.

S3 (tally leak). Layer 5 scores ``lv beta`` at the ``N`` valid answers before ``t``,
``lb beta`` at BOS and 0 at the ``R <= T`` other positions, where the values carry
``vote = 0`` (lemmas L2-L5). Let ``Z = N e^{lv beta} + e^{lb beta} + R`` and ``a, b, c``
the total weight on valid answers, BOS and the rest; ``V_k`` the votes for k (``sum_k
V_k = N``) and ``p_k = V_k / N``. Then ``mix_k - p_k = -(1 - a) p_k + b / K`` and
``a + b + c = 1``, so ``sum_k |mix_k - p_k| <= (1 - a) + b = 2b + c <= 2 e^{-(lv-lb) beta}
+ T e^{-lv beta}``. With no valid answer (``N = 0``) ``mix_k = (e^{lb beta}/K) / Z`` and
``sum_k |mix_k - 1/K| = R / (e^{lb beta} + R) <= T e^{-lb beta}``. The built layer 5 has
``lv = 2, lb = 1``: the leaks ``2e^{-beta} + T e^{-2 beta}`` and ``T e^{-beta}`` that
``construct.bound`` uses.
"""

from __future__ import annotations

from fractions import Fraction

import sympy as sp

from .layer_lemmas import head_bilinear, models_to_check
from .result import lemma, require


def nonnegative(expr: sp.Expr) -> bool:
    """True when sympy's assumptions show ``expr >= 0`` after putting it over one denominator."""
    numerator, denominator = sp.fraction(sp.together(expr))
    return bool(sp.expand(numerator).is_nonnegative) and bool(sp.expand(denominator).is_positive)


@lemma("S1 softmax leakage",
       "one score >= S + g and N others <= S: the softmax weight on the others is <= N e^{-g}")
def check_softmax_leakage() -> str:
    X, E = sp.symbols("X E", positive=True)          # X = e^{s*}, E = sum of the others' exponentials
    S, g, N = sp.Symbol("S", real=True), sp.Symbol("g", positive=True), sp.Symbol("N", positive=True)
    slack_e, slack_x = sp.symbols("e1 x1", nonnegative=True)
    elsewhere = E / (X + E)
    require(nonnegative(E / X - elsewhere), "E/(X+E) <= E/X not shown")
    # E = N e^S - e1 <= N e^S and X = e^{S+g} + x1 >= e^{S+g}:
    bound = N * sp.exp(S) / sp.exp(S + g)
    require(nonnegative(bound - (N * sp.exp(S) - slack_e) / (sp.exp(S + g) + slack_x)),
            "E/X <= N e^S / e^{S+g} not shown")
    require(sp.simplify(bound - N * sp.exp(-g)) == 0, "N e^S / e^{S+g} != N e^{-g}")
    return "E/(X+E) <= E/X <= N e^S/e^(S+g) = N e^-g"


@lemma("S2 hard-attention limit",
       "as beta -> oo, softmax(beta c) tends to the uniform distribution on the maximisers of c")
def check_hard_attention_limit() -> str:
    beta, a, g, c = sp.Symbol("beta", positive=True), sp.Symbol("a", positive=True), \
        sp.Symbol("g", positive=True), sp.Symbol("c", real=True)
    R = sp.Symbol("R", nonnegative=True)
    # weight of a maximiser with a - 1 other maximisers and one position g below:
    weight = sp.exp(beta * c) / (a * sp.exp(beta * c) + sp.exp(beta * (c - g)))
    require(sp.simplify(weight - 1 / (a + sp.exp(-beta * g))) == 0, "weight of a maximiser not 1/(a + e^{-beta g})")
    # squeeze: 1/(a + R e^{-beta g_min}) <= weight <= 1/a, both ends -> 1/a
    require(sp.limit(1 / (a + R * sp.exp(-beta * g)), beta, sp.oo) == 1 / a, "lower squeeze does not tend to 1/a")
    # a non-maximiser g below: weight <= e^{-beta g}/a -> 0
    require(sp.limit(sp.exp(-beta * g) / a, beta, sp.oo) == 0, "non-maximiser weight does not tend to 0")
    return "maximiser weight = 1/(a + sum e^(-beta g)) -> 1/a; others <= e^(-beta g)/a -> 0"


def tally_levels(model) -> tuple[Fraction, Fraction]:
    """(lv, lb): layer 5's score at a valid answer and at BOS, in units of beta, read from the params."""
    lay, beta = model.layout, model.sharpness
    M = head_bilinear(model, 5, 0)
    levels = []
    for column in (lay.at("valid"), lay.at("token", model.tasks.bos)):
        level = Fraction(float(M[lay.d_model, column]) / beta).limit_denominator(1000)
        require(float(level) * beta == M[lay.d_model, column], f"layer 5 score level {M[lay.d_model, column]} "
                                                              f"is not a small rational multiple of beta")
        levels.append(level)
    return levels[0], levels[1]


@lemma("S3 tally leak",
       "layer 5 (scores 2beta at valid answers, beta at BOS): sum_k |mix_k - p_k| <= 2e^{-beta} + T e^{-2beta} "
       "after a consistent example, <= T e^{-beta} (prior 1/K) before any")
def check_tally_leak(model=None) -> str:
    beta = sp.Symbol("beta", positive=True)
    T, R, V, K = sp.symbols("T R V_k K", positive=True)
    n, r = sp.symbols("n r", nonnegative=True)
    found = set()
    for m in models_to_check(model):
        found.add(tally_levels(m))
    require(len(found) == 1, f"the models' layer 5 score levels differ: {sorted(found)}")
    lv, lb = (sp.Rational(x.numerator, x.denominator) for x in found.pop())
    require(lv > lb > 0, f"layer 5 needs valid level > BOS level > 0, got {lv}, {lb}")
    E2, E1 = sp.exp(lv * beta), sp.exp(lb * beta)
    N = 1 + n                                   # some consistent example: N >= 1
    Z = N * E2 + E1 + R
    a, b, c = N * E2 / Z, E1 / Z, R / Z
    mix, p = (V * E2 + E1 / K) / Z, V / N
    require(sp.simplify(mix - p - (-(1 - a) * p + b / K)) == 0, "mix_k - p_k != -(1-a) p_k + b/K")
    require(sp.simplify(a + b + c - 1) == 0, "a + b + c != 1")
    require(nonnegative(1 - a), "1 - a >= 0 not shown")
    # triangle inequality with p_k >= 0, sum_k p_k = 1: sum_k |mix_k - p_k| <= (1 - a) + K (b / K) = 2b + c
    require(sp.simplify((1 - a) + b - (2 * b + c)) == 0, "(1-a) + b != 2b + c")
    leak_b, leak_c = sp.exp(-(lv - lb) * beta), (R + r) * sp.exp(-lv * beta)      # T = R + r >= R
    require(nonnegative(leak_b - b), "b <= e^{-(lv-lb) beta} not shown")
    require(nonnegative(leak_c - c), "c <= T e^{-lv beta} not shown")
    some = 2 * sp.exp(-(lv - lb) * beta) + T * sp.exp(-lv * beta)
    require(sp.simplify(some - (2 * sp.exp(-beta) + T * sp.exp(-2 * beta))) == 0,
            f"the leak after a consistent example is {some}, not 2e^-beta + T e^-2beta as construct.bound assumes")
    # no consistent example: BOS and R others
    Z0 = E1 + R
    mix0 = (E1 / K) / Z0
    require(nonnegative(1 / K - mix0), "mix_k <= 1/K not shown")
    total0 = sp.simplify(K * (1 / K - mix0))
    require(sp.simplify(total0 - R / (E1 + R)) == 0, f"sum_k |mix_k - 1/K| = {total0}, not R/(e^(lb beta) + R)")
    none = T * sp.exp(-lb * beta)
    require(nonnegative(none.subs(T, R + r) - total0), "R/(e^(lb beta) + R) <= T e^(-lb beta) not shown")
    require(sp.simplify(none - T * sp.exp(-beta)) == 0,
            f"the leak before any consistent example is {none}, not T e^-beta as construct.bound assumes")
    return f"levels (valid, BOS) = ({lv}, {lb}) beta; some: 2b + c <= {some}; none: R/(e^(lb beta)+R) <= {none}"
