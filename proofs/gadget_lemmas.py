r"""Lemmas G1-G4: every ReLU gadget of ``construct.gadgets`` equals its specification.

The coefficients are read from the gadget objects themselves (``Gadget.terms``); the
per-layer lemmas in ``layer_lemmas`` prove the same statements again on the units that
``build`` actually placed in each MLP. Each proof is the symbolic case analysis of
``relu_cases`` (split at every ReLU breakpoint, one linear polynomial per piece).
"""

from __future__ import annotations

import itertools

from fractions import Fraction
from typing import Callable, Sequence

import sympy as sp

from superpose.construct import gadgets as construct_gadgets

from .relu_cases import BIT, from_gadget, interval, prove_bounds, prove_equal, prove_inactive, symbol
from .result import ProofFailure, lemma, require

QUARTER, THREE_QUARTERS = Fraction(1, 4), Fraction(3, 4)


def _inputs(gadget, expected: tuple[str, ...]) -> None:
    require(tuple(gadget.inputs) == expected, f"{gadget.name} takes inputs {gadget.inputs}, expected {expected}")


@lemma("G1 snap", "snap(x) = 0 for x <= 1/4, = 1 for x >= 3/4, and 0 <= snap(x) <= 1 for every real x")
def check_snap(gadget=None) -> str:
    gadget = gadget if gadget is not None else construct_gadgets.snap()
    _inputs(gadget, ("x",))
    f = from_gadget(gadget)
    pieces = prove_equal(f, {"x": interval(None, QUARTER)}, 0)
    pieces += prove_equal(f, {"x": interval(THREE_QUARTERS, None)}, 1)
    pieces += prove_bounds(f, {"x": interval(None, None)}, 0, 1)
    return f"{f.expression()}: {pieces} linear pieces checked"


@lemma("G2 integer indicator",
       "is_integer[j](x) = 1 for |x - j| <= 1/4 and 0 for |x - j| >= 3/4 (j = 1..8), so on the window "
       "|x - C| <= 1/4 of an integer C it is exactly [C == j]")
def check_integer_indicator(factory: Callable[[int], object] = construct_gadgets.integer_indicator,
                            largest: int = 8) -> str:
    pieces = 0
    for j in range(1, largest + 1):
        gadget = factory(j)
        _inputs(gadget, ("x",))
        f = from_gadget(gadget)
        try:
            pieces += prove_equal(f, {"x": interval(j - QUARTER, j + QUARTER)}, 1)
            pieces += prove_equal(f, {"x": interval(None, j - THREE_QUARTERS)}, 0)
            pieces += prove_equal(f, {"x": interval(j + THREE_QUARTERS, None)}, 0)
            for count in range(0, largest + 2):
                pieces += prove_equal(f, {"x": interval(count - QUARTER, count + QUARTER)}, int(count == j))
        except ProofFailure as failure:
            raise ProofFailure(f"{gadget.name}: {failure}") from None
    return f"j = 1..{largest}, windows of C = 0..{largest + 1}: {pieces} linear pieces checked"


@lemma("G3 conjunction",
       "scale * relu(x1 + ... + xn - (n-1)) = scale * x1 * ... * xn when one xi lies in [0,1] and the others "
       "are bits, = 0 on [0,1]^n whenever some xi = 0, and relu(x1 + ... + xn - (n-1)) <= x1 * ... * xn "
       "on all of [0,1]^n (n = 2..5; scale = 1, 1/2, ..., 1/6)")
def check_conjunction(factory: Callable[..., object] = construct_gadgets.conjunction,
                      sizes: Sequence[int] = (2, 3, 4, 5),
                      scales: Sequence[Fraction] = tuple(Fraction(1, j) for j in range(1, 7))) -> str:
    pieces = 0
    for n in sizes:
        names = tuple(f"x{i}" for i in range(1, n + 1))
        product = sp.Mul(*(symbol(v) for v in names))
        for scale in scales:
            gadget = factory(n, scale)
            _inputs(gadget, names)
            f = from_gadget(gadget)
            for soft in names:   # the soft input may be any of them (r soft slots read one at a time)
                domain = {v: interval(0, 1) if v == soft else BIT for v in names}
                pieces += prove_equal(f, domain, sp.Rational(scale.numerator, scale.denominator) * product)
            for zero in names:
                box = {v: (0,) if v == zero else interval(0, 1) for v in names}
                pieces += prove_inactive(f, box)
        # Lukasiewicz <= product on the whole cube: product - (sum - (n-1)) is multilinear, so its
        # minimum over [0,1]^n is at a vertex; there it is [no zero] - (1 - #zeros) >= 0. The ReLU
        # is then below the product too, since the product is >= 0.
        gap = product - (sp.Add(*(symbol(v) for v in names)) - (n - 1))
        require(all(sp.Poly(gap, *(symbol(v) for v in names)).degree(symbol(v)) <= 1 for v in names),
                f"n={n}: product - sum is not multilinear")
        for vertex in itertools.product((0, 1), repeat=n):
            value = gap.subs(dict(zip((symbol(v) for v in names), vertex)))
            require(value >= 0, f"n={n}: at the vertex {vertex} the ReLU exceeds the product by {-value}")
            pieces += 1
    return f"n in {tuple(sizes)}, {len(scales)} scales: {pieces} pieces and vertices checked"


@lemma("G5 snap in place",
       "x + snap_in_place(x) = snap(x) for every x >= 0: 0 on [0, 1/4], the ramp 2x - 1/2 on [1/4, 3/4], "
       "1 on [3/4, oo)")
def check_snap_in_place(factory: Callable[[], object] = construct_gadgets.snap_in_place) -> str:
    gadget = factory()
    _inputs(gadget, ("x",))
    f, x = from_gadget(gadget), symbol("x")
    pieces = prove_equal(f, {"x": interval(0, Fraction(1, 4))}, -x)
    pieces += prove_equal(f, {"x": interval(Fraction(3, 4), None)}, 1 - x)
    pieces += prove_equal(f, {"x": interval(Fraction(1, 4), Fraction(3, 4))}, x - Fraction(1, 2))
    return f"{pieces} linear pieces checked"


@lemma("G4 passthrough", "out * relu(x) = out * x for x >= 0 (out = -1 erases a non-negative scratch value)")
def check_passthrough(factory: Callable[..., object] = construct_gadgets.passthrough,
                      outs: Sequence[int] = (-1, 1)) -> str:
    pieces = 0
    for out in outs:
        gadget = factory(out)
        _inputs(gadget, ("x",))
        pieces += prove_equal(from_gadget(gadget), {"x": interval(0, None)}, out * symbol("x"))
    return f"out in {tuple(outs)}: {pieces} linear pieces checked"
