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
"""

from __future__ import annotations

from fractions import Fraction

from .residual import Context
from .spec import Layer, LayerSpec, PromptView, Values
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
    return Layer(SPEC, ctx.tasks, attention, mlp)


def exact(view: PromptView, state: Values) -> Values:
    """``mix[t]`` = mean of ``vote[u]`` over ``u <= t`` with ``valid[u] = 1``, else the prior ``1/K``."""
    K = view.tasks.K
    mix, total, n = [], None, 0
    for t in range(view.T):
        if state["valid"][t] == 1:
            total = state["vote"][t] if total is None else total + state["vote"][t]
            n += 1
        if n:
            mix.append(total / n)
        else:
            prior = state["vote"][t] * 0 + Fraction(1, K)
            mix.append(prior)
    return {"mix": mix}


SPEC = LayerSpec(
    5, "tally mixture",
    in_words="average the votes of all earlier answers (before any answer: the prior 1/K).",
    attention_does="head 0: query 1, key 2 beta valid + beta [BOS], value vote + [BOS]/K -> mix "
                   "(the average of earlier votes; the prior 1/K at BOS when there is none)",
    mlp_does="(none)",
    reads=("valid", "token", "vote"),
    writes=("mix",),
    heads="1",
    mlp_width="0",
    build=build, exact=exact,
)
