"""The residual stream of the task-superposition transformer, block by block.

``d_model = 2d + 2Kd + 5K + 2L + 5`` with ``L = ceil(log2 T_max)``:

========== ======= ==================== =====================================================
block      dims    written by           meaning (at the positions where it is used)
========== ======= ==================== =====================================================
token      d + 2   token embedding      one-hot token: content 0..d-1, BOS, ARROW
pos_cos    L       position embedding   cos(pi t / 2^b)
pos_sin    L       position embedding   sin(pi t / 2^b)
answer_raw 1       layer 1 attention    ~1 if the previous token is ARROW (soft)
is_answer  1       layer 1 MLP          exactly 1 at answer positions, else 0
fetch      K x d   layer 2/6 attention  scratch: one-hot of g_k(x[a_k]) (layer 2 MLP erases it)
match_raw  K       layer 2 MLP          ~[g_k(x[a_k]) == y] at answer positions
match      K       layer 3 MLP          exactly [example consistent with task k]
count_is   K       layer 3 MLP          exactly [number of consistent tasks == j], j = 1..K
valid      1       layer 3 MLP          exactly [answer consistent with at least one task]
vote       K       layer 4 MLP          exactly match[k] / (number of consistent tasks)
mix        K       layer 5 attention    task mixture p_k from earlier examples (soft)
task_out   K x d   layer 6 MLP          exactly one-hot of g_k(x[a_k]) at prediction positions
out        d       layer 7 MLP          sum_k p_k [g_k(x[a_k]) == v]; the readout
========== ======= ==================== =====================================================

The fetch scratch block is shared: layer 2 writes the example's task outputs, its MLP
reads them and erases them exactly (``fetch - relu(fetch) = 0`` since fetch >= 0), and
layer 6 writes the query's task outputs into the same dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass

from superpose.setting import TaskSet

from .layout import BlockSpec, Layout
from .positional import n_frequencies


def d_model_formula(d: int, K: int, max_len: int) -> int:
    """``2d + 2Kd + 5K + 2L + 5``, ``L = ceil(log2 max_len)``: O(K d + log T) dimensions."""
    return 2 * d + 2 * K * d + 5 * K + 2 * n_frequencies(max_len) + 5


def make_layout(tasks: TaskSet, max_len: int) -> Layout:
    d, K, L = tasks.vocab_size, tasks.K, n_frequencies(max_len)
    names = tuple(str(v) for v in range(d)) + ("BOS", "ARROW")
    return Layout([
        BlockSpec("token", (d + 2,), "token embedding", "one-hot token (content 0..d-1, BOS, ARROW)", names),
        BlockSpec("pos_cos", (L,), "position embedding", "cos(pi t / 2^b)"),
        BlockSpec("pos_sin", (L,), "position embedding", "sin(pi t / 2^b)"),
        BlockSpec("answer_raw", (), "layer 1 attention", "soft: previous token is ARROW"),
        BlockSpec("is_answer", (), "layer 1 MLP", "exact: this is an answer position"),
        BlockSpec("fetch", (K, d), "layer 2 and 6 attention (erased by layer 2 MLP)",
                  "scratch: one-hot of task k's output on the fetched slot"),
        BlockSpec("match_raw", (K,), "layer 2 MLP", "soft: answer equals task k's output"),
        BlockSpec("match", (K,), "layer 3 MLP", "exact: example consistent with task k"),
        BlockSpec("count_is", (K,), "layer 3 MLP", "exact: example consistent with exactly j tasks (j = 1..K)",
                  tuple(str(j) for j in range(1, K + 1))),
        BlockSpec("valid", (), "layer 3 MLP", "exact: example consistent with at least one task"),
        BlockSpec("vote", (K,), "layer 4 MLP", "exact: match[k] / number of consistent tasks"),
        BlockSpec("mix", (K,), "layer 5 attention", "task mixture from earlier examples"),
        BlockSpec("task_out", (K, d), "layer 6 MLP", "exact: one-hot of task k's output on the query"),
        BlockSpec("out", (d,), "layer 7 MLP", "superposed prediction; read out"),
    ])


@dataclass(frozen=True)
class Context:
    """What every layer builder needs: the tasks, the layout and the attention sharpness."""

    tasks: TaskSet
    layout: Layout
    sharpness: float

    def token(self, v: int | str) -> tuple:
        """Direction of token ``v`` (a content id, "BOS" or "ARROW") in the ``token`` block."""
        index = {"BOS": self.tasks.bos, "ARROW": self.tasks.arrow}.get(v, v)  # type: ignore[arg-type]
        return ("token", index)
