"""Layer 1 -- find the answer positions.

Attention (head 0, a look-back head with offset 1): every position ``t`` attends to
``t - 1`` and copies ``token[ARROW]`` there into ``answer_raw``. So ``answer_raw`` is
within ``(T-1) e^{-2 beta}`` of 1 at the position right after an ARROW (an example's
answer, or nothing for the query's ARROW, which is last) and of 0 elsewhere. Position
0 (BOS) can only attend to itself and gets exactly 0.

MLP: ``is_answer = snap(answer_raw)`` -- exactly 0 or 1 again (``gadgets.snap``).
"""

from __future__ import annotations

from fractions import Fraction

from .gadgets import snap
from .positional import add_look_back
from .residual import Context
from .spec import Layer, LayerSpec, PromptView, Values
from .weights import AttentionBuilder, MLPBuilder, form


def build(ctx: Context) -> Layer:
    lay = ctx.layout
    attention, mlp = AttentionBuilder(lay), MLPBuilder(lay)

    head = attention.head("look back 1: is the previous token ARROW?")
    add_look_back(head, lay, offset=1, sharpness=ctx.sharpness)
    head.ov(form(lay, ctx.token("ARROW")), form(lay, ("answer_raw",)))

    mlp.place(snap(), "is_answer = snap(answer_raw)",
              {"x": form(lay, ("answer_raw",))}, form(lay, ("is_answer",)))
    return Layer(SPEC, ctx.tasks, attention, mlp)


def exact(view: PromptView, state: Values) -> Values:
    """``answer_raw = is_answer = [the previous token is ARROW]`` at every position."""
    flags = [Fraction(int(view.looks_back(t, 1) == view.tasks.arrow)) for t in range(view.T)]
    return {"answer_raw": flags, "is_answer": list(flags)}


SPEC = LayerSpec(
    1, "find answers",
    in_words="an answer is the token right after an ARROW.",
    attention_does="head 0 looks back 1 position (sinusoidal rotation query) and copies token[ARROW] into answer_raw",
    mlp_does="is_answer = snap(answer_raw)",
    reads=("token", "pos_cos", "pos_sin", "answer_raw"),
    writes=("answer_raw", "is_answer"),
    heads="1",
    mlp_width="2",
    build=build, exact=exact,
)
