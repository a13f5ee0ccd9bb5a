"""Layer 6 -- fetch every task's output on the current input.

Attention (K heads, look-back heads): at a prediction position ``t`` (an ARROW), input
slot ``a`` sits at ``t - (s - a)``. Head ``k`` looks back ``s - a_k`` and, exactly as in
layer 2, its OV circuit is task k's table, so ``fetch[k, v] ~= [g_k(x[a_k]) == v]``
(the scratch block is clean: layer 2's MLP erased it).

MLP: ``task_out[k, v] = snap(fetch[k, v])`` -- exact bits.
"""

from __future__ import annotations

from .gadgets import snap
from .layer2_check_examples import add_task_fetch_heads
from .residual import Context
from .weights import AttentionBuilder, Layer, MLPBuilder, form


def build(ctx: Context) -> Layer:
    lay, tasks = ctx.layout, ctx.tasks
    s, d = tasks.slots, tasks.vocab_size
    attention, mlp = AttentionBuilder(lay), MLPBuilder(lay)
    add_task_fetch_heads(attention, ctx, offset_of_slot=lambda a: s - a)  # from the prediction position
    for k in range(tasks.K):
        for v in range(d):
            mlp.place(snap(), f"task_out[{k},{v}] = snap(fetch[{k},{v}])",
                      {"x": form(lay, ("fetch", k, v))}, form(lay, ("task_out", k, v)))
    return Layer(
        6, "fetch query outputs",
        attention_does=("head k attends to slot a_k of the current input (t - (s-a_k)) "
                        "and writes one-hot g_k(x) into fetch[k]"),
        mlp_does="task_out = snap(fetch)",
        reads=("token", "pos_cos", "pos_sin", "fetch"),
        writes=("fetch", "task_out"),
        attention=attention, mlp=mlp,
    )
