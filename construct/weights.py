"""Builders that turn "direction A maps to direction B" statements into weight arrays.

A *form* is a sparse linear functional on the residual stream: ``{dim: coefficient}``
(build it with ``form(layout, ("token", v), ("is_answer",), scale=...)`` and add
forms with ``combine``). Blocks are
written by saying what each hidden unit or head dimension reads and writes:

* ``MLPBuilder.unit(label, reads, bias, writes)`` adds one ReLU unit;
  ``MLPBuilder.place(gadget, ...)`` adds all units of a ReLU gadget.
* ``HeadBuilder.qk(query, key)`` adds one query/key dimension (their product is a
  term of the attention score); ``HeadBuilder.ov(value, output)`` adds one value
  dimension and the residual direction it is written to.

Coefficients stay exact (``Fraction``) where they are rational; ``dense()`` turns the
builders into the arrays of a standard transformer layer, and ``spec.Layer.check``
verifies that a layer touches only the blocks it declares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Union

import numpy as np

from .gadgets import Gadget
from .layout import Layout

Coeff = Union[Fraction, float, int]
Form = dict[int, Coeff]


def form(layout: Layout, *directions: tuple, scale: Coeff = 1) -> Form:
    """``scale * (sum of the named directions)``; a direction is ``(block, *index)``."""
    out: Form = {}
    for name, *index in directions:
        dim = layout.at(name, *index)
        out[dim] = out.get(dim, 0) + scale
    return out


def combine(*forms_and_scales: tuple[Form, Coeff]) -> Form:
    out: Form = {}
    for f, scale in forms_and_scales:
        for dim, c in f.items():  # scale 1 skips a Fraction product (builds are dominated by these)
            out[dim] = out.get(dim, 0) + (c if scale == 1 else c * scale)
    return {d: c for d, c in out.items() if c != 0}


@dataclass
class Unit:
    label: str
    reads: Form
    bias: Coeff
    writes: Form


@dataclass
class MLPBuilder:
    """The hidden ReLU units of one MLP sublayer."""

    layout: Layout
    units: list[Unit] = field(default_factory=list)

    def unit(self, label: str, reads: Form, bias: Coeff, writes: Form) -> None:
        self.units.append(Unit(label, dict(reads), bias, dict(writes)))

    def place(self, gadget: Gadget, label: str, inputs: dict[str, Form], output: Form) -> None:
        """Add the units of ``gadget`` reading ``inputs[name]`` and adding its value to ``output``."""
        if set(inputs) != set(gadget.inputs):
            raise ValueError(f"{gadget.name} takes inputs {gadget.inputs}, got {sorted(inputs)}")
        for i, term in enumerate(gadget.terms):
            reads = combine(*((inputs[name], w) for name, w in term.weights))
            writes = {dim: c * term.out for dim, c in output.items()}
            self.unit(f"{label}#{i}" if gadget.width > 1 else label, reads, term.bias, writes)

    @property
    def width(self) -> int:
        return len(self.units)

    def dense(self, width: int, dtype=np.float64) -> dict[str, np.ndarray]:
        if width < self.width:
            raise ValueError(f"MLP needs {self.width} units, only {width} available")
        D = self.layout.d_model
        W_in = np.zeros((D, width), dtype)
        b_in = np.zeros((width,), dtype)
        W_out = np.zeros((width, D), dtype)
        for j, u in enumerate(self.units):
            for dim, c in u.reads.items():
                W_in[dim, j] += float(c)
            b_in[j] = float(u.bias)
            for dim, c in u.writes.items():
                W_out[j, dim] += float(c)
        return {"W_in": W_in, "b_in": b_in, "W_out": W_out, "b_out": np.zeros((D,), dtype)}

    def hidden_labels(self, width: int) -> list[str]:
        return [u.label for u in self.units] + ["unused"] * (width - self.width)


@dataclass
class HeadBuilder:
    """One attention head: score = sum_j q_j k_j; output = sum_j (attention-weighted v_j) * out_j."""

    label: str
    query: list[tuple[Form, Coeff]] = field(default_factory=list)
    key: list[tuple[Form, Coeff]] = field(default_factory=list)
    value: list[tuple[Form, Coeff]] = field(default_factory=list)
    output: list[Form] = field(default_factory=list)

    def qk(self, query: Form, key: Form, query_bias: Coeff = 0, key_bias: Coeff = 0) -> None:
        self.query.append((dict(query), query_bias))
        self.key.append((dict(key), key_bias))

    def ov(self, value: Form, output: Form, value_bias: Coeff = 0) -> None:
        self.value.append((dict(value), value_bias))
        self.output.append(dict(output))

    @property
    def d_head(self) -> int:
        return max(len(self.query), len(self.value))


@dataclass
class AttentionBuilder:
    layout: Layout
    heads: list[HeadBuilder] = field(default_factory=list)

    def head(self, label: str) -> HeadBuilder:
        h = HeadBuilder(label)
        self.heads.append(h)
        return h

    def dense(self, n_heads: int, d_head: int, dtype=np.float64) -> dict[str, np.ndarray]:
        if len(self.heads) > n_heads:
            raise ValueError(f"attention uses {len(self.heads)} heads, only {n_heads} available")
        D = self.layout.d_model
        W = {name: np.zeros((n_heads, D, d_head), dtype) for name in ("W_Q", "W_K", "W_V")}
        b = {name: np.zeros((n_heads, d_head), dtype) for name in ("b_Q", "b_K", "b_V")}
        W_O = np.zeros((n_heads, d_head, D), dtype)
        for h, head in enumerate(self.heads):
            if head.d_head > d_head:
                raise ValueError(f"head {head.label} needs d_head >= {head.d_head}")
            for name, rows in (("Q", head.query), ("K", head.key), ("V", head.value)):
                for j, (f, bias) in enumerate(rows):
                    for dim, c in f.items():
                        W[f"W_{name}"][h, dim, j] += float(c)
                    b[f"b_{name}"][h, j] = float(bias)
            for j, out in enumerate(head.output):
                for dim, c in out.items():
                    W_O[h, j, dim] += float(c)
        return {**W, **b, "W_O": W_O, "b_O": np.zeros((D,), dtype)}
