r"""A rigorous upper bound on the model's max-abs output error.

The error of the readout against the analytic prediction, at any prediction position
of a prompt of ``T`` tokens, is at most ``error_bound(K, T, L, beta, dtype, arity, vocab_size).total``:
the leak of soft attention plus an allowance for floating-point rounding. ``arity`` is
``r``, the most input slots any task reads, and ``vocab_size`` is ``d``.

Floating-point model (stated, not assumed silently)
---------------------------------------------------
``u`` is the unit roundoff (``2^-24`` for float32, ``2^-53`` for float64) and
``gamma(n) = n u / (1 - n u)``.

* (F1) ``+ - * /`` are correctly rounded: ``fl(a op b) = (a op b)(1 + delta)``, ``|delta| <= u``.
* (F2) A sum or dot product with ``n`` non-zero terms, in any order (FMA included), errs
  by at most ``gamma(n) * sum |terms|``; terms with an exact zero factor add nothing.
* (F3) ``exp`` has relative error at most ``4u`` and ``exp(0) = 1``; rational weights are
  stored correctly rounded (so 0, +-1, 2, 1/2, 3/4, ... are exact); the cosines and sines
  of the positional code and of the look-back rotations (before the factor beta) lie
  within ``8u`` of their exact values (measured: at most 6.2u; ``tests/test_bound.py``
  checks it against 50-digit mpmath), so a look-back weight ``beta c`` is within ``9 beta u``.

Hypothesis H (the snaps work)
-----------------------------
Every look-back head puts weight ``>= 1 - lpos`` on its target, where
``lpos = (T-1) e^{-2 beta + 2 es}(1 + 4u)`` and ``es = 2 L beta (gamma(2L) + 36u)`` bounds
the rounding of a positional score: each of its 2L terms ``q_j k_j`` errs by at most
``beta (sqrt(2) (9u + 8u + gamma(2)) + 8u)`` (weights, code, the query's 2-term sum; then
the key), and the sum adds ``gamma(2L)`` of ``sum |q_j k_j| <= 2 L beta``. A ``slot`` entry
is then within ``lpos + 3 gamma(T)`` of its bit. ``match_raw[k]`` sums layer 2's units of
task k: with r soft slots the firing unit loses at most r times that and the others add
at most as much (layer 2's docstring); its units' pre-activations sum ``r + 3`` terms of
total size ``<= 2r + 6``, and at most ``r d + 1`` of its units are non-zero (a firing unit
needs all but one slot on its bit), each output at most 2, so

    e_match = r (lpos + 3 gamma(T)) + (2r + 6) gamma(r + 3) + 2 gamma(r d + 2).

The soft values that are snapped (``answer_raw``, ``slot``, ``match_raw``, ``count``) are then
within ``h = K e_match + (8K + 8) gamma(K+4)`` of an exact value (pre-activation
rounding included). H is ``h <= 1/4``: every snap and integer indicator is then in its
flat region. If H fails the bound is ``inf``.

Errors of the exact stages under H
----------------------------------
* ``e_snap = 10 gamma(3)``: a snapped bit (``is_answer``, ``match``, and ``slot`` after its
  in-place snap ``x + (snap(x) - relu(x))``) is exact when it is 0 and within ``e_snap``
  of 1 otherwise (its input is at most 1.25).
* ``e_ind = 24 (K + 1) gamma(K + 4)``: ``count_is[j]`` (pre-activations sum ``K + 1`` terms
  of total size ``<= 2K + 2``); ``e_valid = (8K + 6) gamma(K + 2)`` for ``valid``.
* ``e_vote = (1 + ln K)(e_snap + e_ind + 4 gamma(3)) + 2 gamma(K)``: a vote.
  Non-answer and noise positions carry exactly 0 in all of these.

The tally (layer 5)
-------------------
Keys of valid answers are ``2 beta (1 +- ek)`` with ``ek = (1 + e_valid)(1 + u) - 1``, so their
exponentials lie within ``w = exp(4 beta ek (1 + u))(1 + 4u) - 1`` of 1 relative to
each other. With ``lam1 = e^{-beta(1 - 2 ek)}(1 + 4u)`` (BOS) and
``lam2 = e^{-2 beta (1 - ek)}(1 + 4u)`` (each other position), the sum over k of
``|mix[k] - p_k|`` is at most

    M1 = (2w + 3 gamma(T) + K e_vote + 2 lam1 + T lam2)(1 + 4u) / (1 - w - gamma(T))

when some earlier example is consistent, and ``M0 = (T lam0 + 3u + 2 gamma(T))(1 + 4u)``
with ``lam0 = e^{-beta}(1 + 4u)`` when none is (BOS gives the prior).

The output (layer 7 and the readout)
------------------------------------
``out[G_k(w)] += relu(mix[k] + slot[a_1, w_1] + .. + slot[a_r, w_r] + ARROW - (r + 1))`` is
1-Lipschitz in ``mix`` and in each slot bit (each within ``e_snap``); with exact-0 slots
every non-matching unit is exactly 0, so one unit per task fires. Its pre-activations
sum ``r + 3`` terms of total size ``<= 2r + 4`` and the output sums K non-zero terms of
total size ``<= 1.01``. So

    total = max(M1, M0) + K (r e_snap + (2r + 4) gamma(r + 3)) + 2 gamma(K).

``leak`` is ``total`` with ``u = 0`` (the error of exact arithmetic with soft
attention: ``max(2e^{-beta} + T e^{-2 beta}, T e^{-beta})``) and ``rounding = total - leak``.

>>> b = error_bound(K=3, T=1024, L=10, beta=50.0, dtype="float64", arity=2, vocab_size=10)
>>> b.holds, b.total < 1e-11, b.leak < 1e-18
(True, True, True)
>>> error_bound(K=3, T=1024, L=10, beta=2.0, dtype="float64", arity=1, vocab_size=10).total
inf
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from superpose.setting import BuildError

UNIT_ROUNDOFF = {"float32": 2.0 ** -24, "float64": 2.0 ** -53}


def unit_roundoff(dtype: str) -> float:
    key = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if key not in UNIT_ROUNDOFF:
        raise BuildError(f"dtype: must be one of {sorted(UNIT_ROUNDOFF)}, got {dtype!r}")
    return UNIT_ROUNDOFF[key]


@dataclass(frozen=True)
class ErrorBound:
    """``total = leak + rounding``; ``holds`` is hypothesis H (else ``total`` is ``inf``)."""

    leak: float
    rounding: float
    total: float
    snap_input_error: float
    holds: bool

    def to_json(self) -> dict:
        return dict(self.__dict__)


def _gamma(n: int, u: float) -> float:
    return n * u / (1 - n * u)


def _exp(x: float, f=math.exp) -> float:
    """``f(x)`` (``exp`` or ``expm1``), ``inf`` past the largest float instead of ``OverflowError``."""
    return f(x) if x < 700 else math.inf


def _total(K: int, T: int, L: int, beta: float, u: float, r: int, d: int) -> tuple[float, float]:
    """(total bound, h) for unit roundoff u; ``inf`` when hypothesis H fails."""
    g = lambda n: _gamma(n, u)  # noqa: E731
    es = 2 * L * (g(2 * L) + 36 * u) * beta  # beta last: no inf * 0 for a huge beta
    lpos = (T - 1) * _exp(-2 * beta + 2 * es) * (1 + 4 * u)
    e_match = r * (lpos + 3 * g(T)) + (2 * r + 6) * g(r + 3) + 2 * g(r * d + 2)
    h = K * e_match + (8 * K + 8) * g(K + 4)
    if not h <= 0.25:
        return math.inf, h

    e_snap = 10 * g(3)
    e_ind = 24 * (K + 1) * g(K + 4)
    e_valid = (8 * K + 6) * g(K + 2)
    e_vote = (1 + math.log(K)) * (e_snap + e_ind + 4 * g(3)) + 2 * g(K)

    # ek = (1 + e_valid)(1 + u) - 1 and w = exp(4 beta ek (1 + u))(1 + 4u) - 1, evaluated without
    # cancellation: subtracting 1 in floating point would lose up to u/ek (a few percent) of both
    # and could report a total below the formula's value.
    ek = e_valid + u + e_valid * u
    w = _exp(beta * ek * 4 * (1 + u), math.expm1) * (1 + 4 * u) + 4 * u
    lam1 = _exp(-beta * (1 - 2 * ek)) * (1 + 4 * u)
    lam2 = _exp(-2 * beta * (1 - ek)) * (1 + 4 * u)
    lam0 = math.exp(-beta) * (1 + 4 * u)
    denominator = 1 - w - g(T)
    if not denominator > 0:
        return math.inf, h
    m1 = (2 * w + 3 * g(T) + K * e_vote + 2 * lam1 + T * lam2) * (1 + 4 * u) / denominator
    m0 = (T * lam0 + 3 * u + 2 * g(T)) * (1 + 4 * u)
    total = max(m1, m0) + K * (r * e_snap + (2 * r + 4) * g(r + 3)) + 2 * g(K)
    return total, h


def error_bound(K: int, T: int, L: int, beta: float, dtype: str = "float32", *, arity: int,
                vocab_size: int) -> ErrorBound:
    """Bound on ``max |model - prediction|`` over the prediction positions of a T-token prompt.

    ``arity`` is the most input slots any task reads (r) and ``vocab_size`` is d; both are
    required, since a bound for one-slot tasks would be too small for tasks of several.
    """
    u = unit_roundoff(dtype)
    total, h = _total(K, T, L, beta, u, arity, vocab_size)
    leak, _ = _total(K, T, L, beta, 0.0, arity, vocab_size)
    if math.isinf(total):
        return ErrorBound(math.inf if math.isinf(leak) else leak, math.inf, math.inf, h, False)
    return ErrorBound(leak, total - leak, total, h, True)
