"""Layer 4 -- cast votes.

Attention: none (all-zero heads).

MLP: an example consistent with ``C >= 1`` tasks gives each of them a vote of ``1/C``:

    vote[k] = sum_{j=1..K} (1/j) * relu(match[k] + count_is[j] - 1)

Each term is ``conjunction(2)`` scaled by ``1/j``: ``match[k] * count_is[j] / j`` for
bits, and exactly one ``count_is[j]`` is 1 when ``C >= 1`` (none when the example is
noise, so noise casts no vote).

Answers of ``A > 1`` tokens: at answer position ``j = 1..A-1`` (``back[j, ARROW] = 1``) the
tokens ``y_1..y_j`` of the answer so far sit ``j - o`` back (``y_j`` is the current token),
and ``ok[k] = [G_k(x)_{1..j} == y_{1..j}]`` is one unit per task, input combination and j
(gadget ``conjunction(r + j + 1)``, all inputs exact bits):

    ok[k] += relu(cslot[a_1, w_1] + .. + cslot[a_r, w_r] + back[j, ARROW] + sum_o [y_o = G_k(w)_o] - (r + j))
"""

from __future__ import annotations

from fractions import Fraction

import itertools

from .gadgets import conjunction
from .residual import Context
from .spec import Layer, LayerSpec, PromptView, Values, bits
from .weights import AttentionBuilder, MLPBuilder, form


def build(ctx: Context) -> Layer:
    lay, K = ctx.layout, ctx.tasks.K
    attention, mlp = AttentionBuilder(lay), MLPBuilder(lay)
    for k in range(K):
        for j in range(1, K + 1):
            mlp.place(conjunction(2, Fraction(1, j)), f"vote[{k}] += match[{k}] * count_is[{j}] / {j}",
                      {"x1": form(lay, ("match", k)), "x2": form(lay, ("count_is", j - 1))},
                      form(lay, ("vote", k)))
    tasks = ctx.tasks
    for j in range(1, tasks.answer_length):
        for k, task in enumerate(tasks.tasks):
            for w in itertools.product(range(tasks.vocab_size), repeat=task.arity):
                y = tasks.answer_of(task, dict(zip(task.slots, w)))
                factors = [form(lay, ctx.cslot(a, w_a)) for a, w_a in zip(task.slots, w)]
                factors.append(form(lay, ctx.back(j, "ARROW")))
                factors += [form(lay, ctx.token_back(j - o, y[o - 1])) for o in range(1, j + 1)]
                mlp.place(conjunction(len(factors)), f"ok[{k}] += [x = {list(w)}] * [answer so far = {list(y[:j])}] "
                          f"at answer position {j}", {f"x{i + 1}": f for i, f in enumerate(factors)},
                          form(lay, ("ok", k)))
    return Layer(SPEC, ctx.tasks, attention, mlp, ctx.conditioned)


def exact(view: PromptView, state: Values) -> Values:
    """``vote[k] = match[k] / C`` for the C with ``count_is[C] = 1``; 0 for noise and non-answers."""
    votes = []
    for match, count_is in zip(state["match"], state["count_is"]):
        ones = [j for j, flag in enumerate(count_is, start=1) if flag == 1]
        votes.append(match / ones[0] if ones else match * 0)
    written: Values = {"vote": votes}
    tasks = view.tasks
    A, d = tasks.answer_length, tasks.vocab_size
    if A > 1:   # ok[k]: task k's answer starts with the answer so far, at answer positions 1..A-1
        ok = []
        for t in range(view.T):
            j = next((j for j in range(1, A) if state["back"][t][j - 1, d] == 1), None)
            if j is None:
                ok.append(bits((tasks.K,)))
                continue
            inputs = {a: next(w for w in range(d) if state["cslot"][t][i, w] == 1)
                      for i, a in enumerate(tasks.slots_read)}
            so_far = view.tokens[t - j + 1:t + 1]
            ok.append(bits((tasks.K,), [(k,) for k, task in enumerate(tasks.tasks)
                                        if tasks.answer_of(task, inputs)[:j] == so_far]))
        written["ok"] = ok
    return written


SPEC = LayerSpec(
    4, "cast votes",
    in_words="an example that fits C tasks gives each of them a vote of 1/C.",
    attention_does="(none)",
    mlp_does="vote[k] = sum_j relu(match[k] + count_is[j] - 1)/j (1/C to each consistent task); "
             "ok[k] = [task k's answer starts with the answer so far]",
    reads=("match", "count_is", "cslot", "back", "token"),
    writes=("vote", "ok"),
    heads="0",
    mlp_width="K**2 + E*(A - 1)",
    build=build, exact=exact,
)
