r"""A memory-lean JAX executor: causal attention block by block, so memory grows as T, not T^2.

``superpose.model.Transformer`` materialises the attention scores ``[batch, heads, T, T]``
in every layer; at T = 16384 that is 2 GiB per head in float64, and XLA's plan for a
whole forward pass grows as T^2. This executor computes the same function on the same
weights (the params pytree, read by its documented names) with the query positions
split into blocks of ``block`` rows and, for each query block i, the key positions
split into blocks j = 0..i (key blocks after i are entirely masked and skipped):

    pass 1:  m_t   = max over the visible keys u of  q_t . k_u
    pass 2:  num_t = sum_u exp(q_t . k_u - m_t) v_u,   den_t = sum_u exp(q_t . k_u - m_t)
    z_t = num_t / den_t

Both passes recompute the block scores (``q k^T`` is cheap next to ``exp``), so no
running rescaling is needed: every ``exp`` argument is the one the standard executor
computes (``scores - row max``), and only the order of the sums differs, which the
floating-point model of ``superpose.construct.bound`` allows (F2). Memory per layer is
``O(batch * heads * block^2)`` for the blocks plus ``O(batch * T * (d_model + d_mlp))``
for the activations; the causal half of the ``exp`` work is skipped.

>>> import numpy as np
>>> from superpose import Task, TaskSet, Prompt, Example, build, tokenize
>>> from superpose.model import run_tokens
>>> tasks = TaskSet(vocab_size=3, slots=1, tasks=[Task("id", 0, [0, 1, 2]), Task("inc", 0, [1, 2, 0])])
>>> model = build(tasks, max_examples=20)
>>> tokens = tokenize(tasks, Prompt([Example([0], 0), Example([1], 2)] * 10, query=[2]))[None, :]
>>> bool(np.abs(run_chunked(model, tokens, "float64", block=8) - run_tokens(model, tokens, "float64")).max() < 1e-14)
True
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from superpose.construct.build import ModelConfig, SuperposeModel
from superpose.setting import PromptError

HIGHEST = jax.lax.Precision.HIGHEST


def _attention(a: dict, h: jax.Array, block: int) -> jax.Array:
    """Causal multi-head attention of one layer, query and key blocks of ``block`` positions."""
    B, T, _ = h.shape
    n_blocks = T // block
    project = lambda W, b: jnp.einsum("btd,hde->bhte", h, W, precision=HIGHEST) + b[None, :, None, :]  # noqa: E731
    q, k, v = project(a["W_Q"], a["b_Q"]), project(a["W_K"], a["b_K"]), project(a["W_V"], a["b_V"])
    H, dh = q.shape[1], q.shape[3]
    # [n_blocks, B, H, block, dh]
    split = lambda x: x.reshape(B, H, n_blocks, block, dh).transpose(2, 0, 1, 3, 4)  # noqa: E731
    qs, ks, vs = split(q), split(k), split(v)
    offsets = jnp.arange(block)

    def scores(i, j, q_i):
        s = jnp.einsum("bhte,bhue->bhtu", q_i, ks[j], precision=HIGHEST)
        visible = (j * block + offsets)[None, :] <= (i * block + offsets)[:, None]
        return jnp.where(visible, s, -jnp.inf)

    def query_block(i):
        q_i = qs[i]
        row_max = jax.lax.fori_loop(0, i + 1, lambda j, m: jnp.maximum(m, scores(i, j, q_i).max(axis=-1)),
                                    jnp.full((B, H, block), -jnp.inf, dtype=h.dtype))

        def accumulate(j, carry):
            num, den = carry
            e = jnp.exp(scores(i, j, q_i) - row_max[..., None])
            return num + jnp.einsum("bhtu,bhue->bhte", e, vs[j], precision=HIGHEST), den + e.sum(axis=-1)

        zero = jnp.zeros((B, H, block, dh), dtype=h.dtype)
        num, den = jax.lax.fori_loop(0, i + 1, accumulate, (zero, jnp.zeros((B, H, block), dtype=h.dtype)))
        return num / den[..., None]

    z = jax.lax.map(query_block, jnp.arange(n_blocks))             # [n_blocks, B, H, block, dh]
    z = z.transpose(1, 2, 0, 3, 4).reshape(B, H, T, dh)
    return jnp.einsum("bhte,hed->btd", z, a["W_O"], precision=HIGHEST) + a["b_O"]


@partial(jax.jit, static_argnames=("n_layers", "block"))
def forward(params: Any, tokens: jax.Array, n_layers: int, block: int) -> jax.Array:
    """Readout ``[batch, T, d_out]``; ``T`` must be a multiple of ``block``."""
    T = tokens.shape[1]
    h = params["embed"]["W_E"][tokens] + params["embed"]["W_pos"][:T]
    for i in range(1, n_layers + 1):
        layer = params[f"layer_{i}"]
        h = h + _attention(layer["attn"], h, block)
        m = layer["mlp"]
        hidden = jax.nn.relu(jnp.einsum("btd,dm->btm", h, m["W_in"], precision=HIGHEST) + m["b_in"])
        h = h + jnp.einsum("btm,md->btd", hidden, m["W_out"], precision=HIGHEST) + m["b_out"]
    return jnp.einsum("btd,dv->btv", h, params["unembed"]["W_U"], precision=HIGHEST) + params["unembed"]["b_U"]


def padded_length(length: int, block: int) -> int:
    return -(-length // block) * block


def context_params(model: SuperposeModel, length: int) -> dict:
    """``model.params`` with ``W_pos`` zero-padded to ``length`` rows (for padding past ``n_ctx``)."""
    W_pos = model.params["embed"]["W_pos"]
    if W_pos.shape[0] >= length:
        return model.params
    return {**model.params, "embed": {**model.params["embed"],
                                      "W_pos": np.pad(W_pos, [(0, length - W_pos.shape[0]), (0, 0)])}}


def run_chunked(model: SuperposeModel, tokens: np.ndarray, dtype: str = "float64", block: int = 256) -> np.ndarray:
    """Readout ``[batch, T, d]`` of already-tokenized prompts, attention in blocks of ``block``.

    Prompts are padded at the end (with BOS) to a multiple of ``block``; causal
    attention keeps the padding from reaching the real positions.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise PromptError(f"tokens: expected shape [batch, T], got {tokens.shape}")
    if tokens.shape[1] > model.config.n_ctx:
        raise PromptError(f"tokens: length {tokens.shape[1]} exceeds the model's context {model.config.n_ctx}")
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    T = tokens.shape[1]
    block = min(block, padded_length(T, 1))
    length = padded_length(T, block)
    padded = np.full((tokens.shape[0], length), model.tasks.bos, dtype=np.int32)
    padded[:, :T] = tokens
    with jax.enable_x64(dtype == "float64"):
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=dtype), context_params(model, length))
        out = forward(params, jnp.asarray(padded), model.config.n_layers, block)
        return np.asarray(out)[:, :T]


def lowered(config: ModelConfig, params: Any, tokens: jax.Array, block: int):
    """``forward`` lowered for ``tokens``' shape (to compile ahead of time and read XLA's memory plan)."""
    return forward.lower(params, tokens, config.n_layers, block)
