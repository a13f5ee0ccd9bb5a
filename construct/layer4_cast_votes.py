"""Layer 4 -- cast votes.

Attention: none (all-zero heads).

MLP: an example consistent with ``C >= 1`` tasks gives each of them a vote of ``1/C``:

    vote[k] = sum_{j=1..K} (1/j) * relu(match[k] + count_is[j] - 1)

Each term is ``conjunction(2)`` scaled by ``1/j``: ``match[k] * count_is[j] / j`` for
bits, and exactly one ``count_is[j]`` is 1 when ``C >= 1`` (none when the example is
noise, so noise casts no vote).
"""

from __future__ import annotations

from fractions import Fraction

from .gadgets import conjunction
from .residual import Context
from .spec import Layer, LayerSpec, PromptView, Values
from .weights import AttentionBuilder, MLPBuilder, form


def build(ctx: Context) -> Layer:
    lay, K = ctx.layout, ctx.tasks.K
    attention, mlp = AttentionBuilder(lay), MLPBuilder(lay)
    for k in range(K):
        for j in range(1, K + 1):
            mlp.place(conjunction(2, Fraction(1, j)), f"vote[{k}] += match[{k}] * count_is[{j}] / {j}",
                      {"x1": form(lay, ("match", k)), "x2": form(lay, ("count_is", j - 1))},
                      form(lay, ("vote", k)))
    return Layer(SPEC, ctx.tasks, attention, mlp)


def exact(view: PromptView, state: Values) -> Values:
    """``vote[k] = match[k] / C`` for the C with ``count_is[C] = 1``; 0 for noise and non-answers."""
    votes = []
    for match, count_is in zip(state["match"], state["count_is"]):
        ones = [j for j, flag in enumerate(count_is, start=1) if flag == 1]
        votes.append(match / ones[0] if ones else match * 0)
    return {"vote": votes}


SPEC = LayerSpec(
    4, "cast votes",
    in_words="an example that fits C tasks gives each of them a vote of 1/C.",
    attention_does="(none)",
    mlp_does="vote[k] = sum_j relu(match[k] + count_is[j] - 1)/j (1/C to each consistent task)",
    reads=("match", "count_is"),
    writes=("vote",),
    heads="0",
    mlp_width="K**2",
    build=build, exact=exact,
)
