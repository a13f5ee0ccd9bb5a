"""Layer 6 -- fetch the query's inputs.

Attention (one look-back head per slot read): at a prediction position ``t`` (an
ARROW), input slot ``a`` sits at ``t - (s - a)``. The head for slot ``a`` looks back
``s - a`` and, exactly as in layer 2, copies the token there into ``slot[a, .]``, so
``slot[a, w] ~= [x_a == w]`` (the scratch block is clean: layer 2's MLP erased it).

MLP: snap the block in place, ``slot[a, w] += snap(slot[a, w]) - relu(slot[a, w])``
(gadget ``snap_in_place``; ``slot >= 0``), which leaves exact bits for layer 7.

Answers of ``A > 1`` tokens (conditioned model): at answer positions 1..A-1
(``cont = sum_j back[j, ARROW]``) with no consistent earlier example (``prior`` ~ 1) the
prior must be ``ok_k / |survivors|``, not ``1/K``:

    mix[k] += sum_j relu(prior + ok[k] + count_ok[j] - 2) / j  -  relu(prior + cont - 1) / K

(one soft input, ``prior``, per unit: exact products ``prior * ok_k * [|survivors| = j] / j``
and ``prior * cont / K``); where an example is consistent, ``prior`` ~ 0 and nothing changes.
"""

from __future__ import annotations

from fractions import Fraction

from .gadgets import conjunction, snap_in_place
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
    A, K = tasks.answer_length, tasks.K
    if A > 1 and ctx.conditioned:
        for k in range(K):
            for j in range(1, K + 1):
                mlp.place(conjunction(3, Fraction(1, j)), f"mix[{k}] += prior * ok[{k}] * count_ok[{j}] / {j}",
                          {"x1": form(lay, ("prior",)), "x2": form(lay, ("ok", k)),
                           "x3": form(lay, ("count_ok", j - 1))}, form(lay, ("mix", k)))
        cont = form(lay, *(ctx.back(j, "ARROW") for j in range(1, A)))
        mlp.place(conjunction(2), "mix[k] -= prior * [answer position >= 1] / K, every k",
                  {"x1": form(lay, ("prior",)), "x2": cont}, form(lay, *(("mix", k) for k in range(K)), scale=-Fraction(1, K)))
    return Layer(SPEC, ctx.tasks, attention, mlp, ctx.conditioned)


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
    written: Values = {"slot": values}
    if tasks.answer_length > 1 and view.conditioned:
        K, A = tasks.K, tasks.answer_length
        mix = []
        for t in range(view.T):
            cont = sum(state["back"][t][j - 1, d] for j in range(1, A))
            C = int(sum(state["ok"][t]))
            adjust = state["prior"][t] * (state["ok"][t] / C if C else state["ok"][t] * 0) \
                - state["prior"][t] * cont / K
            mix.append(state["mix"][t] + adjust)
        written["mix"] = mix
    return written


SPEC = LayerSpec(
    6, "fetch query inputs",
    in_words="one head per input slot copies the current input tokens to the ARROW, snapped to exact bits.",
    attention_does="one head per slot a read by a task looks back s-a (slot a of the current input) and copies "
                   "the token into slot[a]",
    mlp_does="slot = snap(slot), in place (answers of several tokens: the prior becomes ok_k / |survivors| "
             "after the ARROW)",
    reads=("token", "pos_cos", "pos_sin", "slot", "prior", "ok", "count_ok", "back", "mix"),
    writes=("slot", "mix"),
    heads="S",
    mlp_width="3*S*d + (K**2 + 1)*min(1, A - 1)*C",
    build=build, exact=exact,
)
