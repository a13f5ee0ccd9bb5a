"""ReLU gadgets: small exact sums of ReLUs that the MLP sublayers are made of.

A gadget is ``g(x) = sum_i c_i * relu(a_i . x + b_i)`` with rational ``a_i, b_i, c_i``
(kept as ``Fraction`` so the sympy checks in ``superpose.proofs`` read the very
coefficients the weights are made from). Each gadget states the domain on which it
equals its specification; an MLP places a gadget by giving a residual form for each
input and a residual direction for its output (``weights.MLPBuilder.place``).

snap(x)
    ``(relu(4x - 1) - relu(4x - 3)) / 2``: exactly 0 for ``x <= 1/4`` and exactly 1 for
    ``x >= 3/4`` (a ramp in between). Restores an exact bit from a value that soft
    attention has left within 1/4 of 0 or 1, so errors do not accumulate.
integer_indicator(j)
    ``2 (relu(x-j+3/4) - relu(x-j+1/4) - relu(x-j-1/4) + relu(x-j-3/4))``: exactly 1 for
    ``|x - j| <= 1/4`` and exactly 0 for ``|x - j| >= 3/4``. Reads an integer count.
conjunction(n)
    ``relu(x_1 + ... + x_n - (n - 1))``: equals ``x_1 * x_2 * ... * x_n`` when ``x_1`` lies
    in ``[0, 1]`` and ``x_2 .. x_n`` are bits. Gating (``p * b``) and AND in one ReLU.
passthrough
    ``relu(x)``: equals ``x`` for ``x >= 0``; with output coefficient -1 it erases a
    non-negative scratch value exactly.
snap_in_place
    ``snap(x) - relu(x)``: added to ``x >= 0`` it leaves ``snap(x)``, so a residual entry is
    snapped in place (``-x`` on ``[0, 1/4]``, ``1 - x`` on ``[3/4, oo)``).

>>> snap()(x=Fraction(9, 10)), snap()(x=Fraction(1, 10)), snap()(x=Fraction(1, 2))
(Fraction(1, 1), Fraction(0, 1), Fraction(1, 2))
>>> integer_indicator(2)(x=2), integer_indicator(2)(x=3)
(Fraction(1, 1), Fraction(0, 1))
>>> conjunction(3)(x1=Fraction(1, 3), x2=1, x3=1), conjunction(3)(x1=Fraction(1, 3), x2=0, x3=1)
(Fraction(1, 3), Fraction(0, 1))
>>> [x + snap_in_place()(x=x) for x in (Fraction(1, 5), Fraction(4, 5))]
[Fraction(0, 1), Fraction(1, 1)]
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable


@dataclass(frozen=True)
class ReluTerm:
    """``out * relu(sum_j weights[j] * x_j + bias)``."""

    weights: tuple[tuple[str, Fraction], ...]
    bias: Fraction
    out: Fraction


@dataclass(frozen=True)
class Gadget:
    name: str
    inputs: tuple[str, ...]
    terms: tuple[ReluTerm, ...]
    statement: str

    def __call__(self, relu: Callable[[Any], Any] | None = None, **x: Any) -> Any:
        """Evaluate on the named inputs (exact for Fractions; pass ``relu`` for sympy)."""
        relu = relu or (lambda z: z if z > 0 else 0 * z)
        missing = set(self.inputs) - set(x)
        if missing:
            raise TypeError(f"gadget {self.name} needs inputs {sorted(missing)}")
        total: Any = Fraction(0)
        for term in self.terms:
            pre = term.bias + sum(w * x[name] for name, w in term.weights)
            total = total + term.out * relu(pre)
        return total

    @property
    def width(self) -> int:
        """Hidden ReLU units the gadget uses."""
        return len(self.terms)


def _term(weights: dict[str, int | Fraction], bias: int | Fraction, out: int | Fraction) -> ReluTerm:
    return ReluTerm(tuple((k, Fraction(v)) for k, v in weights.items()), Fraction(bias), Fraction(out))


def snap() -> Gadget:
    q = Fraction(1, 2)
    return Gadget(
        "snap", ("x",),
        (_term({"x": 4}, -1, q), _term({"x": 4}, -3, -q)),
        "snap(x) = 0 for x <= 1/4 and snap(x) = 1 for x >= 3/4",
    )


def integer_indicator(j: int) -> Gadget:
    return Gadget(
        f"is_integer[{j}]", ("x",),
        (
            _term({"x": 1}, Fraction(3, 4) - j, 2),
            _term({"x": 1}, Fraction(1, 4) - j, -2),
            _term({"x": 1}, -Fraction(1, 4) - j, -2),
            _term({"x": 1}, -Fraction(3, 4) - j, 2),
        ),
        f"is_integer[{j}](x) = 1 for |x - {j}| <= 1/4 and 0 for |x - {j}| >= 3/4",
    )


def conjunction(n: int, scale: int | Fraction = 1) -> Gadget:
    names = tuple(f"x{i}" for i in range(1, n + 1))
    return Gadget(
        f"conjunction[{n}]" + (f"*{scale}" if scale != 1 else ""), names,
        (_term({name: 1 for name in names}, -(n - 1), scale),),
        f"{'' if scale == 1 else str(scale) + ' * '}relu(x1 + ... + x{n} - {n - 1}) = "
        f"{'' if scale == 1 else str(scale) + ' * '}x1 * ... * x{n} for x1 in [0, 1] and x2..x{n} in {{0, 1}}",
    )


def passthrough(out: int | Fraction = 1) -> Gadget:
    return Gadget("passthrough", ("x",), (_term({"x": 1}, 0, out),),
                  f"{out} * relu(x) = {out} * x for x >= 0")


def snap_in_place() -> Gadget:
    q = Fraction(1, 2)
    return Gadget(
        "snap_in_place", ("x",),
        (_term({"x": 1}, 0, -1), _term({"x": 4}, -1, q), _term({"x": 4}, -3, -q)),
        "x + snap_in_place(x) = 0 for 0 <= x <= 1/4 and = 1 for x >= 3/4",
    )
