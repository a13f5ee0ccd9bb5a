"""Layer 5 -- tally the task mixture over the earlier examples.

Attention (head 0, content-only scores): the query is the constant 1 (a query bias)
and the key is ``2 beta * valid + beta * token[BOS]``, so position ``u`` scores

    2 beta  at answers consistent with some task,   beta  at BOS,   0 elsewhere.

The value is ``vote[k] + (1/K) * token[BOS]`` and is written to ``mix[k]``.

* With ``N >= 1`` consistent examples before ``t`` the head averages their votes:
  ``mix[k] ~= (votes for k) / N = p_k``; BOS and everything else leak at most
  ``e^{-beta} + (e^{-beta} + T e^{-2 beta})`` in total.
* With none, BOS wins and gives the uniform prior ``1/K``; the other positions leak
  at most ``T e^{-beta}``.

Positions that are not valid answers carry ``vote = 0`` exactly, so noise examples and
non-answer tokens only ever enter through the normaliser. This is the one stage whose
output is not snapped back to an exact value; the leak here is the model's error.

MLP: none (all-zero).

Answers of ``A > 1`` tokens. At answer position ``j >= 1`` the query also carries
``ok[k]`` (layer 4) and the key ``vote[k]``, scaled ``2 beta``: an earlier example whose
consistent tasks all fit the answer so far scores ``4 beta``, one whose tasks fit none
``2 beta``, BOS ``beta``. So the head averages the votes of the surviving examples, which
is the prefix-conditioned mixture whenever every earlier example's tasks lie all inside or
all outside the surviving set (``verify.analytic.separable``; an example across the
boundary scores in between and the average is then not the Bayes rule). A second value
``prior = [BOS]`` records that no example is consistent; the MLP counts the surviving
tasks, ``count_ok[j] = [sum_k ok_k = j]`` (``integer_indicator``), for layer 6, which turns
the prior ``1/K`` into ``ok_k / |survivors|``. The marginal variant (``conditioned=False``)
omits the ``ok`` score.
"""

from __future__ import annotations

from fractions import Fraction

from .gadgets import integer_indicator
from .residual import Context
from .spec import Layer, LayerSpec, PromptView, Values, bits
from .weights import AttentionBuilder, MLPBuilder, combine, form


def build(ctx: Context) -> Layer:
    lay, K = ctx.layout, ctx.tasks.K
    attention, mlp = AttentionBuilder(lay), MLPBuilder(lay)
    head = attention.head("tally: average the votes of consistent earlier answers (prior 1/K at BOS)")
    key = combine((form(lay, ("valid",)), 2 * ctx.sharpness), (form(lay, ctx.token("BOS")), ctx.sharpness))
    head.qk({}, key, query_bias=1)
    for k in range(K):
        value = combine((form(lay, ("vote", k)), 1), (form(lay, ctx.token("BOS")), Fraction(1, K)))
        head.ov(value, form(lay, ("mix", k)))
    if ctx.tasks.answer_length > 1:
        head.ov(form(lay, ctx.token("BOS")), form(lay, ("prior",)))
        if ctx.conditioned:
            for k in range(K):
                head.qk(form(lay, ("ok", k)), form(lay, ("vote", k), scale=2 * ctx.sharpness))
        surviving = form(lay, *(("ok", k) for k in range(K)))
        for j in range(1, K + 1):
            mlp.place(integer_indicator(j), f"count_ok[{j}] = [sum_k ok == {j}]", {"x": surviving},
                      form(lay, ("count_ok", j - 1)))
    return Layer(SPEC, ctx.tasks, attention, mlp, ctx.conditioned)


def exact(view: PromptView, state: Values) -> Values:
    """``mix[t]`` = mean of ``vote[u]`` over ``u <= t`` with ``valid[u] = 1``, else the prior ``1/K``.

    Answers of several tokens: the hard-attention limit at ``t`` averages the value over the
    positions of maximal score ``2 valid + 2 ok(t) . vote + [BOS]`` (``ok`` = 0 at the ARROW and
    in the marginal variant); ``prior`` is the weight on BOS; ``count_ok`` counts ``ok``.
    """
    tasks = view.tasks
    K, A = tasks.K, tasks.answer_length
    if A == 1:
        mix, total, n = [], None, 0
        for t in range(view.T):
            if state["valid"][t] == 1:
                total = state["vote"][t] if total is None else total + state["vote"][t]
                n += 1
            if n:
                mix.append(total / n)
            else:
                mix.append(state["vote"][t] * 0 + Fraction(1, K))
        return {"mix": mix}
    mix, prior, count_ok = [], [], []
    for t in range(view.T):
        ok = state["ok"][t] if view.conditioned else state["ok"][t] * 0
        scores = [2 * state["valid"][u] + 2 * sum(ok * state["vote"][u]) + Fraction(int(u == 0))
                  for u in range(t + 1)]
        best = max(scores)
        winners = [u for u in range(t + 1) if scores[u] == best]
        mix.append(sum(state["vote"][u] + Fraction(int(u == 0), K) for u in winners) / len(winners))
        prior.append(Fraction(int(0 in winners), len(winners)))
        C = int(sum(state["ok"][t]))
        count_ok.append(bits((K,), [(C - 1,)] if C >= 1 else []))
    return {"mix": mix, "prior": prior, "count_ok": count_ok}


SPEC = LayerSpec(
    5, "tally mixture",
    in_words="average the votes of all earlier answers (before any answer: the prior 1/K).",
    attention_does="head 0: query 1, key 2 beta valid + beta [BOS], value vote + [BOS]/K -> mix "
                   "(the average of earlier votes; the prior 1/K at BOS when there is none)",
    mlp_does="(none for one-token answers; else count_ok[j] = [sum_k ok = j])",
    reads=("valid", "token", "vote", "ok"),
    writes=("mix", "prior", "count_ok"),
    heads="1",
    mlp_width="4*K*min(1, A - 1)",
    build=build, exact=exact,
)
