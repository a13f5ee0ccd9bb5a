"""Layer 3 -- snap the matches and count the consistent tasks.

Attention: none (all-zero heads).

MLP (one hidden layer, so every unit reads a linear function of the residual):

* ``match[k] = snap(match_raw[k])`` -- exact bits;
* ``count = sum_k match_raw[k]`` is linear and within ``K * (leak)`` of the integer
  ``C`` = number of tasks the example is consistent with, so the gadget
  ``integer_indicator(j)`` gives ``count_is[j] = [C == j]`` exactly, for j = 1..K;
* ``valid = snap(count) = [C >= 1]`` exactly (snap is 1 on all of ``[3/4, inf)``).

At non-answer positions ``match_raw`` is 0, so all of these are 0 there.
"""

from __future__ import annotations

from .gadgets import integer_indicator, snap
from .residual import Context
from .weights import AttentionBuilder, Layer, MLPBuilder, combine, form


def build(ctx: Context) -> Layer:
    lay, K = ctx.layout, ctx.tasks.K
    attention, mlp = AttentionBuilder(lay), MLPBuilder(lay)

    for k in range(K):
        mlp.place(snap(), f"match[{k}] = snap(match_raw[{k}])",
                  {"x": form(lay, ("match_raw", k))}, form(lay, ("match", k)))
    count = combine(*((form(lay, ("match_raw", k)), 1) for k in range(K)))
    for j in range(1, K + 1):
        mlp.place(integer_indicator(j), f"count_is[{j}] = [sum_k match_raw == {j}]",
                  {"x": count}, form(lay, ("count_is", j - 1)))
    mlp.place(snap(), "valid = snap(sum_k match_raw)", {"x": count}, form(lay, ("valid",)))

    return Layer(
        3, "snap and count",
        attention_does="(none)",
        mlp_does="match = snap(match_raw); count_is[j] = [sum_k match_raw == j]; valid = [count >= 1]",
        reads=("match_raw",),
        writes=("match", "count_is", "valid"),
        attention=attention, mlp=mlp,
    )
