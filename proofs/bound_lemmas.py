r"""Lemmas B1-B4: the error bound of part (b) and (c), and the facts about floating point it rests on.

B1 (leak, exact arithmetic with soft attention, ideal weights). Under hypothesis ``H0``
(``max(Lam, K r Lam/(1+Lam)) <= 1/4``, ``Lam = positional_leak(beta, L, T)``: the largest
positional leak of a look-back head) every snap and integer indicator is in its flat region
and the only inexact value is ``mix`` (S3), so the error is at most

    leak = max((b + (T-2)c)/(1 + b + (T-2)c) + b,  (T-1)b/(1 + (T-1)b)),   b = e^-beta, c = e^-2beta

(the first term only when T tokens hold two examples or more). The check compares
``error_bound(...).leak`` with this expression and with ``inf`` where H0 fails, on a grid,
and proves symbolically that it is at most ``max(2e^-beta + Te^-2beta, Te^-beta)``.

B2 (the whole bound). The floating-point proof (theorem.md, part (c)) derives the formulas
listed in ``construct/bound.py``'s docstring. This check transcribes them independently (in
40-digit mpmath, in their plain form), and requires that ``error_bound`` reports a total
that is never below the transcription and at most ``1e-11`` above it, the same ``h``,
``holds`` and ``exact_slots``, on a grid of both dtypes; and, symbolically (sympy), that with
``u = u64 = 0`` every rounding quantity vanishes and the rest is B1's leak and H0.

B3 (the positional leak sum). ``positional_leak(beta, L, T)`` is at least the 40-digit value
of ``max_W sum_{delta in W, delta != 0} e^{-beta (L - S_L(delta))}`` over the windows of T
consecutive offsets around 0, at most ``1e-9`` above it, and at most ``(T-1) e^{-2 beta}``.

B4 (the flat regions are exact in floating point). In IEEE round-to-nearest arithmetic
(numpy, float32 and float64), with the gadgets' pre-activations and output sums computed in
*every* summation order: ``snap(x)`` is exactly 1 for every float32 ``x`` in ``[3/4, 5/4)``
(all 6.3 million of them) and exactly 0 on ``[0, 1/4]``; ``valid = snap(c)`` is exactly 1 for
``c`` in ``[3/4, K + 1/4]``; the trapezoid ``count_is[j](c)`` is exactly ``[C = j]`` for ``c``
within 1/4 of ``C = 0..8`` (``j = 1..8``); ``x + snap_in_place(x)`` is exactly 0 on ``[0, 1/4]``,
exactly 1 at ``x = 1`` and within ``esp`` of 1 on ``[3/4, 5/4)`` (exhaustive in float32 for
the snaps, 200,000 samples a range otherwise).
"""

from __future__ import annotations

import itertools
import math
from typing import Callable

import mpmath
import numpy as np
import sympy as sp

from superpose.construct import bound as construct_bound
from superpose.construct.positional import n_frequencies

from .result import lemma, require

GRID_K = (1, 2, 3, 16)
GRID_T = (2, 16, 300, 5000)
GRID_BETA = (1.0, 3.0, 7.0, 12.5, 50.0, 2000.0)
GRID_SHAPE = ((1, 1, 3), (3, 4, 5), (2, 20, 4))  # (r, d, n = s + 2)
DPS = 40


def leak_expression(T: int, beta, n: int = 3):
    """B1's leak, as a sympy expression of beta."""
    b, c = sp.exp(-beta), sp.exp(-2 * beta)
    none = (T - 1) * b / (1 + (T - 1) * b)
    if T // n - 1 < 1:
        return none
    some = (b + (T - 2) * c) / (1 + b + (T - 2) * c) + b
    return sp.Max(some, none)


def _h0(K: int, r: int, lam):
    return max(lam, K * r * lam / (1 + lam))


def _close(got: float, want, rel: float) -> bool:
    want = float(want)
    return abs(got - want) <= rel * abs(want)


@lemma("B1 leak bound",
       "under H0: max(Lam, K r Lam/(1+Lam)) <= 1/4 the exact-arithmetic error is <= max((b+(T-2)c)/(1+b+(T-2)c) + b, "
       "(T-1)b/(1+(T-1)b)) <= max(2e^-beta + Te^-2beta, Te^-beta), b = e^-beta, c = e^-2beta; error_bound(...).leak "
       "is exactly this (inf when H0 fails)")
def check_error_bound_leak(error_bound: Callable = construct_bound.error_bound) -> str:
    b, c, T = sp.symbols("b c T", positive=True)
    # x/(1+x) <= x, so each case is at most the old leak (for T >= 2)
    require(sp.simplify((2 * b + T * c) - ((b + (T - 2) * c) / (1 + b + (T - 2) * c) + b)
                        - (b + (T - 2) * c) ** 2 / (1 + b + (T - 2) * c) - 2 * c) == 0,
            "the case with a consistent example is not 2b + Tc minus a non-negative remainder")
    require(sp.simplify(T * b - (T - 1) * b / (1 + (T - 1) * b) - b - (T - 1) ** 2 * b ** 2 / (1 + (T - 1) * b)) == 0,
            "the prior's case is not Tb minus a non-negative remainder")
    holds = fails = 0
    for K, t, beta, (r, d, n) in itertools.product(GRID_K, GRID_T, GRID_BETA, GRID_SHAPE):
        L = n_frequencies(t)
        lam = construct_bound.positional_leak(beta, L, t)
        got = error_bound(K, t, L, beta, "float64", arity=r, vocab_size=d, example_length=n).leak
        where = f"K={K}, T={t}, beta={beta}, r={r}, n={n}"
        if _h0(K, r, lam) <= 0.25:
            want = leak_expression(t, sp.Float(beta, DPS), n).evalf(DPS)
            require(_close(got, want, 1e-11), f"{where}: leak {got!r}, derived {want}")
            old = max(2 * math.exp(-beta) + t * math.exp(-2 * beta), t * math.exp(-beta))
            require(got <= old * (1 + 1e-11), f"{where}: leak {got!r} above the old expression {old!r}")
            holds += 1
        else:
            require(got == math.inf, f"{where}: H0 fails but leak = {got!r}")
            fails += 1
    return (f"each case is the old leak minus a non-negative remainder (sympy); {holds} grid points match the "
            f"derived leak, {fails} correctly report inf")


def transcribed_bound(K, T, L, beta, dtype: str | None, r, d, n, log_lam) -> dict:
    """The formulas of ``construct/bound.py``'s docstring in their plain form, in 40-digit mpmath.

    ``dtype=None`` is exact arithmetic (u = u64 = 0, ideal weights).
    """
    mp = mpmath.mp
    mp.dps = DPS
    F = mpmath.mpf
    if dtype is None:
        u = u64 = uc = eta = F(0)
        largest = mpmath.inf
    else:
        u = F(2) ** (-24 if dtype == "float32" else -53)
        u64 = F(2) ** -53
        uc = u if dtype == "float32" else F(0)
        eta = F(2) ** (-126 if dtype == "float32" else -1022)
        largest = F(float(np.finfo(dtype).max))
    beta = F(beta)
    g = lambda m: m * u / (1 - m * u) if m > 0 else F(0)  # noqa: E731
    pi_ = 8 * u64 + (1 + 8 * u64) * uc
    om = 8 * u64 + (1 + 8 * u64) * ((1 + u64) * (1 + uc) - 1)
    eq = 2 * (om * (1 + pi_) + pi_) + g(2) * (1 + mpmath.sqrt(2) * (om + pi_) + 2 * om * pi_)
    es = 2 * L * beta * (eq * (1 + pi_) + pi_ + g(2 * L) * (1 + eq) * (1 + pi_))
    overflow = dtype is not None and not (4 * beta * L * (1 + eq) * (1 + pi_) * (1 + g(2 * L)) < largest / 2
                                          and 2 * beta < largest / 2)
    sig = (1 + 4 * u) * mpmath.exp(2 * es + 2 * u * (beta * L + es) + F(log_lam))
    exact = u > 0 and sig * (1 + g(T - 2)) < u
    et = F(0) if exact else g(T - 2) * sig + min(g(T - 1) * (1 + 2 * sig), sig * (1 + g(T - 2)))
    if not (sig <= F(1) / 4 and et <= F(1) / 4):
        return {"h": max(sig, et), "holds": False, "exact_slots": False}
    lt = F(0) if exact else 1 - (1 - u) / (1 + sig + et)
    zt = F(0) if exact else (1 + et) * (1 + u) / (1 - et) - 1
    rs = (1 + u) * (1 + et + g(T - 2) * sig) / (1 - et) - 1
    lo = sig * (1 + g(T - 2)) * (1 + u)
    ze = (1 + g(T - 1)) * (1 + u) / (1 - g(T - 1) - T * eta) - 1
    eu = g(r + 2) * (2 * r + 3 + r * max(ze, zt))
    npos = 1 + r * (d - 1)
    ex = r * zt + r * (d - 1) * (r - 1) * zt + npos * eu
    em = max(((1 + rs) ** r - (1 - lt) ** r + ex) * (1 + g(npos - 1)),
             ((1 + rs) ** r + ex) * (1 + g(npos - 1)) - 1,
             1 - (1 - r * lt - eu) * (1 - g(npos - 1)))
    hc = K * em + g(K - 1) * K * (1 + em)
    h = max(lt, lo, zt, ze, em, hc, K * (r * ze + eu) * (1 + g(K - 1)))
    holds = (not overflow) and (es < beta or u == 0) and h <= F(1) / 4 and 2 * lo + r * zt + eu < 1 \
        and r * ze + eu < F(1) / 2
    out = {"h": h, "holds": bool(holds), "exact_slots": bool(exact)}
    if not holds:
        return out
    bp = mpmath.exp(-beta * (1 - uc)) * (1 + 4 * u)
    cp = mpmath.exp(-2 * beta * (1 - uc)) * (1 + 4 * u)
    Nm = max(0, T // n - 1)
    nv = Nm + 1
    s0 = (T - 1) * bp
    D0 = F(1) if (u > 0 and s0 * (1 + g(T - 2)) < u) else (1 + s0) * (1 + g(T - 1))
    Em = E0 = max((1 + u) ** 2 - 1, 1 - (1 - u) ** 2 / D0)
    Dl = F(0)
    if Nm >= 1:
        s1 = bp + (T - 2) * cp
        absorbed = u > 0 and s1 * (1 + g(T - 2)) < u
        Dp = F(1) if absorbed else (1 + s1) * (1 + g(T - 1))
        E1 = max((1 + u) ** 2 * (1 + g(nv - 1)) - 1, 1 - (1 - u) ** 2 * (1 - g(nv - 1)) / Dp) \
            + bp * (1 + u) ** 3 * (1 + g(nv - 1))
        Em = max(E1, E0)
        if u > 0:
            D1 = F(0) if absorbed else (1 + bp * (1 + u) ** 2) * (1 + g(nv - 1)) * (1 + u) - 1
            D2 = ((1 - F(1) / (2 * Nm)) * (1 + u) + bp * (1 + u) ** 2) * (1 + g(nv - 1)) * (1 + u) - 1
            Dl = max(F(0), D1, D2)
    esp = F(0) if (exact or u == 0) else F(17) / 4 * g(2) + u * (1 + F(17) / 4 * g(2))
    e7 = r * esp + g(r + 1) * (r + 2 + Dl + r * esp)
    st = Dl + (r - 1) * esp + g(r) * (r + 1 + Dl + (r - 1) * esp) if (Dl > 0 or (r >= 2 and esp > 0)) else F(0)
    with_strays = 1 if 2 * (1 - (st - Dl)) > 1 + Em else K
    Sst = r * (d - 1) * st * with_strays
    no = K + (r * (d - 1) * with_strays if st > 0 else 0)
    total = Em + K * e7 + Sst + g(no - 1) * (1 + Em + K * e7 + Sst)
    out.update(total=total, Em=Em, e7=e7, Sst=Sst)
    return out


def _symbolic_reduction() -> None:
    """With u = u64 = uc = eta = 0 every rounding quantity vanishes and the rest is B1 (sympy)."""
    Lam, b, c, T = sp.symbols("Lambda b c T", positive=True)
    u = sp.Symbol("u", nonnegative=True)
    g = lambda m: m * u / (1 - m * u)  # noqa: E731
    sig, et = Lam, sp.Integer(0)    # sig = (1+4u) e^{2 es + ...} Lam and es = 0 without rounding; et = O(u)
    at0 = {u: 0}
    lt = 1 - (1 - u) / (1 + sig + et)
    zt = (1 + et) * (1 + u) / (1 - et) - 1
    rs = (1 + u) * (1 + et + g(T - 2) * sig) / (1 - et) - 1
    lo = sig * (1 + g(T - 2)) * (1 + u)
    ze = (1 + g(T - 1)) * (1 + u) / (1 - g(T - 1)) - 1
    require(sp.simplify(lt.subs(at0) - Lam / (1 + Lam)) == 0, "lt(u=0) is not Lam/(1+Lam)")
    require(sp.simplify(lo.subs(at0) - Lam) == 0, "lo(u=0) is not Lam")
    for name, q in (("zt", zt), ("rs", rs), ("ze", ze)):
        require(sp.simplify(q.subs(at0)) == 0, f"{name}(u=0) is not 0")
    Dp = (1 + b + (T - 2) * c) * (1 + g(T - 1))
    E1 = 1 - (1 - u) ** 2 * (1 - g(T)) / Dp + b * (1 + u) ** 3 * (1 + g(T))
    require(sp.simplify(E1.subs(at0) - ((b + (T - 2) * c) / (1 + b + (T - 2) * c) + b)) == 0,
            "E1(u=0) is not B1's first case")
    D0 = (1 + (T - 1) * b) * (1 + g(T - 1))
    require(sp.simplify((1 - (1 - u) ** 2 / D0).subs(at0) - (T - 1) * b / (1 + (T - 1) * b)) == 0,
            "E0(u=0) is not B1's second case")
    x = sp.Symbol("x", positive=True)
    for r in range(1, 6):  # em(u=0) = max(1 - (1-x)^r, r x) = r x (x = lt(0)): Bernoulli, via the derivative
        diff = r * x - (1 - (1 - x) ** r)
        require(diff.subs(x, 0) == 0 and sp.simplify(sp.diff(diff, x) - r * (1 - (1 - x) ** (r - 1))) == 0,
                f"1 - (1-x)^{r} <= {r} x is not shown by its derivative")


@lemma("B2 bound formula",
       "error_bound(K, T, L, beta, dtype, r, d, n) is never below the formulas of construct/bound.py's docstring "
       "(transcribed in 40-digit mpmath) and at most 1e-11 above, with the same h, H and exact regime; without "
       "rounding every rounding term vanishes (sympy)")
def check_error_bound_formula(error_bound: Callable = construct_bound.error_bound) -> str:
    _symbolic_reduction()
    compared = regimes = 0
    for dtype in ("float32", "float64"):
        for k, t, beta, (r, d, n) in itertools.product(GRID_K, GRID_T, GRID_BETA, GRID_SHAPE):
            L = n_frequencies(t)
            log_lam = construct_bound.log_positional_leak(beta, L, t)
            want = transcribed_bound(k, t, L, beta, dtype, r, d, n, log_lam)
            got = error_bound(k, t, L, beta, dtype, arity=r, vocab_size=d, example_length=n)
            where = f"{dtype}, K={k}, T={t}, beta={beta}, r={r}, d={d}, n={n}"
            require(_close(got.snap_input_error, want["h"], 1e-9) or abs(got.snap_input_error - float(want["h"])) < 1e-30,
                    f"{where}: h = {got.snap_input_error!r}, formula {mpmath.nstr(want['h'], 17)}")
            require(got.holds == want["holds"], f"{where}: holds = {got.holds}, formula says {want['holds']}")
            require(got.exact_slots == (want["holds"] and want["exact_slots"]),
                    f"{where}: exact_slots = {got.exact_slots}, formula says {want['exact_slots']}")
            if not want["holds"]:
                require(got.total == math.inf, f"{where}: H fails but total = {got.total!r}")
                continue
            exact = transcribed_bound(k, t, L, beta, None, r, d, n, log_lam)
            total = max(want["total"], exact["total"]) if exact["holds"] else want["total"]
            require(got.total >= total and got.total <= total * (1 + 1e-11),
                    f"{where}: total {got.total!r}, formula {mpmath.nstr(total, 17)}")
            require(abs(got.rounding - (got.total - got.leak)) <= 1e-12 * got.total, f"{where}: rounding != total - leak")
            compared += 1
            regimes += got.exact_slots
    return (f"u = 0 removes every rounding term (sympy); {compared} (dtype, K, T, beta, r, d, n) points match the "
            f"formula ({regimes} of them in the exact regime)")


def window_leak_exact(beta: float, L: int, T: int) -> mpmath.mpf:
    """``max_W sum_{delta in W \\ 0} e^{-beta (L - S_L(delta))}`` in 40-digit mpmath."""
    mpmath.mp.dps = DPS
    term = {delta: mpmath.exp(-mpmath.mpf(beta) * (L - sum(mpmath.cospi(mpmath.mpf(delta) / 2 ** b) for b in range(L))))
            for delta in range(-(T - 1), T) if delta}
    return max(sum(term[delta] for delta in range(-j, T - j) if delta) for j in range(T))


@lemma("B3 positional leak",
       "positional_leak(beta, L, T) lies between the 40-digit maximum over windows of T offsets of "
       "sum e^{-beta (L - S_L(delta))} and 1e-9 above it, and is at most (T-1) e^{-2 beta}")
def check_positional_leak(leak: Callable = construct_bound.positional_leak) -> str:
    checked = 0
    for L in range(1, 8):
        for T in sorted({2, 3, max(2, 2 ** (L - 1) + 1), 2 ** L}):
            if T > 2 ** L:
                continue
            for beta in (0.5, 2.0, 7.0, 30.0):
                want = window_leak_exact(beta, L, T)
                got = leak(beta, L, T)
                where = f"L={L}, T={T}, beta={beta}"
                require(got >= want and got <= want * (1 + 1e-9) + 1e-300, f"{where}: {got!r} vs exact {want}")
                require(got <= (T - 1) * math.exp(-2 * beta) * (1 + 1e-9), f"{where}: above (T-1)e^-2beta")
                checked += 1
    return f"{checked} (L, T, beta) points, L = 1..7, T up to 2^L"


# ------------------------------------------------------------------ B4: floating point on the flat regions


def every_order_sums(terms: list[np.ndarray]) -> list[np.ndarray]:
    """``fl(sum of terms)`` for every binary summation tree (every order), in the terms' dtype."""
    if len(terms) == 1:
        return [terms[0]]
    out = []
    for i, j in itertools.combinations(range(len(terms)), 2):
        rest = [t for k, t in enumerate(terms) if k not in (i, j)]
        out.extend(every_order_sums(rest + [terms[i] + terms[j]]))
    return out


def _floats_between(lo: float, hi: float, dtype) -> np.ndarray:
    """Every float of ``dtype`` in ``[lo, hi)`` (float32) or a sample with the endpoints (float64)."""
    if dtype == np.float32:
        a, b = np.array([lo, hi], dtype=np.float32).view(np.uint32)
        return np.arange(a, b, dtype=np.uint32).view(np.float32)
    rng = np.random.default_rng(0)
    return np.concatenate([[lo, np.nextafter(hi, lo)], rng.uniform(lo, hi, 200_000)]).astype(dtype)


def _relu(x):
    return np.maximum(x, 0)


def _snap(x, dtype):
    four, half = dtype(4), dtype(0.5)
    p1, p2 = four * x + dtype(-1), four * x + dtype(-3)       # one rounding each (4x is exact)
    return every_order_sums([half * _relu(p1), -half * _relu(p2)])


def _indicator(c, j, dtype):
    terms = []
    for bias, sign in ((0.75 - j, 2), (0.25 - j, -2), (-0.25 - j, -2), (-0.75 - j, 2)):
        terms.append(dtype(sign) * _relu(c + dtype(bias)))
    return every_order_sums(terms)


@lemma("B4 exact flat regions",
       "in round-to-nearest float32/float64, every summation order: snap(x) = 1 exactly on [3/4, 5/4) and 0 on "
       "[0, 1/4]; count_is[j](c) = [C = j] exactly for |c - C| <= 1/4; valid = 1 for c in [3/4, K + 1/4]; "
       "x + snap_in_place(x) = 0 on [0, 1/4], 1 at x = 1, within esp of 1 on [3/4, 5/4)")
def check_exact_flat_regions() -> str:
    counted = 0
    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.float64):
        u = float(np.finfo(dtype).eps) / 2
        g2 = 2 * u / (1 - 2 * u)
        esp = 17 / 4 * g2 + u * (1 + 17 / 4 * g2)
        name = np.dtype(dtype).name
        high = _floats_between(0.75, 1.25, dtype)
        low = np.concatenate([[0.0, 0.25], rng.uniform(0, 0.25, 200_000)]).astype(dtype)
        for result in _snap(high, dtype):
            require(bool(np.all(result == 1)), f"{name}: snap is not exactly 1 on [3/4, 5/4)")
        for result in _snap(low, dtype):
            require(bool(np.all(result == 0)), f"{name}: snap is not exactly 0 on [0, 1/4]")
        counted += high.size + low.size
        for K in (1, 2, 8):
            c = np.concatenate([[0.75, K + 0.25], rng.uniform(0.75, K + 0.25, 50_000)]).astype(dtype)
            require(all(bool(np.all(r == 1)) for r in _snap(c, dtype)), f"{name}: valid is not 1 on [3/4, {K}+1/4]")
        for C in range(0, 9):
            c = np.concatenate([[max(C - 0.25, 0.0), C + 0.25, C],
                                rng.uniform(max(C - 0.25, 0.0), C + 0.25, 20_000)]).astype(dtype)
            for j in range(1, 9):
                for result in _indicator(c, j, dtype):
                    require(bool(np.all(result == (1 if C == j else 0))),
                            f"{name}: count_is[{j}] is not exactly [C = {j}] within 1/4 of {C}")
            counted += c.size
        for x, check in ((low, lambda r, x: r == 0), (np.array([1.0], dtype=dtype), lambda r, x: r == 1),
                         (high, lambda r, x: np.abs(r.astype(np.float64) - 1) <= esp)):
            four, half = dtype(4), dtype(0.5)
            terms = [-_relu(x), half * _relu(four * x + dtype(-1)), -half * _relu(four * x + dtype(-3))]
            for out in every_order_sums(terms):
                require(bool(np.all(check(x + out, x))), f"{name}: snap in place fails on {x.min()}..{x.max()}")
    return f"{counted:,} arguments, each in every summation order of its gadget, in float32 and float64"
