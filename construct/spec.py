"""One spec per layer: everything the project states about a layer, in one place.

A ``LayerSpec`` holds

* what the layer is for (``title``, ``in_words`` for students, ``attention_does``, ``mlp_does``),
* the residual blocks it reads and writes (``reads``, ``writes``; checked against the
  non-zero weights of every build by ``Layer.check``),
* the heads and MLP units it uses as functions of the task set (``heads``,
  ``mlp_width``; also checked at build time),
* its builder (``build(ctx) -> Layer``), and
* ``exact``: the exact value every written block must hold at every position, in the
  hard-attention limit, as a function of the prompt's tokens and the exact values of
  the blocks the layer reads (``None`` where a value is not determined and not used).

The proofs (``superpose prove``), the per-layer tests, ``superpose layers``, the trace
example and the README's layer table all read the seven specs (``build.LAYER_SPECS``)
instead of restating them. ``exact_values`` chains the seven ``exact`` functions from
the tokens alone; the analytic prediction in ``superpose.verify`` is written without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Sequence

import numpy as np

from superpose.setting import TaskSet

from .weights import AttentionBuilder, MLPBuilder

#: block name -> one entry per position: an exact value (a ``Fraction`` for a scalar block,
#: an object array of ``Fraction`` of the block's shape otherwise), or None where unspecified.
Values = dict[str, list[Any]]


@dataclass(frozen=True)
class PromptView:
    """The token sequence of a prompt, as the layers see it (position by position)."""

    tasks: TaskSet
    tokens: tuple[int, ...]
    conditioned: bool = True

    @property
    def T(self) -> int:
        return len(self.tokens)

    def looks_back(self, t: int, offset: int) -> int | None:
        """The token ``offset`` positions before ``t`` (None before position 0)."""
        return self.tokens[t - offset] if t >= offset else None

    def is_arrow(self, t: int) -> bool:
        return self.tokens[t] == self.tasks.arrow

    def answer_index(self, t: int) -> int | None:
        """j if position t is the ARROW (j = 0) or holds answer token j of an example (1 <= j <= A), else None."""
        for j in range(self.tasks.answer_length + 1):
            if self.looks_back(t, j) == self.tasks.arrow:
                return j
        return None

    def inputs_before(self, t: int, j: int) -> dict[int, int]:
        """The example's input tokens, slot by slot, seen from its answer position j (ARROW: j = 0)."""
        s = self.tasks.slots
        return {a: self.tokens[t - j - (s - a)] for a in self.tasks.slots_read}


@dataclass(frozen=True)
class LayerSpec:
    number: int
    title: str
    in_words: str
    attention_does: str
    mlp_does: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    heads: str       # heads used, a formula in the task-set sizes below (e.g. "S")
    mlp_width: str   # MLP hidden units used, likewise (e.g. "E + S*d")
    build: Callable[[Any], "Layer"]
    exact: Callable[[PromptView, Values], Values]

    def n_heads(self, tasks: TaskSet, conditioned: bool = True) -> int:
        return _evaluate(self.heads, tasks, conditioned)

    def n_units(self, tasks: TaskSet, conditioned: bool = True) -> int:
        return _evaluate(self.mlp_width, tasks, conditioned)


#: The sizes the width formulas may use: d content tokens, K tasks, S distinct slots read,
#: E = sum_k d^{r_k} table entries (one unit per task and input combination), A answer tokens,
#: C = 1 for the model that conditions on the answer so far (0 for the marginal variant).
SIZES = {"d": "content tokens", "K": "tasks", "S": "distinct input slots read", "E": "sum_k d^r_k table entries",
         "A": "tokens per answer", "C": "1 if the model conditions on the answer so far"}


def sizes(tasks: TaskSet, conditioned: bool = True) -> dict[str, int]:
    return {"d": tasks.vocab_size, "K": tasks.K, "S": len(tasks.slots_read),
            "E": sum(tasks.vocab_size ** t.arity for t in tasks.tasks), "A": tasks.answer_length,
            "C": int(bool(conditioned))}


def _evaluate(formula: str, tasks: TaskSet, conditioned: bool = True) -> int:
    return int(eval(formula, {"__builtins__": {}, "min": min}, sizes(tasks, conditioned)))  # noqa: S307 -- ours


def formula_text(formula: str) -> str:
    """``"E + S*d"`` -> ``"E + Sd"``, ``"K**2"`` -> ``"K²"``: the formula as the README writes it."""
    return formula.replace("**2", "²").replace("*", "").replace("min(1, A - 1)", "[A > 1]")


def markdown_table(specs: Sequence["LayerSpec"]) -> str:
    """The README's table of the seven layers, from the specs (a test keeps the README equal to it)."""
    def cell(text: str) -> str:
        return "—" if text == "(none)" else text.replace("|", "\\|")

    rows = ["| layer | heads | attention | MLP units | MLP |", "|---|---|---|---|---|"]
    for spec in specs:
        rows.append(f"| {spec.number} {spec.title} | {formula_text(spec.heads)} | {cell(spec.attention_does)} | "
                    f"{formula_text(spec.mlp_width)} | {cell(spec.mlp_does)} |")
    return "\n".join(rows)


@dataclass
class Layer:
    """A built layer: its spec and the builders that hold its heads and MLP units."""

    spec: LayerSpec
    tasks: TaskSet
    attention: AttentionBuilder
    mlp: MLPBuilder = field(repr=False)
    conditioned: bool = True

    @property
    def number(self) -> int:
        return self.spec.number

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def reads(self) -> tuple[str, ...]:
        return self.spec.reads

    @property
    def writes(self) -> tuple[str, ...]:
        return self.spec.writes

    def touched(self) -> tuple[set[str], set[str]]:
        """Blocks actually read and written by the non-zero weights."""
        lay = self.attention.layout
        reads: set[str] = set()
        writes: set[str] = set()
        for head in self.attention.heads:
            for f, _ in head.query + head.key + head.value:
                reads |= {lay.block_of(d).name for d, c in f.items() if c != 0}
            for out in head.output:
                writes |= {lay.block_of(d).name for d, c in out.items() if c != 0}
        for u in self.mlp.units:
            reads |= {lay.block_of(d).name for d, c in u.reads.items() if c != 0}
            writes |= {lay.block_of(d).name for d, c in u.writes.items() if c != 0}
        return reads, writes

    def check(self) -> None:
        """The built weights touch only the declared blocks and use the stated heads and units."""
        reads, writes = self.touched()
        where = f"layer {self.number} ({self.title})"
        if not reads <= set(self.reads) or not writes <= set(self.writes):
            raise AssertionError(f"{where} reads {sorted(reads)} / writes {sorted(writes)} "
                                 f"but declares reads {sorted(self.reads)} / writes {sorted(self.writes)}")
        heads = self.spec.n_heads(self.tasks, self.conditioned)
        width = self.spec.n_units(self.tasks, self.conditioned)
        if len(self.attention.heads) != heads or self.mlp.width != width:
            raise AssertionError(f"{where} uses {len(self.attention.heads)} heads and {self.mlp.width} units; "
                                 f"its spec states {heads} and {width}")


def bits(shape: tuple[int, ...], ones: Sequence[tuple] = ()) -> np.ndarray:
    """An exact 0/1 array (object dtype, ``Fraction`` entries) with ones at ``ones``."""
    a = np.full(shape, Fraction(0), dtype=object)
    for index in ones:
        a[index] = Fraction(1)
    return a


def exact_values(specs: Sequence[LayerSpec], tasks: TaskSet, tokens: Sequence[int],
                 conditioned: bool = True) -> list[Values]:
    """The exact values each layer writes (``[layer 1, ..., layer 7]``), chained from the tokens."""
    view = PromptView(tasks, tuple(int(t) for t in tokens), conditioned)
    state: Values = {}
    per_layer = []
    for spec in specs:
        written = spec.exact(view, state)
        if not set(written) <= set(spec.writes):   # blocks of longer answers are absent for one-token ones
            raise AssertionError(f"layer {spec.number}: exact() gives {sorted(written)}, writes {spec.writes}")
        state = {**state, **written}
        per_layer.append(written)
    return per_layer

