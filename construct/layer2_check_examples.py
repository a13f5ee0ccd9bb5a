"""Layer 2 -- check every example against every task.

Attention (one look-back head per slot read): at an answer position ``t`` of an
example whose inputs start at ``t - s - 1``, input slot ``a`` sits at ``t - (s + 1 - a)``.
The head for slot ``a`` looks back ``s + 1 - a`` and copies the one-hot token there
into ``slot[a, .]`` (its OV circuit is the identity on content tokens), so

    slot[a, w] ~= [x_a == w]        (error <= (T-1) e^{-2 beta}; slot[a, .] sums to at most 1,
                                     since BOS and ARROW copy nothing).

MLP, for every task k reading slots ``(a_1..a_r)`` and every input combination
``w = (w_1..w_r)`` (one unit: gadget ``conjunction(r + 2)``):

    match_raw[k] += relu(slot[a_1, w_1] + ... + slot[a_r, w_r] + token[G_k(w)] + is_answer - (r + 1))

With the slots exact bits only ``w = x[a_k]`` can fire, only if ``G_k(w) = y`` (the answer
token) and only at answer positions, so ``match_raw[k] = [G_k(x[a_k]) == y] * is_answer``.
With soft slots ``m_j = slot[a_j, .]`` (each a non-negative vector of sum at most 1, within
``eps`` of the one-hot of ``x_{a_j}``) the sum lies within ``r eps`` of that bit: the firing unit loses at
most ``sum_j eps``, and ``relu(sum_j m_j(w_j) - (r - 1)) <= prod_j m_j(w_j)`` (the
Lukasiewicz and product t-norms, lemma G3), whose sum over ``w != x`` is at most
``1 - prod_j (1 - eps) <= r eps``. The same MLP erases the scratch block exactly with
``slot[a, w] -= relu(slot[a, w])`` (``slot >= 0``: a convex combination of 0/1 values), so
layer 6 can reuse it.

Answers of ``A > 1`` tokens: the check happens at the last answer token (``is_answer``),
whose example's slot a is ``s + A - a`` back, and the unit for ``(k, w)`` also reads the
answer tokens ``y_1..y_A`` (``y_o`` is ``A - o`` back: ``token`` for o = A, else ``back``):
``relu(sum_j slot[a_j, w_j] + sum_o [y_o = G_k(w)_o] + is_answer - (r + A))``.
"""

from __future__ import annotations

import itertools

from .gadgets import conjunction, passthrough
from .positional import add_look_back
from .residual import Context
from .spec import Layer, LayerSpec, PromptView, Values, bits
from .weights import AttentionBuilder, MLPBuilder, form


def add_slot_heads(attention: AttentionBuilder, ctx: Context, offset_of_slot, seen_from: str) -> None:
    """One head per slot read: look back ``offset_of_slot(a)`` and copy the token into ``slot[a, .]``.

    Layers 2 (from an example's answer) and 6 (from an ARROW) differ only in the offset.
    """
    lay = ctx.layout
    for a in ctx.tasks.slots_read:
        offset = offset_of_slot(a)
        head = attention.head(f"slot {a}: look back {offset} (from the {seen_from}) and copy the token")
        add_look_back(head, lay, offset=offset, sharpness=ctx.sharpness)
        for w in range(ctx.tasks.vocab_size):
            head.ov(form(lay, ctx.token(w)), form(lay, ctx.slot(a, w)))


def build(ctx: Context) -> Layer:
    lay, tasks = ctx.layout, ctx.tasks
    s, d = tasks.slots, tasks.vocab_size
    attention, mlp = AttentionBuilder(lay), MLPBuilder(lay)

    A = tasks.answer_length
    add_slot_heads(attention, ctx, offset_of_slot=lambda a: s + A - a, seen_from="answer")

    for k, task in enumerate(tasks.tasks):
        r = task.arity
        for w in itertools.product(range(d), repeat=r):
            y = tasks.answer_of(task, dict(zip(task.slots, w)))
            factors = [form(lay, ctx.slot(a, w_j)) for a, w_j in zip(task.slots, w)]
            factors += [form(lay, ctx.token_back(A - o, y[o - 1])) for o in range(1, A + 1)]
            factors.append(form(lay, ("is_answer",)))
            reads = " * ".join(f"slot[{a},{w_j}]" for a, w_j in zip(task.slots, w))
            answer = f"token[{y[0]}]" if A == 1 else f"answer {list(y)}"
            mlp.place(conjunction(len(factors)), f"match_raw[{k}] += {reads} * {answer} * is_answer",
                      {f"x{i + 1}": f for i, f in enumerate(factors)}, form(lay, ("match_raw", k)))
    for a in tasks.slots_read:
        for w in range(d):
            mlp.place(passthrough(-1), f"erase slot[{a},{w}]", {"x": form(lay, ctx.slot(a, w))},
                      form(lay, ctx.slot(a, w)))
    return Layer(SPEC, ctx.tasks, attention, mlp, ctx.conditioned)


def exact(view: PromptView, state: Values) -> Values:
    """``slot = 0`` (erased); ``match_raw[k] = is_answer * [G_k(example inputs) == answer]``."""
    tasks = view.tasks
    S, d, A = len(tasks.slots_read), tasks.vocab_size, tasks.answer_length
    match_raw = []
    for t in range(view.T):
        if state["is_answer"][t] == 1:
            inputs = view.inputs_before(t, A)
            answer = view.tokens[t - A + 1:t + 1]
            match_raw.append(bits((tasks.K,), [(k,) for k, task in enumerate(tasks.tasks)
                                               if tasks.answer_of(task, inputs) == answer]))
        else:
            match_raw.append(bits((tasks.K,)))
    return {"slot": [bits((S, d)) for _ in range(view.T)], "match_raw": match_raw}


SPEC = LayerSpec(
    2, "check examples",
    in_words=("one head per input slot copies the example's input tokens to its answer; the MLP checks every "
              "task's answer on them against the given answer, then wipes the scratch block slot (layer 6 reuses it)."),
    attention_does="one head per slot a read by a task looks back s+A-a (slot a of the example, seen from "
                   "its last answer token) and copies the token into slot[a]",
    mlp_does="match_raw[k] = sum_w relu(slot[a_1,w_1] + .. + slot[a_r,w_r] + [answer = G_k(w)] + is_answer - (r+A)); "
             "erase slot",
    reads=("token", "pos_cos", "pos_sin", "is_answer", "slot", "back"),
    writes=("slot", "match_raw"),
    heads="S",
    mlp_width="E + S*d",
    build=build, exact=exact,
)
