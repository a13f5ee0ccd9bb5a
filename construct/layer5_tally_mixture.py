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
from .weights import AttentionBuilder, Layer, MLPBuilder, combine, form


def build(ctx: Context) -> Layer:
    lay, K = ctx.layout, ctx.tasks.K
    attention, mlp = AttentionBuilder(lay), MLPBuilder(lay)
    head = attention.head("tally: average the votes of consistent earlier answers (prior 1/K at BOS)")
    key = combine((form(lay, ("valid",)), 2 * ctx.sharpness), (form(lay, ctx.token("BOS")), ctx.sharpness))
    head.qk({}, key, query_bias=1)
    for k in range(K):
        value = combine((form(lay, ("vote", k)), 1), (form(lay, ctx.token("BOS")), Fraction(1, K)))
        head.ov(value, form(lay, ("mix", k)))
    return Layer(
        5, "tally mixture",
        attention_does="head 0 averages vote over earlier answers with valid = 1 (BOS gives the prior 1/K) into mix",
        mlp_does="(none)",
        reads=("valid", "token", "vote"),
        writes=("mix",),
        attention=attention, mlp=mlp,
    )
