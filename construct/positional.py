r"""The positional code and the "look back D positions" attention head.

Positional embedding (depends on the position ``t`` alone, not on tasks or layout)::

    pos_cos[b](t) = cos(pi t / 2^b),   pos_sin[b](t) = sin(pi t / 2^b),   b = 0 .. L-1,

with ``L = n_frequencies(T_max)``, the least ``L >= 1`` with ``2^L >= T_max``. (The
``b = 0`` sine is ``sin(pi t) = 0`` for every integer ``t``; it is kept so the code is
the standard cos/sin pair at every frequency.)

Look-back head. A fixed offset is a rotation, which is linear in the code::

    cos(w(t - D)) = cos(wt) cos(wD) + sin(wt) sin(wD)
    sin(w(t - D)) = sin(wt) cos(wD) - cos(wt) sin(wD)

so a query ``beta * R_D pos(t)`` against the key ``pos(u)`` scores

    score(t, u) = beta * sum_b cos(pi (t - D - u) / 2^b) = beta * S_L(t - D - u).

Gap lemma: ``S_L(0) = L`` and ``S_L(delta) <= L - 2`` for every integer
``0 < |delta| < 2^L`` (the term ``b = v_2(delta)`` is ``cos(pi * odd) = -1``). Hence
the intended position ``u = t - D`` out-scores every other position by at least
``2 beta``, and the attention weight that leaks elsewhere is at most
``(T - 1) e^{-2 beta}`` (checked symbolically in ``superpose.proofs``).

>>> n_frequencies(16), n_frequencies(17)
(4, 5)
>>> [round(gap_sum(delta, 4), 3) for delta in (0, 1, 2, 8)]
[4.0, 0.631, 0.707, 2.0]
>>> round(max(gap_sum(delta, 4) for delta in range(-15, 16) if delta), 12)   # = L - 2
2.0
"""

from __future__ import annotations

import math

import numpy as np

from .layout import Layout
from .weights import Coeff, Form, HeadBuilder, form


def n_frequencies(max_len: int) -> int:
    """The least ``L >= 1`` with ``2^L >= max_len``: all offsets ``|delta| < max_len`` are told apart."""
    return max(1, math.ceil(math.log2(max_len))) if max_len > 1 else 1


def positional_table(max_len: int, L: int) -> np.ndarray:
    """``(max_len, 2L)`` table: columns ``cos(pi t/2^b)`` for b < L, then ``sin(pi t/2^b)``.

    Computed in float64 with exact argument reduction (``t mod 2^{b+1}``), so the angle errs
    by at most about ``2 pi * 1.4 u`` (``u = 2^-53``) whatever ``t`` is. The entries are close
    to, but not always, the correctly rounded values: ``sin(pi)`` is stored as ``1.2e-16``,
    not 0, and for ``L <= 13`` the largest error over all ``t`` is ``6.2 u`` (measured with
    80-bit mpmath).
    """
    t = np.arange(max_len, dtype=np.int64)[:, None]
    period = 2 ** (np.arange(L, dtype=np.int64) + 1)[None, :]
    angle = np.pi * (t % period) / (period // 2)
    return np.concatenate([np.cos(angle), np.sin(angle)], axis=1)


def gap_sum(delta: int, L: int) -> float:
    """``S_L(delta) = sum_{b<L} cos(pi delta / 2^b)``: the look-back score divided by beta."""
    return float(sum(math.cos(math.pi * delta / 2**b) for b in range(L)))


def add_look_back(head: HeadBuilder, layout: Layout, offset: int, sharpness: Coeff) -> None:
    """Make ``head`` attend from position t to position ``t - offset`` with score gap ``2*sharpness``."""
    L = layout["pos_cos"].size
    for b in range(L):
        w = math.pi * (offset % 2 ** (b + 1)) / 2**b  # exact argument reduction, as in positional_table
        c, s = math.cos(w), math.sin(w)
        cos_t, sin_t = form(layout, ("pos_cos", b)), form(layout, ("pos_sin", b))
        # query entry b (cos part) = beta * cos(w_b (t - D)); key entry = cos(w_b u)
        q_cos: Form = {**{d: sharpness * c for d in cos_t}, **{d: sharpness * s for d in sin_t}}
        # query entry b (sin part) = beta * sin(w_b (t - D)); key entry = sin(w_b u)
        q_sin: Form = {**{d: -sharpness * s for d in cos_t}, **{d: sharpness * c for d in sin_t}}
        head.qk(q_cos, cos_t)
        head.qk(q_sin, sin_t)


def add_anchored_look_back(head: HeadBuilder, layout: Layout, offset: int, sharpness: Coeff,
                           bos: tuple) -> None:
    """A look-back head that attends to BOS (position 0) whenever ``t - offset`` is not a later position.

    On top of ``add_look_back`` the key ``token[BOS]`` scores ``beta (L - 1 - S_L(t - D))``, a
    linear function of ``pos(t)`` (the rotation form at u = 0, negated, plus a constant), so
    BOS always scores exactly ``beta (L - 1)``: the target ``t - D > 0`` still wins by ``beta``
    (it scores ``beta L``), every other position loses by at least ``beta`` (it scores at most
    ``beta (L - 2)``), and when ``t <= D`` BOS wins by ``beta``. Without the anchor a head
    with ``t < D`` attends to a position fixed by the code alone, which may be an ARROW.
    """
    add_look_back(head, layout, offset, sharpness)
    L = layout["pos_cos"].size
    query: Form = {}
    for b in range(L):
        w = math.pi * (offset % 2 ** (b + 1)) / 2**b
        for d in form(layout, ("pos_cos", b)):
            query[d] = -sharpness * math.cos(w)
        for d in form(layout, ("pos_sin", b)):
            query[d] = -sharpness * math.sin(w)
    head.qk(query, form(layout, bos), query_bias=sharpness * (L - 1))
