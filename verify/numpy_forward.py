"""An independent executor: the same weights run by a short pure-NumPy forward pass.

It shares no code with ``superpose.model`` (JAX/Flax); it reads the params pytree by
its documented names and computes, for one prompt of token ids:

    h = W_E[tokens] + W_pos[:T]
    for each layer:  h += attention(h);  h += W_out^T relu(W_in^T h + b_in) + b_out
    readout = h W_U + b_U

with causal softmax attention ``softmax(q k^T + causal mask) v`` per head.
"""

from __future__ import annotations

import numpy as np


def _softmax_causal(scores: np.ndarray) -> np.ndarray:
    T = scores.shape[-1]
    masked = np.where(np.tril(np.ones((T, T), dtype=bool)), scores, -np.inf)
    shifted = np.exp(masked - masked.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def forward(params: dict, tokens, dtype=np.float64, capture: bool = False):
    """Readout ``[T, d_out]`` for one prompt; with ``capture`` also the residual after each sublayer."""
    p = params
    cast = lambda a: np.asarray(a, dtype=dtype)  # noqa: E731
    tokens = np.asarray(tokens)
    h = cast(p["embed"]["W_E"])[tokens] + cast(p["embed"]["W_pos"])[: len(tokens)]
    residuals = [h]
    n_layers = sum(1 for k in p if k.startswith("layer_"))
    for i in range(1, n_layers + 1):
        a = {k: cast(v) for k, v in p[f"layer_{i}"]["attn"].items()}
        q = np.einsum("td,hde->hte", h, a["W_Q"], optimize=True) + a["b_Q"][:, None, :]
        k = np.einsum("td,hde->hte", h, a["W_K"], optimize=True) + a["b_K"][:, None, :]
        v = np.einsum("td,hde->hte", h, a["W_V"], optimize=True) + a["b_V"][:, None, :]
        pattern = _softmax_causal(np.einsum("hte,hue->htu", q, k, optimize=True))
        z = np.einsum("htu,hue->hte", pattern, v, optimize=True)
        h = h + np.einsum("hte,hed->td", z, a["W_O"], optimize=True) + a["b_O"]
        residuals.append(h)
        m = {k: cast(v) for k, v in p[f"layer_{i}"]["mlp"].items()}
        h = h + np.maximum(h @ m["W_in"] + m["b_in"], 0) @ m["W_out"] + m["b_out"]
        residuals.append(h)
    readout = h @ cast(p["unembed"]["W_U"]) + cast(p["unembed"]["b_U"])
    return (readout, residuals) if capture else readout
