r"""Lemmas B1-B2: the error bound that ``construct.bound.error_bound`` reports is the one derived.

B1 (leak, exact arithmetic with soft attention). Composing the lemmas: every look-back
head leaks at most ``lpos = (T-1) e^{-2 beta}`` (P1: gap ``2 beta``; S1 with ``N = T-1``
others), so ``answer_raw`` and every ``slot`` row are within ``lpos`` of their exact
values, ``match_raw[k]`` within ``r lpos`` (tasks read at most r slots; L2 and G3) and
``sum_k match_raw`` within ``K r lpos``. Under hypothesis ``H0: K r (T-1) e^{-2 beta} <= 1/4``
every snap and integer indicator is in its flat region (G1, G2, L1, L3, L6) and all of
``is_answer, match, count_is, valid, vote`` and the snapped query slots are exact. The
only inexact value left is ``mix`` (S3), and
``out_v - o_v = sum_k (mix_k - p_k) [G_k(x) = v]`` (L7), so

    |out_v - o_v| <= leak = max(2 e^{-beta} + T e^{-2 beta}, T e^{-beta}).

The check compares ``error_bound(K, T, L, beta).leak`` with this expression (and with
``inf`` where H0 fails) on a grid of (K, T, beta).

B2 (the whole bound). The rounding allowance is derived in the docstring of
``construct/bound.py`` under its floating-point model (F1-F3); that derivation is not
machine-checked here. What is checked: (a) sympy, with the unit roundoff ``u`` a
symbol, transcribes the docstring's formulas, and at ``u = 0`` they reduce exactly to
H0 and to B1's leak; (b) at ``u = 2^-24`` and ``2^-53`` the transcription, evaluated
with 40 digits, equals ``error_bound(...).total``, ``.rounding = total - leak``,
``.snap_input_error = h`` and ``.holds = (h <= 1/4)`` on a grid.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable

import sympy as sp

from superpose.construct import bound as construct_bound
from superpose.construct.positional import n_frequencies

from .relu_cases import rational
from .result import lemma, require

GRID_K = (1, 2, 3, 8)
GRID_T = (2, 16, 300, 5000)
GRID_BETA = (2.0, 4.0, 7.0, 12.5, 50.0)
GRID_ARITY_VOCAB = ((1, 1), (3, 4))  # (r, d): one-slot tasks, and three-slot tasks over 4 tokens


def leak_expression(K, T, beta, r=1) -> tuple[sp.Expr, sp.Expr]:
    """(H0's left side ``K r (T-1) e^{-2 beta}``, the leak ``max(2e^-beta + T e^-2beta, T e^-beta)``)."""
    lpos = (T - 1) * sp.exp(-2 * beta)
    return K * r * lpos, sp.Max(2 * sp.exp(-beta) + T * sp.exp(-2 * beta), T * sp.exp(-beta))


def _close(got: float, want: sp.Expr, rel: float) -> bool:
    want = float(want)
    return abs(got - want) <= rel * abs(want)


@lemma("B1 leak bound",
       "under K r (T-1) e^{-2beta} <= 1/4 (r: most slots a task reads) the exact-arithmetic error is <= max(2e^{-beta} + Te^{-2beta}, Te^{-beta}), "
       "and error_bound(...).leak is exactly this (inf when the hypothesis fails)")
def check_error_bound_leak(error_bound: Callable = construct_bound.error_bound) -> str:
    holds = fails = 0
    for K in GRID_K:
        for T in GRID_T:
            for beta in GRID_BETA:
                for r, d in GRID_ARITY_VOCAB:
                    h0, leak = leak_expression(K, T, rational(beta), r)
                    got = error_bound(K, T, n_frequencies(T), beta, "float64", arity=r, vocab_size=d).leak
                    where = f"K={K}, T={T}, beta={beta}, r={r}"
                    if bool(h0 <= sp.Rational(1, 4)):
                        require(_close(got, leak.evalf(40), 1e-12), f"{where}: leak {got!r}, derived {leak.evalf(17)}")
                        holds += 1
                    else:
                        require(got == math.inf, f"{where}: H0 fails but leak = {got!r}")
                        fails += 1
    return f"{holds} grid points match the derived leak, {fails} correctly report inf"


def docstring_bound(K, T, L, beta, u, r=1, d=1) -> dict:
    """The formulas of ``construct/bound.py``'s docstring, transcribed (``u`` may be a symbol)."""
    g = lambda n: n * u / (1 - n * u)  # noqa: E731
    es = 2 * L * beta * (g(2 * L) + 36 * u)
    lpos = (T - 1) * sp.exp(-2 * beta + 2 * es) * (1 + 4 * u)
    e_match = r * (lpos + 3 * g(T)) + (2 * r + 6) * g(r + 3) + 2 * g(r * d + 2)
    h = K * e_match + (8 * K + 8) * g(K + 4)
    e_snap = 10 * g(3)
    e_ind = 24 * (K + 1) * g(K + 4)
    e_valid = (8 * K + 6) * g(K + 2)
    e_vote = (1 + sp.log(K)) * (e_snap + e_ind + 4 * g(3)) + 2 * g(K)
    ek = (1 + e_valid) * (1 + u) - 1
    w = sp.exp(4 * beta * ek * (1 + u)) * (1 + 4 * u) - 1
    lam1 = sp.exp(-beta * (1 - 2 * ek)) * (1 + 4 * u)
    lam2 = sp.exp(-2 * beta * (1 - ek)) * (1 + 4 * u)
    lam0 = sp.exp(-beta) * (1 + 4 * u)
    denominator = 1 - w - g(T)
    m1 = (2 * w + 3 * g(T) + K * e_vote + 2 * lam1 + T * lam2) * (1 + 4 * u) / denominator
    m0 = (T * lam0 + 3 * u + 2 * g(T)) * (1 + 4 * u)
    total = sp.Max(m1, m0) + K * (r * e_snap + (2 * r + 4) * g(r + 3)) + 2 * g(K)
    return {"h": h, "denominator": denominator, "total": total}


@lemma("B2 bound formula",
       "error_bound(K, T, L, beta, dtype, r, d) computes the formula stated in construct/bound.py's docstring, "
       "which at u = 0 reduces exactly to hypothesis H0 and the leak of B1")
def check_error_bound_formula(error_bound: Callable = construct_bound.error_bound) -> str:
    K, T, L, beta = sp.symbols("K T L beta", positive=True)
    u = sp.Symbol("u", nonnegative=True)
    r, d = sp.symbols("r d", positive=True, integer=True)
    symbolic = docstring_bound(K, T, L, beta, u, r, d)
    h0, leak = leak_expression(K, T, beta, r)
    require(sp.simplify(symbolic["h"].subs(u, 0) - h0) == 0, "at u = 0, h is not K r (T-1) e^{-2 beta}")
    require(sp.simplify(symbolic["denominator"].subs(u, 0) - 1) == 0, "at u = 0 the denominator is not 1")
    at_zero = sp.simplify(symbolic["total"].subs(u, 0))
    require(sp.simplify(at_zero - leak) == 0, f"at u = 0 the total is {at_zero}, not the leak {leak}")
    compared = 0
    for dtype, unit in (("float32", sp.Rational(1, 2 ** 24)), ("float64", sp.Rational(1, 2 ** 53))):
        for k, t, b, (r, d) in itertools.product(GRID_K, GRID_T, GRID_BETA, GRID_ARITY_VOCAB):
            length = n_frequencies(t)
            exact = docstring_bound(k, t, length, rational(b), unit, r, d)
            got = error_bound(k, t, length, b, dtype, arity=r, vocab_size=d)
            h = exact["h"].evalf(40)
            holds = bool(h <= sp.Rational(1, 4)) and bool(exact["denominator"].evalf(40) > 0)
            where = f"{dtype}, K={k}, T={t}, beta={b}, r={r}, d={d}"
            require(_close(got.snap_input_error, h, 1e-9), f"{where}: h = {got.snap_input_error!r}, "
                                                             f"formula {h.evalf(17)}")
            require(got.holds == holds, f"{where}: holds = {got.holds}, formula says {holds}")
            if not holds:
                require(got.total == math.inf, f"{where}: H fails but total = {got.total!r}")
                continue
            total = exact["total"].evalf(40)
            require(_close(got.total, total, 1e-12), f"{where}: total {got.total!r}, formula {total.evalf(17)}")
            require(abs(got.rounding - (got.total - got.leak)) <= 1e-12 * got.total,
                    f"{where}: rounding != total - leak")
            compared += 1
    return f"u = 0 reduces to H0 and the B1 leak; {compared} (dtype, K, T, beta, r, d) points match the formula"
