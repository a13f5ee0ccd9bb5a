"""Layer 6 -- fetch the query's inputs.

Attention (one look-back head per slot read): at a prediction position ``t`` (an
ARROW), input slot ``a`` sits at ``t - (s - a)``. The head for slot ``a`` looks back
``s - a`` and, exactly as in layer 2, copies the token there into ``slot[a, .]``, so
``slot[a, w] ~= [x_a == w]`` (the scratch block is clean: layer 2's MLP erased it).

MLP: snap the block in place, ``slot[a, w] += snap(slot[a, w]) - relu(slot[a, w])``
(gadget ``snap_in_place``; ``slot >= 0``), which leaves exact bits for layer 7.
"""

from __future__ import annotations

from .gadgets import snap_in_place
from .layer2_check_examples import add_slot_heads
from .residual import Context
from .spec import Layer, LayerSpec, PromptView, Values, bits
from .weights import AttentionBuilder, MLPBuilder, form


def build(ctx: Context) -> Layer:
    lay, tasks = ctx.layout, ctx.tasks
    s, d = tasks.slots, tasks.vocab_size
    attention, mlp = AttentionBuilder(lay), MLPBuilder(lay)
    add_slot_heads(attention, ctx, offset_of_slot=lambda a: s - a, seen_from="prediction position")
    for a in tasks.slots_read:
        for w in range(d):
            mlp.place(snap_in_place(), f"slot[{a},{w}] = snap(slot[{a},{w}])",
                      {"x": form(lay, ctx.slot(a, w))}, form(lay, ctx.slot(a, w)))
    return Layer(SPEC, tasks, attention, mlp)


def exact(view: PromptView, state: Values) -> Values:
    """``slot[a, w] = [token s - a positions back == w]`` (all zero for BOS or ARROW there).

    Before position ``s`` some look-back would reach before BOS: the value there is one-hot
    of whichever position wins (unspecified) and is never used (no ARROW comes before s + 1).
    """
    tasks = view.tasks
    s, d, read = tasks.slots, tasks.vocab_size, tasks.slots_read
    values = []
    for t in range(view.T):
        if t < s:
            values.append(None)
            continue
        tokens = [(i, view.looks_back(t, s - a)) for i, a in enumerate(read)]
        values.append(bits((len(read), d), [(i, w) for i, w in tokens if w < d]))  # BOS/ARROW copy nothing
    return {"slot": values}


SPEC = LayerSpec(
    6, "fetch query inputs",
    in_words="one head per input slot copies the current input tokens to the ARROW, snapped to exact bits.",
    attention_does="one head per slot a read by a task looks back s-a (slot a of the current input) and copies "
                   "the token into slot[a]",
    mlp_does="slot = snap(slot), in place",
    reads=("token", "pos_cos", "pos_sin", "slot"),
    writes=("slot",),
    heads="S",
    mlp_width="3*S*d",
    build=build, exact=exact,
)
