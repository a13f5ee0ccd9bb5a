"""Layer 7 -- weight every task's answer by its share and sum.

Attention: none (all-zero heads).

MLP, for every task k reading slots ``(a_1..a_r)`` and every input combination
``w = (w_1..w_r)`` (one unit: gadget ``conjunction(r + 2)``):

    out[G_k(w)] += relu(mix[k] + slot[a_1, w_1] + ... + slot[a_r, w_r] + token[ARROW] - (r + 1))
                 = mix[k] * [x[a_k] == w] * [ARROW]        (mix in [0, 1], slot bits)

so at a prediction position exactly one unit of task k fires (``w = x[a_k]``) and
``out[v] = sum_k p_k [G_k(x[a_k]) == v]``, the analytic prediction; ``out = 0`` at every
other position. The readout is ``out``.
"""

from __future__ import annotations

import itertools

from .gadgets import conjunction
from .residual import Context
from .spec import Layer, LayerSpec, PromptView, Values, bits
from .weights import AttentionBuilder, MLPBuilder, form


def build(ctx: Context) -> Layer:
    lay, tasks = ctx.layout, ctx.tasks
    attention, mlp = AttentionBuilder(lay), MLPBuilder(lay)
    for k, task in enumerate(tasks.tasks):
        r = task.arity
        for w in itertools.product(range(tasks.vocab_size), repeat=r):
            v = task(dict(zip(task.slots, w)))
            inputs = {"x1": form(lay, ("mix", k))}
            inputs.update({f"x{j + 2}": form(lay, ctx.slot(a, w_j)) for j, (a, w_j) in enumerate(zip(task.slots, w))})
            inputs[f"x{r + 2}"] = form(lay, ctx.token("ARROW"))
            reads = " * ".join(f"slot[{a},{w_j}]" for a, w_j in zip(task.slots, w))
            mlp.place(conjunction(r + 2), f"out[{v}] += mix[{k}] * {reads} * [ARROW]", inputs, form(lay, ("out", v)))
    return Layer(SPEC, tasks, attention, mlp)


def exact(view: PromptView, state: Values) -> Values:
    """``out[v] = [ARROW] * sum_k mix[k] [G_k(x) == v]``, x read off the snapped slot block."""
    tasks = view.tasks
    out = []
    for t in range(view.T):
        row = bits((tasks.vocab_size,))
        if view.is_arrow(t):
            inputs = {a: next(w for w, flag in enumerate(state["slot"][t][i]) if flag == 1)
                      for i, a in enumerate(tasks.slots_read)}
            for k, task in enumerate(tasks.tasks):
                row[task(inputs)] += state["mix"][t][k]
        out.append(row)
    return {"out": out}


SPEC = LayerSpec(
    7, "weight and sum",
    in_words="out[v] = sum over tasks of mix[k] * [task k answers v on the input]; this is the readout.",
    attention_does="(none)",
    mlp_does="out[G_k(w)] += relu(mix[k] + slot[a_1,w_1] + .. + slot[a_r,w_r] + token[ARROW] - (r+1)) "
             "= sum_k p_k [G_k(x) = v] at ARROWs",
    reads=("mix", "slot", "token"),
    writes=("out",),
    heads="0",
    mlp_width="E",
    build=build, exact=exact,
)
