"""Layer 7 -- weight every task's answer by its share and sum.

Attention: none (all-zero heads).

MLP, for every task k reading slots ``(a_1..a_r)`` and every input combination
``w = (w_1..w_r)`` (one unit: gadget ``conjunction(r + 2)``):

    out[G_k(w)] += relu(mix[k] + slot[a_1, w_1] + ... + slot[a_r, w_r] + token[ARROW] - (r + 1))
                 = mix[k] * [x[a_k] == w] * [ARROW]        (mix in [0, 1], slot bits)

so at a prediction position exactly one unit of task k fires (``w = x[a_k]``) and
``out[v] = sum_k p_k [G_k(x[a_k]) == v]``, the analytic prediction; ``out = 0`` at every
other position. The readout is ``out``.

Answers of ``A > 1`` tokens: the units above (reading ``slot``, gated by ``token[ARROW]``)
emit the first answer token ``G_k(w)_1``; at answer position ``j = 1..A-1`` the units

    out[G_k(w)_{j+1}] += relu(mix[k] + cslot[a_1, w_1] + .. + cslot[a_r, w_r] + back[j, ARROW] + ok[k] - (r + 2))

emit token ``j + 1`` of every task that fits the answer so far, weighted by the
conditioned mixture (the marginal variant drops ``ok[k]`` and the ``- 1`` it pays for).
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
    for j in range(tasks.answer_length):
        block, gate = ("slot", ctx.token("ARROW")) if j == 0 else ("cslot", ctx.back(j, "ARROW"))
        where = "[ARROW]" if j == 0 else f"[answer position {j}]"
        for k, task in enumerate(tasks.tasks):
            for w in itertools.product(range(tasks.vocab_size), repeat=task.arity):
                v = tasks.answer_of(task, dict(zip(task.slots, w)))[j]
                factors = [form(lay, ("mix", k))]
                factors += [form(lay, (block, tasks.slots_read.index(a), w_a)) for a, w_a in zip(task.slots, w)]
                factors.append(form(lay, gate))
                if j > 0 and ctx.conditioned:
                    factors.append(form(lay, ("ok", k)))
                reads = " * ".join(f"{block}[{a},{w_a}]" for a, w_a in zip(task.slots, w))
                mlp.place(conjunction(len(factors)), f"out[{v}] += mix[{k}] * {reads} * {where}"
                          + (f" * ok[{k}]" if len(factors) > task.arity + 2 else ""),
                          {f"x{i + 1}": f for i, f in enumerate(factors)}, form(lay, ("out", v)))
    return Layer(SPEC, ctx.tasks, attention, mlp, ctx.conditioned)


def exact(view: PromptView, state: Values) -> Values:
    """``out[v] = [ARROW] * sum_k mix[k] [G_k(x)_1 == v]`` (x read off the snapped slot block), and at answer
    position j >= 1 ``sum_k mix[k] ok[k] [G_k(x)_{j+1} == v]`` (x off cslot; no ``ok`` in the marginal variant)."""
    tasks = view.tasks
    A, d = tasks.answer_length, tasks.vocab_size
    out = []
    for t in range(view.T):
        row = bits((d,))
        if view.is_arrow(t):
            j, block = 0, state["slot"][t]
        else:
            j = next((j for j in range(1, A) if state["back"][t][j - 1, d] == 1), None)
            block = state["cslot"][t] if j is not None else None
        if block is not None:
            inputs = {a: next(w for w, flag in enumerate(block[i]) if flag == 1) for i, a in enumerate(tasks.slots_read)}
            for k, task in enumerate(tasks.tasks):
                weight = state["mix"][t][k] * (state["ok"][t][k] if j > 0 and view.conditioned else 1)
                row[tasks.answer_of(task, inputs)[j]] += weight
        out.append(row)
    return {"out": out}


SPEC = LayerSpec(
    7, "weight and sum",
    in_words="out[v] = sum over tasks of mix[k] * [task k answers v on the input]; this is the readout.",
    attention_does="(none)",
    mlp_does="out[G_k(w)] += relu(mix[k] + slot[a_1,w_1] + .. + slot[a_r,w_r] + token[ARROW] - (r+1)) "
             "= sum_k p_k [G_k(x) = v] at ARROWs",
    reads=("mix", "slot", "token", "cslot", "back", "ok"),
    writes=("out",),
    heads="0",
    mlp_width="E*A",
    build=build, exact=exact,
)
