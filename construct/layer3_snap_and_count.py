"""Layer 3 -- snap the matches and count the consistent tasks.

Attention: none (all-zero heads).

MLP (one hidden layer, so every unit reads a linear function of the residual):

* ``match[k] = snap(match_raw[k])`` -- exact bits;
* ``count = sum_k match_raw[k]`` is linear and within ``K * (error of match_raw)`` of the
  integer ``C`` = number of tasks the example is consistent with, so the gadget
  ``integer_indicator(j)`` gives ``count_is[j] = [C == j]`` exactly, for j = 1..K;
* ``valid = snap(count) = [C >= 1]`` exactly (snap is 1 on all of ``[3/4, inf)``).

At non-answer positions ``match_raw`` is 0, so all of these are 0 there.
"""

from __future__ import annotations

from fractions import Fraction

from .gadgets import integer_indicator, snap
from .residual import Context
from .spec import Layer, LayerSpec, PromptView, Values, bits
from .weights import AttentionBuilder, MLPBuilder, form


def build(ctx: Context) -> Layer:
    lay, K = ctx.layout, ctx.tasks.K
    attention, mlp = AttentionBuilder(lay), MLPBuilder(lay)

    for k in range(K):
        mlp.place(snap(), f"match[{k}] = snap(match_raw[{k}])",
                  {"x": form(lay, ("match_raw", k))}, form(lay, ("match", k)))
    count = form(lay, *(("match_raw", k) for k in range(K)))
    for j in range(1, K + 1):
        mlp.place(integer_indicator(j), f"count_is[{j}] = [sum_k match_raw == {j}]",
                  {"x": count}, form(lay, ("count_is", j - 1)))
    mlp.place(snap(), "valid = snap(sum_k match_raw)", {"x": count}, form(lay, ("valid",)))
    return Layer(SPEC, ctx.tasks, attention, mlp)


def exact(view: PromptView, state: Values) -> Values:
    """``match = match_raw``; ``count_is[j] = [C == j]``, ``valid = [C >= 1]`` with ``C = sum_k match_raw``."""
    K = view.tasks.K
    counts = [int(sum(row)) for row in state["match_raw"]]
    return {"match": [row.copy() for row in state["match_raw"]],
            "count_is": [bits((K,), [(C - 1,)] if 1 <= C <= K else []) for C in counts],
            "valid": [Fraction(int(C >= 1)) for C in counts]}


SPEC = LayerSpec(
    3, "snap and count",
    in_words="turn the checks into exact bits and count how many tasks fit each example.",
    attention_does="(none)",
    mlp_does="match = snap(match_raw); count_is[j] = [sum_k match_raw = j] (trapezoid indicators); "
             "valid = [count >= 1]",
    reads=("match_raw",),
    writes=("match", "count_is", "valid"),
    heads="0",
    mlp_width="6*K + 2",
    build=build, exact=exact,
)
