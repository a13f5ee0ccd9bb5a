"""Layer 2 -- check every example against every task.

Attention (K heads, look-back heads): at an answer position ``t`` of an example whose
inputs start at ``t - s - 1``, input slot ``a`` sits at ``t - (s + 1 - a)``. Head ``k``
looks back ``s + 1 - a_k`` and its OV circuit is task k's table as a 0/1 matrix
(value = one-hot content token ``w``, output ``fetch[k, g_k(w)]``), so

    fetch[k, v] ~= [g_k(x[a_k]) == v]        (error <= (T-1) e^{-2 beta}).

MLP, for every task k and content token v (gadget ``conjunction(3)``, which equals
``f * b1 * b2`` for ``f`` in [0, 1] and bits ``b1, b2``):

    match_raw[k] += relu(fetch[k, v] + token[v] + is_answer - 2)

Only ``v = y`` (the answer token) can contribute, and only at answer positions, so
``match_raw[k] ~= [g_k(x[a_k]) == y] * is_answer``. The same MLP erases the scratch
block exactly with ``fetch[k, v] -= relu(fetch[k, v])`` (``fetch >= 0`` always: it is a
convex combination of 0/1 values), so layer 6 can reuse it.
"""

from __future__ import annotations

from typing import Callable

from .gadgets import conjunction, passthrough
from .positional import add_look_back
from .residual import Context
from .weights import AttentionBuilder, Layer, MLPBuilder, form


def add_task_fetch_heads(attention: AttentionBuilder, ctx: Context, offset_of_slot: Callable[[int], int]) -> None:
    """Head k looks back ``offset_of_slot(a_k)`` positions and writes one-hot ``g_k(token)`` into ``fetch[k]``.

    The OV circuit is task k's table as a 0/1 matrix: value = one-hot content token
    ``w``, output ``fetch[k, g_k(w)]``. Layer 6 uses the same heads with other offsets.
    """
    lay = ctx.layout
    for k, task in enumerate(ctx.tasks.tasks):
        offset = offset_of_slot(task.slot)
        head = attention.head(f"task {k} ({task.name}): look back {offset} to slot {task.slot}, apply table")
        add_look_back(head, lay, offset=offset, sharpness=ctx.sharpness)
        for w in range(ctx.tasks.vocab_size):
            head.ov(form(lay, ctx.token(w)), form(lay, ("fetch", k, task.table[w])))


def build(ctx: Context) -> Layer:
    lay, tasks = ctx.layout, ctx.tasks
    s, d = tasks.slots, tasks.vocab_size
    attention, mlp = AttentionBuilder(lay), MLPBuilder(lay)

    add_task_fetch_heads(attention, ctx, offset_of_slot=lambda a: s + 1 - a)  # from the example's answer

    for k in range(tasks.K):
        for v in range(d):
            mlp.place(conjunction(3), f"match_raw[{k}] += fetch[{k},{v}] * token[{v}] * is_answer",
                      {"x1": form(lay, ("fetch", k, v)), "x2": form(lay, ctx.token(v)),
                       "x3": form(lay, ("is_answer",))},
                      form(lay, ("match_raw", k)))
    for k in range(tasks.K):
        for v in range(d):
            mlp.place(passthrough(-1), f"erase fetch[{k},{v}]",
                      {"x": form(lay, ("fetch", k, v))}, form(lay, ("fetch", k, v)))

    return Layer(
        2, "check examples",
        attention_does=("head k attends to slot a_k of the example (t - (s+1-a_k)) "
                        "and writes one-hot g_k(x) into fetch[k]"),
        mlp_does="match_raw[k] = fetch[k, y] at answer positions; erase fetch",
        reads=("token", "pos_cos", "pos_sin", "is_answer", "fetch"),
        writes=("fetch", "match_raw"),
        attention=attention, mlp=mlp,
    )
