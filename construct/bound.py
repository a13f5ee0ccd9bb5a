r"""A rigorous upper bound on the model's max-abs output error, in exact and in floating-point arithmetic.

The error of the readout against the analytic prediction, at any prediction position of a
prompt of ``T`` tokens, is at most ``error_bound(K, T, L, beta, dtype, arity=r,
vocab_size=d).total``. The proof is part (c) of ``proofs/theorem.md`` (section 8); this
docstring lists the formulas in the order the proof derives them, and lemma B2
(``proofs/bound_lemmas.py``) checks that the code computes exactly these formulas.

Arithmetic model (what XLA does on CPU; ``u = 2^-24`` for float32, ``2^-53`` for float64)
----------------------------------------------------------------------------------------
* (F1) ``+ - * /`` round to nearest (ties to even); a result of magnitude below the smallest
  normal number ``eta`` may be flushed to 0 and a subnormal input read as 0 (XLA flushes on
  CPU). So ``|fl(a op b) - a op b| <= u |a op b| + eta``; flushing never increases a
  non-negative value, so upper bounds of non-negative quantities carry no ``eta``.
* (F2) A dot product or sum is evaluated as *some* binary tree of such operations over its
  terms (fused multiply-adds included, in any order: XLA's order is not specified). Terms
  that are exactly 0 change nothing. With ``n`` non-zero non-negative terms the result errs
  by at most ``gamma(n-1) = (n-1)u/(1-(n-1)u)`` times their sum (standard). Two facts
  about trees, used for the bit-exact flags: *monotonicity* (raising a term never lowers
  the result) and *absorption* (if the integer-valued terms have all partial sums exact and
  every subtree of the other, non-negative terms sums to less than ``u``, the result is
  exactly the integer sum whenever that is >= 1).
* (F3) ``exp(x)`` for ``x <= 0`` lies within ``EXP_ULPS * u = 4u`` relative of ``e^x`` when
  ``e^x >= eta`` and in ``[0, e^x (1 + 4u)]`` otherwise, and ``exp(0) = 1``
  (``tests/test_bound.py`` measures XLA's exp on 2.4 million arguments: at most 1.6u in float32 and
  1.7u in float64; results below ``eta`` come out as 0).
* (F4) The weights are float64 numbers cast to ``dtype``: rationals such as 0, +-1, 2, 1/2,
  3/4 are exact, ``1/j`` is correctly rounded; the positional code and the look-back
  rotations (before the factor beta) are within ``8 u64`` of their exact values
  (``u64 = 2^-53``; measured 6.2 u64, tested against mpmath). Hence a positional entry is
  within ``pi_ = 8u64 + (1+8u64) uc`` and a look-back weight within ``beta * om`` with
  ``om = 8u64 + (1+8u64)((1+u64)(1+uc) - 1)``, ``uc = u`` for float32 (one more cast) and
  ``uc = 0`` for float64. The stored sharpness ``beta_hat = fl(beta) >= beta (1 - uc)``.

With ``u = u64 = 0`` (no rounding, ideal weights) every formula below is part (b), the
bound for exact arithmetic with soft attention; ``leak`` is that value.

Look-back heads (layers 1, 2, 6)
--------------------------------
* A query entry errs by at most ``beta eq``, ``eq = 2(om(1+pi_) + pi_) + gamma(2)(1 + sqrt2(om+pi_) + 2 om pi_)``;
  a score by at most ``es = 2 L beta (eq (1+pi_) + pi_ + gamma(2L)(1+eq)(1+pi_))``.
* Gap lemma (P1, P2): the score at the target is ``beta L``, at offset ``delta`` it is
  ``beta S_L(delta)``. With ``es < beta`` the computed target is the row maximum, so its
  weight is ``exp(0) = 1`` exactly, and the other weights add up to at most
  ``sig = (1 + 4u) exp(2 es + 2u(beta L + es)) Lam``, where
  ``Lam = positional_leak(beta, L, T)`` is the largest sum of ``e^{-beta (L - S_L(delta))}``
  over a window of ``T`` consecutive offsets around 0 (it does not grow with T;
  ``<= (T-1) e^{-2 beta}``). The factor ``e^{2u(beta L + es)}`` is the rounding of
  ``s - max s`` before ``exp``.
* A row of the output at a position with a target: the weights' sums err by at most
  ``et = gamma(T-2) sig + min(gamma(T-1)(1 + 2 sig), sig (1 + gamma(T-2)))`` (one weight is exactly 1
  and every rounding on its path errs by at most the small sum it adds), so the target entry
  is ``>= 1 - lt``, ``lt = 1 - (1-u)/(1 + sig + et)``, and ``<= 1 + zt``,
  ``zt = (1+et)(1+u)/(1-et) - 1``; the other entries add up to ``<= lo = sig (1+gamma(T-2))(1+u)``;
  the row sums to ``<= 1 + rs``, ``rs = (1+u)(1 + et + gamma(T-2) sig)/(1-et) - 1``. Before a head's
  target exists (``t < D``) an entry and a row sum are ``<= 1 + ze``,
  ``ze = (1+gamma(T-1))(1+u)/(1-gamma(T-1)-T eta) - 1``.
* (If ``sig`` or ``et`` exceeds 1/4, H below fails; ``h`` is then reported as ``max(sig, et)``.)
* If moreover ``sig (1 + gamma(T-2)) < u``, the target entry is exactly 1 (absorption:
  ``lt = zt = et = 0``): the *exact regime*, in which the query's slots are exact bits
  (``exact_slots``).

Layers 1-4: the flags are bit-exact under H
-------------------------------------------
Layer 2's unit of task k and inputs w: ``relu(slot.. + token[G_k(w)] + is_answer - (r+1))``
errs by ``eu = gamma(r+2)(2r + 3 + r max(ze, zt))``; at most ``np_ = 1 + r(d-1)`` units per task
can be non-zero at an answer (those that miss the example's inputs in at most one slot), and
a slot entry above 1 adds ``ex = r zt + r(d-1)(r-1) zt + np_ eu`` in all, so ``match_raw`` is within

    em = max( ((1+rs)^r - (1-lt)^r + ex)(1 + gamma(np_-1)),
              ((1+rs)^r + ex)(1 + gamma(np_-1)) - 1,
              1 - (1 - r lt - eu)(1 - gamma(np_-1)) )

of its bit there, and in ``[0, r ze + eu]`` elsewhere; the count ``sum_k match_raw`` is
within ``hc = K em + gamma(K-1) K (1+em)`` of the integer ``C``. Hypothesis **H** is
``h = max(lt, lo, zt, ze, em, hc, K(r ze + eu)(1+gamma(K-1))) <= 1/4``, with ``es < beta``,
``2 lo + r zt + eu < 1``, ``r ze + eu < 1/2`` and no overflow (``4 beta L (1+eq)(1+pi_)(1+gamma(2L))``
below the largest float). Under H, in floating point, ``is_answer``, ``match``, ``count_is``,
``valid`` and ``vote`` are *exactly* what hard attention gives (``vote = fl(1/C)``): the
snap and the trapezoid compute their pre-activations without rounding on the flat parts
(lemma B4), so the tally's scores are exactly ``fl(2 beta)``, ``fl(beta)`` and 0.

The tally (layer 5)
-------------------
``bp = e^{-beta(1-uc)}(1+4u)`` and ``cp = e^{-2beta(1-uc)}(1+4u)`` bound the computed
weights of BOS and of the other positions behind a valid answer; ``Nm = T // n - 1`` bounds
the number N of valid answers (n = s + 2 >= 3 tokens an example); ``nv = Nm + 1``.
With ``N >= 1``: ``s1 = bp + (T-2) cp``; the normaliser is exactly ``N`` if
``s1 (1 + gamma(T-2)) < u`` (absorbed), else at most ``N (1 + s1)(1 + gamma(T-1))`` (``Dp``
is this over N), so

    E1 = max((1+u)^2 (1+gamma(nv-1)) - 1,  1 - (1-u)^2 (1-gamma(nv-1)) / Dp) + bp (1+u)^3 (1+gamma(nv-1)).

With ``N = 0`` (the prior): ``s0 = (T-1) bp``, ``D0 = 1`` if ``s0(1+gamma(T-2)) < u`` else
``(1+s0)(1+gamma(T-1))``, ``E0 = max((1+u)^2 - 1, 1 - (1-u)^2 / D0)``.
``Em = max(E1, E0)`` bounds ``sum_k |mix_k - p_k|``. A computed ``mix_k`` exceeds 1 by at
most ``Dl = max(0, D1, D2)``: ``D1 = 0`` if absorbed, else ``(1 + bp(1+u)^2)(1+gamma(nv-1))(1+u) - 1``
(a task with ``p_k = 1``), ``D2 = ((1 - 1/(2 Nm))(1+u) + bp(1+u)^2)(1+gamma(nv-1))(1+u) - 1``
(``p_k < 1`` implies ``p_k <= 1 - 1/(2N)``); ``Dl = 0`` in exact arithmetic.

The output (layers 6, 7 and the readout)
----------------------------------------
The query's slots after the in-place snap are exact bits in the exact regime and within
``esp = (17/4) gamma(2) + u (1 + (17/4) gamma(2))`` of 1 (off entries exactly 0) otherwise. Layer 7's
firing unit of task k is within ``e7 = r esp + gamma(r+1)(r + 2 + Dl + r esp)`` of ``mix_k``. A unit
whose inputs miss the query in exactly one slot (``r(d-1)`` per task) is exactly 0 unless
``mix_k > 1`` or (``r >= 2`` and not exact regime); then it is at most
``st = Dl + (r-1)esp + gamma(r)(r + 1 + Dl + (r-1)esp)``, for one task if
``2(1 - th) > 1 + Em`` (``th = st - Dl``), else for all K: ``Sst``. The output sums at most
``no = K (+ r(d-1) of them when st > 0)`` non-zero units:

    total = Em + K e7 + Sst + gamma(no - 1)(1 + Em + K e7 + Sst),

times ``1 + 2^-40`` for the float64 evaluation of these formulas; ``leak`` is the same with
``u = u64 = 0`` (``max((bp + (T-2)cp)/(1 + bp + (T-2)cp) + bp, s0/(1 + s0))`` with
``bp = e^-beta``, ``cp = e^{-2beta}``: at most ``max(2e^{-beta} + Te^{-2beta}, Te^{-beta})``), and
``total`` is reported as ``max(total, leak)``, ``rounding = total - leak``. If H fails the
bound is ``inf``.

>>> b = error_bound(K=3, T=1024, L=10, beta=50.0, dtype="float64", arity=2, vocab_size=10)
>>> b.holds, b.exact_slots, b.total < 1e-12, b.leak < 1e-18
(True, True, True, True)
>>> error_bound(K=3, T=1024, L=10, beta=1.0, dtype="float64", arity=1, vocab_size=10).total
inf
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from superpose.setting import BuildError

UNIT_ROUNDOFF = {"float32": 2.0 ** -24, "float64": 2.0 ** -53}
SMALLEST_NORMAL = {"float32": 2.0 ** -126, "float64": 2.0 ** -1022}
LARGEST = {"float32": float(np.finfo(np.float32).max), "float64": float(np.finfo(np.float64).max)}
U64 = 2.0 ** -53
#: (F3): exp's relative error, in units of u (measured by tests/test_bound.py: 1.6 float32, 1.7 float64)
EXP_ULPS = 4
#: (F4): the float64 positional code and look-back rotations are within this many u64 of exact
TRIG_ULPS = 8
#: the float64 evaluation of the formulas is rounded up by this relative margin
EVAL_MARGIN = 2.0 ** -40
#: the fewest tokens an example takes (s = 1 input slot): bounds the number of examples in T tokens
MIN_EXAMPLE_LENGTH = 3


def unit_roundoff(dtype: str) -> float:
    key = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if key not in UNIT_ROUNDOFF:
        raise BuildError(f"dtype: must be one of {sorted(UNIT_ROUNDOFF)}, got {dtype!r}")
    return UNIT_ROUNDOFF[key]


@dataclass(frozen=True)
class ErrorBound:
    """``total = leak + rounding``; ``holds`` is hypothesis H (else ``total`` is ``inf``).

    ``exact_slots``: the exact regime, in which every look-back output at its target is exactly
    1 and the query's slots are exact bits (all flags are bit-exact whenever H holds).
    """

    leak: float
    rounding: float
    total: float
    snap_input_error: float
    holds: bool
    exact_slots: bool = False
    why: str = ""   # when H fails: "overflow" (scores beyond the dtype), "leak" (fails in exact arithmetic), "rounding"

    def to_json(self) -> dict:
        return dict(self.__dict__)


def _gamma(n: float, u: float) -> float:
    return n * u / (1 - n * u) if n > 0 else 0.0


def _exp(x: float) -> float:
    """``exp(x)``, ``inf`` past the largest float instead of ``OverflowError``."""
    return math.exp(x) if x < 700 else math.inf


@functools.lru_cache(maxsize=64)
def _gaps(L: int, T: int) -> np.ndarray:
    """A lower bound of ``L - S_L(delta)`` for ``delta = -(T-1) .. T-1`` (0 at delta = 0).

    Computed in float64 with exact argument reduction (error far below 1e-12, subtracted);
    clamped below at 2 for ``delta != 0`` by the gap lemma P1 (``|delta| < T <= 2^L``).
    """
    delta = np.arange(-(T - 1), T, dtype=np.int64)
    total = np.zeros(delta.shape, dtype=np.float64)
    for b in range(L):
        period = 2 ** (b + 1)
        total += np.cos(np.pi * (delta % period) / (period // 2))
    gap = np.maximum(L - total - 1e-12, 2.0)
    gap[T - 1] = 0.0
    return gap


def positional_leak(beta: float, L: int, T: int) -> float:
    """``exp(log_positional_leak(beta, L, T))``; see there.

    >>> round(positional_leak(5.0, 12, 4096) / math.exp(-10), 3)   # ~ 1 + a little: one offset 2^11 at gap 2
    1.034
    """
    value = log_positional_leak(beta, L, T)
    return math.exp(value) if value > -745 else (0.0 if value == -math.inf else 5e-324)


def log_positional_leak(beta: float, L: int, T: int) -> float:
    r"""An upper bound of ``max_W sum_{delta in W, delta != 0} e^{-beta (L - S_L(delta))}`` over the windows
    ``W = [-j, T-1-j]`` (``0 <= j < T``): the attention a look-back head leaks, relative to its target,
    at any position of a T-token prompt (its other positions sit at distinct offsets ``t - D - u`` in
    such a window), as its logarithm (``-inf`` for 0). At most ``(T-1) e^{-2 beta}`` (every gap is
    >= 2), and for large T about ``e^{-2beta} + 2 e^{-3beta}`` whatever T is.
    """
    if T < 2:
        return -math.inf
    if not 2 ** L >= T:
        raise BuildError(f"positional_leak: 2^L = {2 ** L} must be >= T = {T}")
    gap = _gaps(L, T)
    g0 = float(gap[gap > 0].min())
    with np.errstate(under="ignore", over="ignore"):
        terms = np.maximum(np.exp(-beta * np.maximum(gap - g0, 0.0)), 2.0 ** -1000)  # floored: an upper bound
    terms[T - 1] = 0.0
    prefix = np.concatenate([[0.0], np.cumsum(terms)])
    j = np.arange(T)
    windows = prefix[2 * T - 1 - j] - prefix[T - 1 - j]    # delta from -j to T-1-j
    best = float(windows.max()) * (1 + 4 * T * U64 + 1e-12)
    return -beta * g0 + math.log(best)


def _formula(K: int, T: int, L: int, beta: float, r: int, d: int, n: int, u: float, u64: float, uc: float,
             eta: float, largest: float, log_lam: float) -> dict:
    """Every quantity of the module docstring, for one arithmetic (u = u64 = 0: exact arithmetic)."""
    g = lambda m: _gamma(m, u)  # noqa: E731
    out: dict = {}
    pi_ = TRIG_ULPS * u64 + (1 + TRIG_ULPS * u64) * uc
    om = TRIG_ULPS * u64 + (1 + TRIG_ULPS * u64) * ((1 + u64) * (1 + uc) - 1)
    eq = 2 * (om * (1 + pi_) + pi_) + g(2) * (1 + math.sqrt(2) * (om + pi_) + 2 * om * pi_)
    es = 2 * L * (eq * (1 + pi_) + pi_ + g(2 * L) * (1 + eq) * (1 + pi_)) * beta
    score_max = beta * L * (1 + eq) * (1 + pi_) * (1 + g(2 * L))
    out.update(es=es, overflow=largest < math.inf and not (2 * score_max < largest / 2 and 2 * beta < largest / 2))
    sig = (1 + EXP_ULPS * u) * _exp(2 * es + 2 * u * (beta * L + es) + log_lam) if log_lam > -math.inf else 0.0
    exact_slots = u > 0 and sig * (1 + g(T - 2)) < u
    et = 0.0 if exact_slots else g(T - 2) * sig + min(g(T - 1) * (1 + 2 * sig), sig * (1 + g(T - 2)))
    if not (sig <= 0.25 and et <= 0.25):   # H fails (lo >= sig, lt >= et/2): keep the rest finite
        out.update(sig=sig, et=et, exact_slots=False, h=max(sig, et), holds=False)
        return out
    lt = 0.0 if exact_slots else (sig + et + u) / (1 + sig + et)          # = 1 - (1-u)/(1+sig+et)
    zt = 0.0 if exact_slots else (2 * et + u + et * u) / (1 - et)         # = (1+et)(1+u)/(1-et) - 1
    rs = (u + 2 * et + g(T - 2) * sig + u * (et + g(T - 2) * sig)) / (1 - et)  # (1+u)(1+et+g sig)/(1-et) - 1
    lo = sig * (1 + g(T - 2)) * (1 + u)
    ze = (2 * g(T - 1) + u + g(T - 1) * u + T * eta) / (1 - g(T - 1) - T * eta)  # (1+g)(1+u)/(1-g-T eta) - 1
    eu = g(r + 2) * (2 * r + 3 + r * max(ze, zt))
    npos = 1 + r * (d - 1)
    ex = r * zt + r * (d - 1) * (r - 1) * zt + npos * eu
    up = math.expm1(r * math.log1p(rs))                       # (1+rs)^r - 1
    down = -math.expm1(r * math.log1p(-lt))                   # 1 - (1-lt)^r
    em = max((up + down + ex) * (1 + g(npos - 1)),            # ((1+rs)^r - (1-lt)^r + ex)(1+g)
             (up + ex) * (1 + g(npos - 1)) + g(npos - 1),     # ((1+rs)^r + ex)(1+g) - 1
             r * lt + eu + g(npos - 1) * (1 - r * lt - eu))   # 1 - (1 - r lt - eu)(1 - g)
    hc = K * em + g(K - 1) * K * (1 + em)
    h = max(lt, lo, zt, ze, em, hc, K * (r * ze + eu) * (1 + g(K - 1)))
    holds = ((not out["overflow"]) and (es < beta or u == 0) and h <= 0.25 and 2 * lo + r * zt + eu < 1
             and r * ze + eu < 0.5)
    out.update(sig=sig, et=et, lt=lt, zt=zt, rs=rs, lo=lo, ze=ze, exact_slots=exact_slots, eu=eu, em=em, hc=hc, h=h, holds=holds)
    if not holds:
        return out

    out.update(_output_error(K, T, beta, r, d, max(0, T // n - 1), u, uc, exact_slots))
    return out


def _output_error(K: int, T: int, beta: float, r: int, d: int, Nm: int, u: float, uc: float,
                  exact_slots: bool) -> dict:
    """Layers 5-7 and the readout, given bit-exact flags: the tally, the output units, the final sum.

    ``Nm`` bounds the number of valid answers before a prediction position; ``exact_slots`` says
    whether the query's slots are exact bits.
    """
    g = lambda m: _gamma(m, u)  # noqa: E731
    bp = _exp(-beta * (1 - uc)) * (1 + EXP_ULPS * u)
    cp = _exp(-2 * beta * (1 - uc)) * (1 + EXP_ULPS * u)
    nv = Nm + 1
    s0 = (T - 1) * bp
    D0m1 = 0.0 if (u > 0 and s0 * (1 + g(T - 2)) < u) else s0 + g(T - 1) + s0 * g(T - 1)   # D0 - 1
    E0 = max(2 * u + u * u, (D0m1 + 2 * u - u * u) / (1 + D0m1))   # max((1+u)^2 - 1, 1 - (1-u)^2/D0)
    Em, Dl = E0, 0.0
    if Nm >= 1:
        s1 = bp + (T - 2) * cp
        absorbed = u > 0 and s1 * (1 + g(T - 2)) < u
        Dpm1 = 0.0 if absorbed else s1 + g(T - 1) + s1 * g(T - 1)            # Dp - 1
        gv = g(nv - 1)
        E1 = (max(2 * u + u * u + (1 + u) ** 2 * gv,                          # (1+u)^2 (1+gv) - 1
                  (Dpm1 + 2 * u - u * u + (1 - u) ** 2 * gv) / (1 + Dpm1))    # 1 - (1-u)^2 (1-gv)/Dp
              + bp * (1 + u) ** 3 * (1 + gv))
        Em = max(E1, E0)
        if u > 0:
            # (1 + q)(1 + gv)(1 + u) - 1 in exact rational arithmetic (D2 is a small difference), rounded up
            gF, uF = Fraction(gv), Fraction(u)
            grow = lambda q: q + gF + uF + q * gF + q * uF + gF * uF + q * gF * uF  # noqa: E731
            up = lambda x: math.nextafter(float(x), math.inf) if x > 0 else 0.0  # noqa: E731
            A = Fraction(bp) * (1 + uF) ** 2
            D1 = 0.0 if absorbed else up(grow(A))
            D2 = up(grow(uF + A - (1 + uF) / (2 * Nm)))      # q = (1 - 1/(2Nm))(1+u) + A - 1
            Dl = max(0.0, D1, D2)
    esp = 0.0 if (exact_slots or u == 0) else 17 / 4 * g(2) + u * (1 + 17 / 4 * g(2))
    e7 = r * esp + g(r + 1) * (r + 2 + Dl + r * esp)
    stray_possible = Dl > 0 or (r >= 2 and esp > 0)
    st = Dl + (r - 1) * esp + g(r) * (r + 1 + Dl + (r - 1) * esp) if stray_possible else 0.0
    th = (r - 1) * esp + g(r) * (r + 1 + Dl + (r - 1) * esp) if stray_possible else 0.0   # = st - Dl
    tasks_with_strays = 1 if 2 * (1 - th) > 1 + Em else K
    Sst = r * (d - 1) * st * tasks_with_strays
    no = K + (r * (d - 1) * tasks_with_strays if st > 0 else 0)
    total = Em + K * e7 + Sst + g(no - 1) * (1 + Em + K * e7 + Sst)
    return dict(bp=bp, cp=cp, Nm=Nm, E0=E0, Em=Em, Dl=Dl, esp=esp, e7=e7, st=st, Sst=Sst, no=no, total=total)


def error_bound(K: int, T: int, L: int, beta: float, dtype: str = "float32", *, arity: int,
                vocab_size: int, example_length: int = MIN_EXAMPLE_LENGTH) -> ErrorBound:
    """Bound on ``max |model - prediction|`` over the prediction positions of a T-token prompt.

    ``arity`` is the most input slots any task reads (r) and ``vocab_size`` is d; both are
    required, since a bound for one-slot tasks would be too small for tasks of several.
    ``example_length`` is n = s + 2 (tokens an example takes; default 3, the fewest), which
    bounds the number of examples in T tokens.
    """
    u = unit_roundoff(dtype)
    key = "float32" if u == UNIT_ROUNDOFF["float32"] else "float64"
    shape = dict(K=K, T=T, L=L, beta=beta, r=arity, d=vocab_size, n=example_length,
                 log_lam=log_positional_leak(beta, L, T))
    exact = _formula(**shape, u=0.0, u64=0.0, uc=0.0, eta=0.0, largest=math.inf)
    fp = _formula(**shape, u=u, u64=U64, uc=u if key == "float32" else 0.0, eta=SMALLEST_NORMAL[key],
                  largest=LARGEST[key])
    leak = exact["total"] * (1 + EVAL_MARGIN) if exact["holds"] else math.inf
    if not fp["holds"]:
        why = "overflow" if fp["overflow"] else "leak" if not exact["holds"] else "rounding"
        return ErrorBound(leak, math.inf, math.inf, fp["h"], False, False, why)
    total = max(fp["total"] * (1 + EVAL_MARGIN), leak)
    return ErrorBound(leak, total - leak, total, fp["h"], True, bool(fp["exact_slots"]))


def sharpness_threshold(K: int, T: int, L: int, dtype: str = "float32", *, arity: int, vocab_size: int,
                        example_length: int = MIN_EXAMPLE_LENGTH, exact_slots: bool = False,
                        low: float = 0.01, high: float = 1e4) -> float:
    """The least sharpness (to 1e-6 relative) from which ``error_bound`` holds (or, with
    ``exact_slots``, from which the query's slots are exact bits too); ``inf`` if none up to ``high``.

    Both conditions only get easier as beta grows (until scores overflow), so bisection finds them.
    """
    def ok(beta: float) -> bool:
        b = error_bound(K, T, L, beta, dtype, arity=arity, vocab_size=vocab_size, example_length=example_length)
        return b.holds and (b.exact_slots or not exact_slots)

    if not ok(high):
        return math.inf
    if ok(low):
        return low
    while high - low > 1e-6 * high:
        mid = (low + high) / 2
        low, high = (low, mid) if ok(mid) else (mid, high)
    return high


def certify(model, prompt, dtype: str = "float32") -> dict:
    """A posteriori bound for one prompt (``superpose run --certify``).

    Runs ``prompt`` once more with the activations captured and checks that every flag the proof
    needs is *exactly* its hard-attention value at every position (``is_answer``, ``match``,
    ``count_is``, ``valid``; ``vote = fl(1/C)``) and that the query's slots are exact bits at every
    prediction position. Then only layers 5-7 can err, and the part of the proof for them gives
    ``certified_bound``, with the number of consistent examples of this prompt in place of its
    worst case and with no hypothesis on the look-back heads (it holds even where ``error_bound``
    gives no bound). Returns ``{"certified": bool, "bound": float | None, "consistent_examples": N,
    "reason": str}``.
    """
    from superpose.model import run_tokens
    from superpose.setting import prediction_positions, tokenize

    from .build import LAYER_SPECS
    from .spec import exact_values

    tasks = model.tasks
    if tasks.answer_length != 1:
        return {"certified": False, "bound": None, "consistent_examples": None,
                "reason": "answers of several tokens: the proof covers one-token answers only"}
    tokens = tokenize(tasks, prompt)
    T = len(tokens)
    _, cache = run_tokens(model, tokens[None, :], dtype, capture=True)
    want = exact_values(LAYER_SPECS, tasks, tokens)
    lay = model.layout
    checks = [(1, "is_answer", slice(None)), (3, "match", slice(None)), (3, "count_is", slice(None)),
              (3, "valid", slice(None)), (4, "vote", slice(None)),
              (6, "slot", prediction_positions(tasks, prompt.n_examples))]
    for layer, block, where in checks:
        got = np.asarray(cache[f"layer_{layer}"]["resid_post"][0][:, lay[block].slice])[where]
        exact = want[layer - 1][block]
        rows = range(T) if isinstance(where, slice) else where
        expected = np.array([np.asarray(exact[t], dtype=object).reshape(-1).astype(float) for t in rows])
        if not np.array_equal(got.reshape(len(expected), -1), expected.astype(dtype)):
            return {"certified": False, "bound": None, "consistent_examples": None,
                    "reason": f"layer {layer}'s {block} is not bit-exact in this run"}
    N = int(sum(float(v) for v in want[2]["valid"]))
    u = unit_roundoff(dtype)
    r = max(t.arity for t in tasks.tasks)
    out = _output_error(tasks.K, T, model.sharpness, r, tasks.vocab_size, N, u, u if dtype == "float32" else 0.0, True)
    return {"certified": True, "bound": out["total"] * (1 + EVAL_MARGIN), "consistent_examples": N,
            "reason": "every flag bit-exact; layers 5-7 bounded for this prompt's consistent examples"}
