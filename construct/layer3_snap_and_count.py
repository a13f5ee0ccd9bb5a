"""Layer 3 -- snap the matches and count the consistent tasks.

Attention: none (all-zero heads).

MLP (one hidden layer, so every unit reads a linear function of the residual):

* ``match[k] = snap(match_raw[k])`` -- exact bits;
* ``count = sum_k match_raw[k]`` is linear and within ``K * (error of match_raw)`` of the
  integer ``C`` = number of tasks the example is consistent with, so the gadget
  ``integer_indicator(j)`` gives ``count_is[j] = [C == j]`` exactly, for j = 1..K;
* ``valid = snap(count) = [C >= 1]`` exactly (snap is 1 on all of ``[3/4, inf)``).

At non-answer positions ``match_raw`` is 0, so all of these are 0 there.

Answers of ``A > 1`` tokens (attention): the query's inputs are needed at every answer
position ``j = 1..A-1`` before the tally (layer 5) conditions on the answer so far. Head
``(a, j)`` is a *gated* look-back head: offset ``s + j - a`` (slot a of the current input,
seen from answer token j) plus the score ``(2 beta L + 2 beta)(1 - back[j, ARROW]) [u = BOS]``.
Where the position is answer token j (``back[j, ARROW] = 1``) it is a plain look-back head
(gap ``2 beta``); elsewhere BOS out-scores every position by at least ``2 beta`` and copies
nothing. Exactly one j fits a position (ARROWs are ``s + 1 + A`` apart), so ``cslot[a, .]`` is
one-hot of the query's slot a at answer positions 1..A-1 and 0 elsewhere; the MLP snaps it
in place.
"""

from __future__ import annotations

from fractions import Fraction

from .gadgets import integer_indicator, snap, snap_in_place
from .positional import add_look_back
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

    tasks, beta = ctx.tasks, ctx.sharpness
    A, s, d, L = tasks.answer_length, tasks.slots, tasks.vocab_size, lay["pos_cos"].size
    for j in range(1, A):
        for a in tasks.slots_read:
            head = attention.head(f"slot {a} at answer position {j}: look back {s + j - a} if the token {j} "
                                  "back is ARROW, else to BOS")
            add_look_back(head, lay, offset=s + j - a, sharpness=beta)
            gate = 2 * beta * L + 2 * beta
            head.qk({**form(lay, ctx.back(j, "ARROW"), scale=-gate)}, form(lay, ctx.token("BOS")), query_bias=gate)
            for w in range(d):
                head.ov(form(lay, ctx.token(w)), form(lay, ctx.cslot(a, w)))
    if A > 1:
        for a in tasks.slots_read:
            for w in range(d):
                mlp.place(snap_in_place(), f"cslot[{a},{w}] = snap(cslot[{a},{w}])",
                          {"x": form(lay, ctx.cslot(a, w))}, form(lay, ctx.cslot(a, w)))
    return Layer(SPEC, ctx.tasks, attention, mlp, ctx.conditioned)


def exact(view: PromptView, state: Values) -> Values:
    """``match = match_raw``; ``count_is[j] = [C == j]``, ``valid = [C >= 1]`` with ``C = sum_k match_raw``."""
    tasks = view.tasks
    K, A, d = tasks.K, tasks.answer_length, tasks.vocab_size
    counts = [int(sum(row)) for row in state["match_raw"]]
    written = {"match": [row.copy() for row in state["match_raw"]],
               "count_is": [bits((K,), [(C - 1,)] if 1 <= C <= K else []) for C in counts],
               "valid": [Fraction(int(C >= 1)) for C in counts]}
    if A > 1:   # cslot: the current input at answer positions 1..A-1 (back[j, ARROW] = 1), else 0
        cslot = []
        for t in range(view.T):
            j = next((j for j in range(1, A) if state["back"][t][j - 1, d] == 1), None)
            inputs = view.inputs_before(t, j) if j is not None else {}
            cslot.append(bits((len(tasks.slots_read), d), [(i, inputs[a]) for i, a in enumerate(tasks.slots_read)
                                                           if inputs]))
        written["cslot"] = cslot
    return written


SPEC = LayerSpec(
    3, "snap and count",
    in_words="turn the checks into exact bits and count how many tasks fit each example.",
    attention_does="(none for one-token answers; else one gated head per slot read and answer position "
                   "1..A-1 copies the query's input into cslot)",
    mlp_does="match = snap(match_raw); count_is[j] = [sum_k match_raw = j] (trapezoid indicators); "
             "valid = [count >= 1]; snap cslot",
    reads=("match_raw", "token", "pos_cos", "pos_sin", "back", "cslot"),
    writes=("match", "count_is", "valid", "cslot"),
    heads="S*(A - 1)",
    mlp_width="6*K + 2 + 3*S*d*min(1, A - 1)",
    build=build, exact=exact,
)
