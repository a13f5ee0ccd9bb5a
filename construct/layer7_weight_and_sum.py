"""Layer 7 -- weight every task's answer by its share and sum.

Attention: none (all-zero heads).

MLP, for every task k and content token v (gadget ``conjunction(3)``):

    out[v] += relu(mix[k] + task_out[k, v] + token[ARROW] - 2)
            = mix[k] * task_out[k, v] * [ARROW]        (mix in [0, 1], bits)

so at a prediction position ``out[v] = sum_k p_k [g_k(x[a_k]) == v]``, the analytic
prediction, and ``out = 0`` at every other position. The readout is ``out``.
"""

from __future__ import annotations

from .gadgets import conjunction
from .residual import Context
from .weights import AttentionBuilder, Layer, MLPBuilder, form


def build(ctx: Context) -> Layer:
    lay, tasks = ctx.layout, ctx.tasks
    attention, mlp = AttentionBuilder(lay), MLPBuilder(lay)
    for k in range(tasks.K):
        for v in range(tasks.vocab_size):
            mlp.place(conjunction(3), f"out[{v}] += mix[{k}] * task_out[{k},{v}] * [ARROW]",
                      {"x1": form(lay, ("mix", k)), "x2": form(lay, ("task_out", k, v)),
                       "x3": form(lay, ctx.token("ARROW"))},
                      form(lay, ("out", v)))
    return Layer(
        7, "weight and sum",
        attention_does="(none)",
        mlp_does="out[v] = sum_k mix[k] * task_out[k, v] at prediction positions",
        reads=("mix", "task_out", "token"),
        writes=("out",),
        attention=attention, mlp=mlp,
    )
