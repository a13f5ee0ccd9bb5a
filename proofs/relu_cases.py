r"""Symbolic case analysis of sums of ReLUs: the engine behind every gadget lemma.

A *ReLU sum* is ``f(x) = sum_i c_i relu(a_i . x + b_i)`` with exact rational ``a_i, b_i,
c_i``. It is read either from a gadget object of ``construct.gadgets`` (``from_gadget``)
or from the hidden units actually placed in a built MLP (``from_units``), so the
lemmas are about the very coefficients the weights are made of.

Three kinds of claims are proved, all without sampling:

``prove_equal``
    ``f == expected`` on a domain that is a product of finite sets and at most one
    interval. The finite variables are enumerated; the interval is split at every
    breakpoint ``-b_i / a_i`` of a ReLU inside it. On an open piece between two
    consecutive breakpoints no pre-activation changes sign, so every ReLU is either
    its argument or 0 there (decided exactly at one interior rational point) and ``f``
    is one linear polynomial; sympy checks that ``f - expected`` expands to 0 on every
    piece. Both sides are continuous, so equality on the open pieces extends to their
    closures, which cover the interval.
``prove_bounds``
    ``lower <= f <= upper`` on such a domain: on each piece ``f`` is linear, so its
    range over the closed piece is attained at the ends (an unbounded end needs the
    slope to point the right way).
``prove_inactive``
    ``f == 0`` on a box: every pre-activation is affine, so its maximum over the box
    is attained at a vertex; if it is ``<= 0`` at every vertex, every ReLU is 0.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

import sympy as sp

from .result import ProofFailure, require

Interval = sp.Interval
FiniteValues = tuple  # a finite variable's values, e.g. (0, 1)
Domain = Mapping[str, Union[sp.Interval, tuple]]
Expected = Union[sp.Expr, int, Fraction, Callable[[dict], Any]]


def rational(value: Any) -> sp.Rational:
    """The exact sympy rational of an int, Fraction, float (its exact binary value) or sympy number."""
    if isinstance(value, sp.Basic):
        require(value.is_Rational, f"{value} is not rational")
        return value
    if isinstance(value, bool):
        raise ProofFailure(f"{value!r} is a bool, not a coefficient")
    f = Fraction(value)
    return sp.Rational(f.numerator, f.denominator)


def symbol(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


@dataclass(frozen=True)
class ReluUnit:
    """``out * relu(sum_v weights[v] * v + bias)``."""

    weights: tuple[tuple[str, sp.Rational], ...]
    bias: sp.Rational
    out: sp.Rational
    label: str = ""

    def pre_activation(self, values: Mapping[str, Any]) -> sp.Expr:
        return self.bias + sum((w * values[name] for name, w in self.weights), sp.Integer(0))


@dataclass(frozen=True)
class ReluSum:
    units: tuple[ReluUnit, ...]

    @property
    def variables(self) -> set[str]:
        return {name for u in self.units for name, _ in u.weights}

    def expression(self) -> sp.Expr:
        """``sum_i c_i Max(0, a_i . x + b_i)`` as a sympy expression (for display)."""
        values = {name: symbol(name) for name in self.variables}
        return sp.Add(*(u.out * sp.Max(0, u.pre_activation(values)) for u in self.units))

    def value(self, values: Mapping[str, Any]) -> sp.Expr:
        """Exact value at a point (every variable given as a number)."""
        total = sp.Integer(0)
        for u in self.units:
            pre = u.pre_activation(values)
            total += u.out * (pre if pre > 0 else 0)
        return total


def from_gadget(gadget: Any) -> ReluSum:
    """The ReLU sum of a ``construct.gadgets.Gadget`` (its ``terms``), exactly."""
    return ReluSum(tuple(
        ReluUnit(tuple((name, rational(w)) for name, w in term.weights), rational(term.bias), rational(term.out),
                 f"{gadget.name}#{i}")
        for i, term in enumerate(gadget.terms)
    ))


def from_units(units: Iterable[Any], output_dim: int, variables: Mapping[str, Mapping[int, Any]],
               describe: Callable[[int], str] = str) -> ReluSum:
    """De-place MLP units (``construct.weights.Unit``) that write ``output_dim``.

    Every unit must read a multiple of each variable's residual form (a form is
    ``{dim: coefficient}``; the variable is the form's value) and nothing else, and write
    only ``output_dim``. The result is the ReLU sum of ``output_dim``'s increment as a
    function of the variables.
    """
    supports = {name: {d for d, c in form.items() if c != 0} for name, form in variables.items()}
    allowed = set().union(*supports.values()) if supports else set()
    relu_units = []
    for u in units:
        label = getattr(u, "label", "")
        read = {d for d, c in u.reads.items() if c != 0}
        require(read <= allowed, f"unit {label!r} reads {sorted(describe(d) for d in read - allowed)}, "
                                 f"outside the inputs {sorted(variables)}")
        weights = []
        for name, form in variables.items():
            ratios = {rational(u.reads.get(d, 0)) / rational(c) for d, c in form.items() if c != 0}
            require(len(ratios) == 1, f"unit {label!r} does not read a multiple of input {name!r}")
            w = ratios.pop()
            if w != 0:
                weights.append((name, w))
        written = {d for d, c in u.writes.items() if c != 0}
        require(written == {output_dim}, f"unit {label!r} writes {sorted(describe(d) for d in written)}, "
                                         f"expected only {describe(output_dim)}")
        relu_units.append(ReluUnit(tuple(weights), rational(u.bias), rational(u.writes[output_dim]), label))
    return ReluSum(tuple(relu_units))


def _split_domain(domain: Domain) -> tuple[str | None, sp.Interval | None, list[dict[str, sp.Rational]]]:
    """(the interval variable or None, its interval, every assignment of the finite variables)."""
    continuous = [(n, d) for n, d in domain.items() if isinstance(d, sp.Interval) and d.measure != 0]
    require(len(continuous) <= 1, f"at most one interval variable is supported, got {[n for n, _ in continuous]}")
    finite: list[tuple[str, tuple]] = []
    for name, values in domain.items():
        if isinstance(values, sp.Interval):
            if values.measure == 0:
                finite.append((name, (values.start,)))
        else:
            finite.append((name, tuple(values)))
    assignments = [
        {name: rational(v) for (name, _), v in zip(finite, combo)}
        for combo in itertools.product(*(values for _, values in finite))
    ]
    if continuous:
        return continuous[0][0], continuous[0][1], assignments
    return None, None, assignments


def _expected_at(expected: Expected, values: dict[str, Any]) -> sp.Expr:
    if callable(expected) and not isinstance(expected, sp.Basic):
        return sp.sympify(expected(values))
    expr = sp.sympify(expected if not isinstance(expected, Fraction) else rational(expected))
    return expr.subs({symbol(n): v for n, v in values.items()})


def _pieces(f: ReluSum, var: str, interval: sp.Interval, fixed: Mapping[str, sp.Rational]):
    """Yield (left, right, linear polynomial equal to f on the open piece) for the interval."""
    x = symbol(var)
    lines = []
    for u in f.units:
        names = {n for n, _ in u.weights}
        require(names <= set(fixed) | {var}, f"unit {u.label!r} reads {sorted(names - set(fixed) - {var})}, "
                                             "which the domain does not give")
        slope = sum((w for n, w in u.weights if n == var), sp.Integer(0))
        intercept = u.bias + sum((w * fixed[n] for n, w in u.weights if n != var), sp.Integer(0))
        lines.append((slope, intercept, u.out))
    lo, hi = interval.start, interval.end
    breaks = sorted({-c / a for a, c, _ in lines if a != 0 and lo < -c / a < hi})
    cuts = [lo, *breaks, hi]
    for left, right in zip(cuts, cuts[1:]):
        if left.is_infinite and right.is_infinite:
            probe = sp.Integer(0)
        elif left.is_infinite:
            probe = right - 1
        elif right.is_infinite:
            probe = left + 1
        else:
            probe = (left + right) / 2
        piece = sp.Add(*(out * (a * x + c) for a, c, out in lines if a * probe + c > 0))
        yield left, right, sp.expand(piece)


def _where(fixed: Mapping[str, Any]) -> str:
    return f"at {', '.join(f'{k} = {v}' for k, v in fixed.items())}, " if fixed else ""


def prove_equal(f: ReluSum, domain: Domain, expected: Expected) -> int:
    """Prove ``f == expected`` on the domain; returns the number of linear pieces checked."""
    var, interval, assignments = _split_domain(domain)
    pieces = 0
    for fixed in assignments:
        if var is None:
            got, want = f.value(fixed), _expected_at(expected, fixed)
            require(sp.simplify(got - want) == 0, f"at {fixed}: the units give {got}, expected {want}")
            pieces += 1
            continue
        x = symbol(var)
        want = sp.expand(_expected_at(expected, {**fixed, var: x}))
        require(want.free_symbols <= {x}, f"expected value {want} depends on more than {var}")
        for left, right, piece in _pieces(f, var, interval, fixed):
            require(sp.expand(piece - want) == 0,
                    f"{_where(fixed)}for {var} in ({left}, {right}): the units give {piece}, expected {want}")
            pieces += 1
    return pieces


def prove_bounds(f: ReluSum, domain: Domain, lower: Any, upper: Any) -> int:
    """Prove ``lower <= f <= upper`` on the domain; returns the number of linear pieces checked."""
    var, interval, assignments = _split_domain(domain)
    lower, upper = sp.sympify(lower), sp.sympify(upper)
    pieces = 0
    for fixed in assignments:
        if var is None:
            got = f.value(fixed)
            require(bool(lower <= got <= upper), f"at {fixed}: value {got} is outside [{lower}, {upper}]")
            pieces += 1
            continue
        x = symbol(var)
        for left, right, piece in _pieces(f, var, interval, fixed):
            slope = piece.coeff(x, 1)
            ends = []
            for end, direction in ((left, -1), (right, 1)):
                if end.is_infinite:
                    ends.append(piece.coeff(x, 0) if slope == 0 else direction * slope * sp.oo)
                else:
                    ends.append(piece.subs(x, end))
            require(bool(lower <= min(ends)) and bool(max(ends) <= upper),
                    f"{_where(fixed)}for {var} in [{left}, {right}]: {piece} leaves [{lower}, {upper}]")
            pieces += 1
    return pieces


def prove_inactive(f: ReluSum, box: Mapping[str, Union[sp.Interval, tuple]]) -> int:
    """Prove every pre-activation is ``<= 0`` on the box (so ``f == 0``); returns the vertices checked."""
    corners = {name: ((d.start, d.end) if isinstance(d, sp.Interval) else tuple(d)) for name, d in box.items()}
    for name, ends in corners.items():
        require(all(not sp.sympify(e).is_infinite for e in ends), f"box side {name} is unbounded")
    names = sorted(corners)
    vertices = [dict(zip(names, map(rational, combo))) for combo in itertools.product(*(corners[n] for n in names))]
    for u in f.units:
        missing = {n for n, _ in u.weights} - set(names)
        require(not missing, f"unit {u.label!r} reads {sorted(missing)}, which the box does not bound")
        for vertex in vertices:
            pre = u.pre_activation(vertex)
            require(pre <= 0, f"unit {u.label!r} is active (pre-activation {pre}) at the vertex {vertex}")
    return len(vertices) * len(f.units)


def interval(lo: Any, hi: Any) -> sp.Interval:
    """A closed interval with exact rational ends (``None`` for an unbounded end)."""
    return sp.Interval(-sp.oo if lo is None else rational(lo), sp.oo if hi is None else rational(hi))


BIT = (0, 1)


def prove_equal_at(f: ReluSum, assignments: Sequence[Mapping[str, Any]], expected: Expected) -> int:
    """Prove ``f == expected`` at each of finitely many points (every variable given); returns their number."""
    for point in assignments:
        exact = {name: rational(v) for name, v in point.items()}
        got, want = f.value(exact), _expected_at(expected, exact)
        require(sp.simplify(got - want) == 0, f"at {exact}: the units give {got}, expected {want}")
    return len(assignments)
