"""Layer 1 -- find the answer positions.

Attention (head 0, a look-back head with offset 1): every position ``t`` attends to
``t - 1`` and copies ``token[ARROW]`` there into ``answer_raw``. So ``answer_raw`` is
within ``(T-1) e^{-2 beta}`` of 1 at the position right after an ARROW (an example's
answer, or nothing for the query's ARROW, which is last) and of 0 elsewhere. Position
0 (BOS) can only attend to itself and gets exactly 0.

MLP: ``is_answer = snap(answer_raw)`` -- exactly 0 or 1 again (``gadgets.snap``).

Answers of ``A > 1`` tokens. The head that finds the last answer token looks back A
positions (``is_answer`` = the token A back is ARROW), and heads with offsets ``o = 1..A-1``
copy the token o back (content or ARROW) into ``back[o, .]``, snapped in place by the MLP.
From them every later layer reads the answer tokens so far and the answer position
``j`` (``back[j, ARROW] = 1``). The heads with offset ``>= 2`` are anchored at BOS
(``positional.add_anchored_look_back``): before their target exists they attend to BOS,
which copies nothing, instead of to a position the code alone picks (possibly an ARROW).
"""

from __future__ import annotations

from fractions import Fraction

from .gadgets import snap
from .gadgets import snap_in_place
from .positional import add_anchored_look_back, add_look_back
from .residual import Context
from .spec import Layer, LayerSpec, PromptView, Values, bits
from .weights import AttentionBuilder, MLPBuilder, form


def build(ctx: Context) -> Layer:
    lay = ctx.layout
    attention, mlp = AttentionBuilder(lay), MLPBuilder(lay)

    A, d = ctx.tasks.answer_length, ctx.tasks.vocab_size
    head = attention.head("look back 1: is the previous token ARROW?" if A == 1 else
                          f"look back {A}: is the token {A} back ARROW?")
    look_back(head, ctx, A)
    head.ov(form(lay, ctx.token("ARROW")), form(lay, ("answer_raw",)))
    for o in range(1, A):
        head = attention.head(f"look back {o}: copy the token {o} back")
        look_back(head, ctx, o)
        for v in list(range(d)) + ["ARROW"]:
            head.ov(form(lay, ctx.token(v)), form(lay, ctx.back(o, v)))

    mlp.place(snap(), "is_answer = snap(answer_raw)",
              {"x": form(lay, ("answer_raw",))}, form(lay, ("is_answer",)))
    for o in range(1, A):
        for v in list(range(d)) + ["ARROW"]:
            mlp.place(snap_in_place(), f"back[{o},{v}] = snap(back[{o},{v}])",
                      {"x": form(lay, ctx.back(o, v))}, form(lay, ctx.back(o, v)))
    return Layer(SPEC, ctx.tasks, attention, mlp, ctx.conditioned)


def look_back(head, ctx: Context, offset: int) -> None:
    """Offset 1 never reaches before BOS; longer offsets are anchored at BOS (see the module docstring)."""
    if offset == 1:
        add_look_back(head, ctx.layout, offset=1, sharpness=ctx.sharpness)
    else:
        add_anchored_look_back(head, ctx.layout, offset, ctx.sharpness, ctx.token("BOS"))


def exact(view: PromptView, state: Values) -> Values:
    """``answer_raw = is_answer = [the token A back is ARROW]``; ``back[o, v] = [the token o back is v]``."""
    tasks = view.tasks
    A, d = tasks.answer_length, tasks.vocab_size
    flags = [Fraction(int(view.looks_back(t, A) == tasks.arrow)) for t in range(view.T)]
    written: Values = {"answer_raw": flags, "is_answer": list(flags)}
    if A > 1:
        index = {**{v: v for v in range(d)}, tasks.arrow: d}   # BOS (and nothing, before it) copies nothing
        written["back"] = [bits((A - 1, d + 1), [(o - 1, index[view.looks_back(t, o)]) for o in range(1, A)
                                                 if view.looks_back(t, o) in index]) for t in range(view.T)]
    return written


SPEC = LayerSpec(
    1, "find answers",
    in_words="an answer is the token right after an ARROW (A tokens after it for answers of A tokens).",
    attention_does="head 0 looks back 1 position (sinusoidal rotation query) and copies token[ARROW] into answer_raw",
    mlp_does="is_answer = snap(answer_raw)",
    reads=("token", "pos_cos", "pos_sin", "answer_raw", "back"),
    writes=("answer_raw", "is_answer", "back"),
    heads="A",
    mlp_width="2 + 3*(A - 1)*(d + 1)",
    build=build, exact=exact,
)
