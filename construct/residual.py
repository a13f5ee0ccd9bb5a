"""The residual stream of the task-superposition transformer, block by block.

``d_model = 2d + S d + 5K + 2L + 5`` with ``L = ceil(log2 T_max)`` and ``S`` the number
of distinct input slots read by any task (``S <= min(s, sum_k r_k)``):

========== ======= ==================== =====================================================
block      dims    written by           meaning (at the positions where it is used)
========== ======= ==================== =====================================================
token      d + 2   token embedding      one-hot token: content 0..d-1, BOS, ARROW
pos_cos    L       position embedding   cos(pi t / 2^b)
pos_sin    L       position embedding   sin(pi t / 2^b)
answer_raw 1       layer 1 attention    ~1 if the previous token is ARROW (soft)
is_answer  1       layer 1 MLP          exactly 1 at answer positions, else 0
slot       S x d   layers 2 and 6       scratch: one-hot of input slot a (see below)
match_raw  K       layer 2 MLP          ~[G_k(x[a_k]) == y] at answer positions
match      K       layer 3 MLP          exactly [example consistent with task k]
count_is   K       layer 3 MLP          exactly [number of consistent tasks == j], j = 1..K
valid      1       layer 3 MLP          exactly [answer consistent with at least one task]
vote       K       layer 4 MLP          exactly match[k] / (number of consistent tasks)
mix        K       layer 5 attention    task mixture p_k from earlier examples (soft)
out        d       layer 7 MLP          sum_k p_k [G_k(x[a_k]) == v]; the readout
========== ======= ==================== =====================================================

Answers of ``A > 1`` tokens add ``back`` ((A-1) x (d+1), layer 1: the answer so far),
``cslot`` (S x d, layer 3: the query's inputs at answer positions 1..A-1), ``ok`` (K,
layer 4), ``count_ok`` (K, layer 5) and ``prior`` (1, layer 5): ``(A-1)(d+1) + Sd + 2K + 1``
more dimensions (``d_model_formula``); for one-token answers these blocks do not exist.

The ``slot`` block (one row per slot read, labelled by the slot's index) is used twice:
layer 2's heads copy an example's input tokens into it at the example's answer, its
MLP reads them and erases them exactly (``slot - relu(slot) = 0`` since slot >= 0);
layer 6's heads copy the current input tokens into it at every ARROW and its MLP snaps
them in place to exact bits, which layer 7 reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from superpose.setting import TaskSet

from .layout import BlockSpec, Layout
from .positional import n_frequencies


def d_model_formula(d: int, S: int, K: int, max_len: int, A: int = 1) -> int:
    """``2d + S d + 5K + 2L + 5``, ``L = ceil(log2 max_len)``: O(S d + K + log T) dimensions; answers of
    ``A > 1`` tokens add ``(A - 1)(d + 1) + S d + 2K + 1`` (``back``, ``cslot``, ``ok``, ``count_ok``, ``prior``)."""
    extra = (A - 1) * (d + 1) + S * d + 2 * K + 1 if A > 1 else 0
    return 2 * d + S * d + 5 * K + 2 * n_frequencies(max_len) + 5 + extra


def make_layout(tasks: TaskSet, max_len: int) -> Layout:
    d, K, L, A = tasks.vocab_size, tasks.K, n_frequencies(max_len), tasks.answer_length
    tokens = tuple(str(v) for v in range(d))
    slots = tuple(str(a) for a in tasks.slots_read)
    continuation = [
        BlockSpec("back", (A - 1, d + 1), "layer 1 (attention writes, MLP snaps)",
                  "exact: one-hot of the token o = 1..A-1 positions back (content or ARROW)",
                  (tuple(str(o) for o in range(1, A)), tokens + ("ARROW",))),
        BlockSpec("cslot", (len(slots), d), "layer 3 (attention writes, MLP snaps)",
                  "exact: one-hot of the query's input slot a at answer positions 1..A-1", (slots, tokens)),
        BlockSpec("ok", (K,), "layer 4 MLP", "exact: task k's answer starts with the answer tokens so far"),
        BlockSpec("count_ok", (K,), "layer 5 MLP", "exact: exactly j tasks fit the answer so far (j = 1..K)",
                  (tuple(str(j) for j in range(1, K + 1)),)),
        BlockSpec("prior", (), "layer 5 attention", "soft: 1 when no earlier example is consistent (BOS wins)"),
    ] if A > 1 else []
    return Layout([
        BlockSpec("token", (d + 2,), "token embedding", "one-hot token (content 0..d-1, BOS, ARROW)",
                  (tokens + ("BOS", "ARROW"),)),
        BlockSpec("pos_cos", (L,), "position embedding", "cos(pi t / 2^b)"),
        BlockSpec("pos_sin", (L,), "position embedding", "sin(pi t / 2^b)"),
        BlockSpec("answer_raw", (), "layer 1 attention", "soft: previous token is ARROW"),
        BlockSpec("is_answer", (), "layer 1 MLP", "exact: this is the last answer position of an example"),
        *continuation[:1],
        BlockSpec("slot", (len(slots), d), "layers 2 and 6 (attention writes, MLP erases / snaps)",
                  "scratch: one-hot of the token in input slot a (example's at answers, current at ARROWs)",
                  (slots, tokens)),
        BlockSpec("match_raw", (K,), "layer 2 MLP", "soft: answer equals task k's output"),
        BlockSpec("match", (K,), "layer 3 MLP", "exact: example consistent with task k"),
        BlockSpec("count_is", (K,), "layer 3 MLP", "exact: example consistent with exactly j tasks (j = 1..K)",
                  (tuple(str(j) for j in range(1, K + 1)),)),
        BlockSpec("valid", (), "layer 3 MLP", "exact: example consistent with at least one task"),
        BlockSpec("vote", (K,), "layer 4 MLP", "exact: match[k] / number of consistent tasks"),
        BlockSpec("mix", (K,), "layer 5 attention", "task mixture from earlier examples"),
        *continuation[1:],
        BlockSpec("out", (d,), "layer 7 MLP", "superposed prediction; read out"),
    ])


@dataclass(frozen=True)
class Context:
    """What every layer builder needs: the tasks, the layout and the attention sharpness."""

    tasks: TaskSet
    layout: Layout
    sharpness: float
    conditioned: bool = True   # answers of several tokens: condition on the answer so far (else marginal)

    def token(self, v: int | str) -> tuple:
        """Direction of token ``v`` (a content id, "BOS" or "ARROW") in the ``token`` block."""
        index = {"BOS": self.tasks.bos, "ARROW": self.tasks.arrow}.get(v, v)  # type: ignore[arg-type]
        return ("token", index)

    def slot(self, a: int, w: int) -> tuple:
        """Direction ``slot[a, w]``: token w in input slot a (a is the slot's index in the example)."""
        return ("slot", self.tasks.slots_read.index(a), w)

    def cslot(self, a: int, w: int) -> tuple:
        """Direction ``cslot[a, w]``: token w in the query's slot a, at answer positions 1..A-1."""
        return ("cslot", self.tasks.slots_read.index(a), w)

    def back(self, o: int, v: int | str) -> tuple:
        """Direction ``back[o, v]``: the token o >= 1 positions back is v (a content id or "ARROW")."""
        return ("back", o - 1, self.tasks.vocab_size if v == "ARROW" else v)

    def token_back(self, o: int, v: int) -> tuple:
        """Content token v, o >= 0 positions back: the current token for o = 0, else ``back``."""
        return self.token(v) if o == 0 else self.back(o, v)
