"""The executor: a plain decoder-only transformer in Flax, with the shapes it runs on.

``Transformer`` takes nothing but shapes (``ModelConfig``), weights (``params``) and token
ids. Each of its layers is ``h += attention(h); h += mlp(h)`` with causal softmax
multi-head attention (scores ``q . k``, no extra scale: any ``1/sqrt(d_head)`` is folded
into ``W_Q``), a ReLU MLP, no layer norm, and a linear readout ``h W_U + b_U``.
Attention computes ``softmax(s) v`` as ``(exp(s - max s) v) / sum exp(s - max s)``:
densely (all ``T x T`` scores at once) for prompts of at most ``ATTENTION_BLOCK`` tokens
or when activations are captured, and block by block for longer prompts, so that time
grows as ``T^2`` and memory as ``T`` (``blockwise_attention``: the same ``exp`` arguments,
only the order of the sums differs).

Heads that add exactly zero (``live_heads``: zero output or value weights, as in most
layers of the construction and in every zero-padded head) can be left out of a program
(``heads``). ``compiled_forward`` keeps one compiled program per (shape, dtype, batch,
length, capture, block, heads, devices); ``bucket_config`` rounds every width up so that
models of different task sets share programs; ``PROGRAM_LOG`` counts how often each
program ran.

This module imports nothing from the project: ``superpose.construct`` builds weights
for a ``ModelConfig`` and ``superpose.model`` runs prompts through ``forward``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class ModelConfig:
    """Shapes of a plain decoder-only transformer; all the Flax module knows."""

    n_layers: int
    n_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    n_vocab: int
    n_ctx: int
    d_out: int

    def to_json(self) -> dict:
        return dict(self.__dict__)


def param_shapes(config: ModelConfig) -> dict[str, Any]:
    """The params pytree's structure (TransformerLens-style names) with each array's shape."""
    H, D, dh, M = config.n_heads, config.d_model, config.d_head, config.d_mlp
    layer = {
        "attn": {"W_Q": (H, D, dh), "b_Q": (H, dh), "W_K": (H, D, dh), "b_K": (H, dh),
                 "W_V": (H, D, dh), "b_V": (H, dh), "W_O": (H, dh, D), "b_O": (D,)},
        "mlp": {"W_in": (D, M), "b_in": (M,), "W_out": (M, D), "b_out": (D,)},
    }
    return {
        "embed": {"W_E": (config.n_vocab, D), "W_pos": (config.n_ctx, D)},
        **{f"layer_{i}": layer for i in range(1, config.n_layers + 1)},
        "unembed": {"W_U": (D, config.d_out), "b_U": (config.d_out,)},
    }


HIGHEST = jax.lax.Precision.HIGHEST


class Embed(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, tokens):
        c = self.config
        W_E = self.param("W_E", nn.initializers.zeros, (c.n_vocab, c.d_model))
        W_pos = self.param("W_pos", nn.initializers.zeros, (c.n_ctx, c.d_model))
        return W_E[tokens] + W_pos[: tokens.shape[-1]]


ATTENTION_BLOCK = 256  # prompts longer than this run attention block by block


def attention_block(length: int) -> int:
    """The block size the executor picks for a prompt of ``length`` tokens (``length``: dense).

    Measured on the 2-core reference machine (float64, K = 4): blocks of 128 ran 2x faster
    than blocks of 256 at T = 1024, and 20% slower at T = 4096 (the loop's overhead).
    """
    if length <= ATTENTION_BLOCK:
        return length
    return 128 if length <= 2048 else 256


def causal_attention(q: jax.Array, k: jax.Array, v: jax.Array):
    """Dense causal attention of ``q, k, v [batch, head, T, d_head]``: ``(z, pattern)``."""
    T = q.shape[2]
    scores = jnp.einsum("bhte,bhue->bhtu", q, k, precision=HIGHEST)
    scores = jnp.where(jnp.tril(jnp.ones((T, T), dtype=bool)), scores, -jnp.inf)
    # softmax(scores) @ v, normalised after the weighted sum (as flash attention does):
    # the same function, but sums of equal weights stay exact integers.
    unnormalised = jnp.exp(scores - jax.lax.stop_gradient(scores.max(axis=-1, keepdims=True)))
    normaliser = unnormalised.sum(axis=-1, keepdims=True)
    z = jnp.einsum("bhtu,bhue->bhte", unnormalised, v, precision=HIGHEST) / normaliser
    return z, unnormalised / normaliser


def blockwise_attention(q: jax.Array, k: jax.Array, v: jax.Array, block: int) -> jax.Array:
    """``causal_attention``'s ``z`` computed over query and key blocks of ``block`` positions.

    For query block i only key blocks j <= i are visited (later ones are entirely masked):

        pass 1:  m_t   = max over the visible keys u of  q_t . k_u
        pass 2:  num_t = sum_u exp(q_t . k_u - m_t) v_u,   den_t = sum_u exp(q_t . k_u - m_t)
        z_t = num_t / den_t

    Both passes recompute the block scores, so every ``exp`` argument is the one the dense
    path computes (``score - row max``, no running rescaling); only the order of the sums
    differs, which the floating-point model of ``superpose.construct.bound`` allows (F2).
    ``T`` is padded at the end to a multiple of ``block``; causal masking keeps the padding
    from every real query. Memory is ``O(batch * heads * block^2)`` beyond the activations.
    """
    B, H, T, dh = q.shape
    n_blocks = -(-T // block)
    pad = [(0, 0), (0, 0), (0, n_blocks * block - T), (0, 0)]
    # [n_blocks, B, H, block, dh]
    split = lambda x: jnp.pad(x, pad).reshape(B, H, n_blocks, block, dh).transpose(2, 0, 1, 3, 4)  # noqa: E731
    qs, ks, vs = split(q), split(k), split(v)
    offsets = jnp.arange(block)

    def scores(i, j, q_i):
        s = jnp.einsum("bhte,bhue->bhtu", q_i, ks[j], precision=HIGHEST)
        visible = (j * block + offsets)[None, :] <= (i * block + offsets)[:, None]
        return jnp.where(visible, s, -jnp.inf)

    def query_block(i):
        q_i = qs[i]
        row_max = jax.lax.fori_loop(0, i + 1, lambda j, m: jnp.maximum(m, scores(i, j, q_i).max(axis=-1)),
                                    jnp.full((B, H, block), -jnp.inf, dtype=q.dtype))

        def accumulate(j, carry):
            num, den = carry
            e = jnp.exp(scores(i, j, q_i) - row_max[..., None])
            return num + jnp.einsum("bhtu,bhue->bhte", e, vs[j], precision=HIGHEST), den + e.sum(axis=-1)

        zero = jnp.zeros((B, H, block, dh), dtype=q.dtype)
        num, den = jax.lax.fori_loop(0, i + 1, accumulate, (zero, jnp.zeros((B, H, block), dtype=q.dtype)))
        return num / den[..., None]

    z = jax.lax.map(query_block, jnp.arange(n_blocks))             # [n_blocks, B, H, block, dh]
    return z.transpose(1, 2, 0, 3, 4).reshape(B, H, n_blocks * block, dh)[:, :, :T]


def live_heads(params: Any) -> tuple[tuple[int, ...], ...]:
    """Per layer, the heads whose output can be nonzero: ``W_O[h] != 0`` and ``(W_V[h], b_V[h]) != 0``.

    Any other head adds exactly zero to the residual stream: its ``z`` is a convex
    combination of value vectors (all zero when ``W_V[h]`` and ``b_V[h]`` are), and
    ``z W_O[h]`` is zero when ``W_O[h]`` is. ``forward(..., heads=live_heads(params))``
    computes attention for the live heads only, the same function (for finite inputs)
    with fewer ``T x T`` score matrices; zero-padded heads (``pad_params``) are never live.
    ``params`` are host arrays (NumPy), as ``superpose.construct`` builds them.
    """
    live = []
    for i in range(1, sum(name.startswith("layer_") for name in params) + 1):
        attn = params[f"layer_{i}"]["attn"]
        W_V, b_V, W_O = (np.asarray(attn[n]) for n in ("W_V", "b_V", "W_O"))
        writes = np.any(W_O != 0, axis=(1, 2))
        reads = np.any(W_V != 0, axis=(1, 2)) | np.any(b_V != 0, axis=1)
        live.append(tuple(int(h) for h in np.flatnonzero(writes & reads)))
    return tuple(live)


class Attention(nn.Module):
    """Causal multi-head attention; ``heads`` (static) lists the heads to compute (default all).

    Heads left out must be ones that add exactly zero (``live_heads``); their weights stay
    in the params, so the params tree does not depend on ``heads``.
    """

    config: ModelConfig
    heads: tuple[int, ...] | None = None

    @nn.compact
    def __call__(self, h, capture: bool = False, block: int | None = None):
        """``(output, pattern)``; the pattern is ``None`` on the block-wise path (``T > block``,
        default ``attention_block(T)``, and not ``capture``), which never holds all ``T x T``
        weights at once, and covers the computed heads only when ``heads`` is given."""
        c = self.config
        shape_in, shape_b = (c.n_heads, c.d_model, c.d_head), (c.n_heads, c.d_head)
        W_Q, W_K, W_V = (self.param(n, nn.initializers.zeros, shape_in) for n in ("W_Q", "W_K", "W_V"))
        b_Q, b_K, b_V = (self.param(n, nn.initializers.zeros, shape_b) for n in ("b_Q", "b_K", "b_V"))
        W_O = self.param("W_O", nn.initializers.zeros, (c.n_heads, c.d_head, c.d_model))
        b_O = self.param("b_O", nn.initializers.zeros, (c.d_model,))
        if self.heads is not None:
            if not self.heads:   # every head adds zero: only the output bias remains
                return jnp.broadcast_to(b_O, h.shape).astype(h.dtype), None
            keep = np.asarray(self.heads)
            W_Q, W_K, W_V, b_Q, b_K, b_V, W_O = (w[keep] for w in (W_Q, W_K, W_V, b_Q, b_K, b_V, W_O))
        q = jnp.einsum("btd,hde->bhte", h, W_Q, precision=HIGHEST) + b_Q[None, :, None, :]
        k = jnp.einsum("btd,hde->bhte", h, W_K, precision=HIGHEST) + b_K[None, :, None, :]
        v = jnp.einsum("btd,hde->bhte", h, W_V, precision=HIGHEST) + b_V[None, :, None, :]
        block = block or attention_block(h.shape[1])
        if capture or h.shape[1] <= block:
            z, pattern = causal_attention(q, k, v)
        else:
            z, pattern = blockwise_attention(q, k, v, block), None
        return jnp.einsum("bhte,hed->btd", z, W_O, precision=HIGHEST) + b_O, pattern


class MLP(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, h):
        c = self.config
        W_in = self.param("W_in", nn.initializers.zeros, (c.d_model, c.d_mlp))
        b_in = self.param("b_in", nn.initializers.zeros, (c.d_mlp,))
        W_out = self.param("W_out", nn.initializers.zeros, (c.d_mlp, c.d_model))
        b_out = self.param("b_out", nn.initializers.zeros, (c.d_model,))
        hidden = jax.nn.relu(jnp.einsum("btd,dm->btm", h, W_in, precision=HIGHEST) + b_in)
        return jnp.einsum("btm,md->btd", hidden, W_out, precision=HIGHEST) + b_out, hidden


class Block(nn.Module):
    config: ModelConfig
    heads: tuple[int, ...] | None = None

    @nn.compact
    def __call__(self, h, capture: bool = False, block: int | None = None):
        attn_out, pattern = Attention(self.config, self.heads, name="attn")(h, capture, block)
        h_mid = h + attn_out
        mlp_out, hidden = MLP(self.config, name="mlp")(h_mid)
        return h_mid + mlp_out, {"resid_mid": h_mid, "pattern": pattern, "mlp_hidden": hidden}


class Transformer(nn.Module):
    """Decoder-only transformer; ``__call__(tokens[batch, T])`` returns ``(readout, cache)``.

    With ``capture`` (dense attention at every length), ``cache`` holds, per layer, the
    residual stream after attention (``resid_mid``) and after the MLP (``resid_post``),
    the attention pattern ``[batch, head, query, key]`` and the MLP's hidden activations;
    ``cache["resid_pre"]`` is the embedding. Without it the cache is empty and prompts
    longer than ``block`` (default ``attention_block(T)``) run attention block by block.
    ``heads`` (per layer, from ``live_heads``) skips heads that add exactly zero.
    """

    config: ModelConfig
    heads: tuple[tuple[int, ...], ...] | None = None

    @nn.compact
    def __call__(self, tokens, capture: bool = False, block: int | None = None):
        c = self.config
        h = Embed(c, name="embed")(tokens)
        cache: dict[str, Any] = {"resid_pre": h} if capture else {}
        for i in range(1, c.n_layers + 1):
            layer_heads = None if self.heads is None else self.heads[i - 1]
            h, layer_cache = Block(c, layer_heads, name=f"layer_{i}")(h, capture, block)
            if capture:
                cache[f"layer_{i}"] = {**layer_cache, "resid_post": h}
        readout = Unembed(c, name="unembed")(h)
        return readout, cache


class Unembed(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, h):
        c = self.config
        W_U = self.param("W_U", nn.initializers.zeros, (c.d_model, c.d_out))
        b_U = self.param("b_U", nn.initializers.zeros, (c.d_out,))
        return jnp.einsum("btd,dv->btv", h, W_U, precision=HIGHEST) + b_U


@partial(jax.jit, static_argnames=("config", "capture", "block", "heads"))
def forward(config: ModelConfig, params: Any, tokens: jax.Array, capture: bool = False,
            block: int | None = None, heads: tuple[tuple[int, ...], ...] | None = None):
    """Readout ``[batch, T, d_out]`` (and the activation cache when ``capture``).

    ``heads``: per layer, the heads to compute (``live_heads(params)``; default all)."""
    readout, cache = Transformer(config, heads).apply({"params": params}, tokens, capture, block)
    return (readout, cache) if capture else readout


@dataclass(frozen=True)
class ProgramKey:
    """What one compiled forward program is specialised to."""

    config: ModelConfig
    dtype: str
    batch: int
    length: int
    capture: bool
    block: int
    heads: tuple[tuple[int, ...], ...] | None = None   # ``live_heads``; None: every head
    devices: int = 1   # the batch is split evenly over the first ``devices`` JAX devices


def use_all_cores() -> int:
    """Give JAX one CPU device per core (call before JAX starts its backend); returns the count.

    On a CPU, XLA runs a program's element-wise work (``exp`` of the attention scores,
    most of a long prompt's time) on one core per device. ``superpose.model.run_tokens``
    splits a batch over all devices, so with one device per core every core works. Does
    nothing once the backend has started, or when ``XLA_FLAGS`` already sets the count.
    """
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return jax.device_count()
    try:
        jax.config.update("jax_num_cpu_devices", cores)
    except RuntimeError:   # the backend has started: the device count is fixed
        pass
    return jax.device_count()


def batch_shardings(devices: int):
    """``(tokens, params)`` shardings of a program split over ``devices``: batch-split, replicated."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(jax.devices()[:devices]), ("batch",))
    return NamedSharding(mesh, PartitionSpec("batch")), NamedSharding(mesh, PartitionSpec())


PROGRAMS: dict[ProgramKey, Any] = {}   # the compiled programs, one per key
PROGRAM_LOG: dict[ProgramKey, int] = {}  # how many times each program has run


def compiled_forward(key: ProgramKey):
    """``forward`` compiled ahead of time for ``key`` (cached): call it as ``program(params, tokens)``.

    Must be called, like the program, with 64-bit mode on for float64 (``jax.enable_x64``).
    With ``key.devices > 1`` its arguments must carry ``batch_shardings(key.devices)``
    (``tokens`` split over the batch, ``params`` replicated).
    """
    if key not in PROGRAMS:
        split, replicated = batch_shardings(key.devices) if key.devices > 1 else (None, None)
        params = jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s, key.dtype, sharding=replicated),
                                        param_shapes(key.config),
                                        is_leaf=lambda x: isinstance(x, tuple) and all(isinstance(n, int) for n in x))
        tokens = jax.ShapeDtypeStruct((key.batch, key.length), jnp.int32, sharding=split)
        PROGRAMS[key] = forward.lower(key.config, params, tokens, capture=key.capture, block=key.block,
                                      heads=key.heads).compile()
    PROGRAM_LOG[key] = PROGRAM_LOG.get(key, 0) + 1
    return PROGRAMS[key]


def covering_config(*configs: ModelConfig) -> ModelConfig:
    """The smallest config at least as large as each of ``configs`` in every dimension."""
    if len({c.n_layers for c in configs}) != 1:
        raise ValueError("configs differ in n_layers")
    return ModelConfig(**{f: max(getattr(c, f) for c in configs) for f in ModelConfig.__dataclass_fields__})


def pad_params(params: Any, config: ModelConfig, shape: ModelConfig) -> Any:
    """Zero-pad every array of ``params`` (built for ``config``) to the shapes of ``shape``.

    Extra residual dimensions, heads, head dimensions, hidden units, tokens, positions
    and outputs all carry zero weights, so every real output is computed from the same
    non-zero terms: only the compiled shape changes (rounding may differ in the last bit).
    """
    if covering_config(config, shape) != shape:
        raise ValueError(f"cannot pad {config} into the smaller {shape}")

    def pad(array, target):  # zeros then one slice copy: np.pad is several times slower on small arrays
        out = np.zeros(target, array.dtype)
        out[tuple(slice(0, n) for n in array.shape)] = array
        return out

    return jax.tree_util.tree_map(pad, params, param_shapes(shape),
                                  is_leaf=lambda x: isinstance(x, np.ndarray))


def bucket(n: int, minimum: int = 16) -> int:
    """The smallest power of two >= max(n, minimum)."""
    return 1 << (max(n, minimum, 1) - 1).bit_length()


# The least width of each bucket: small task sets all fall in one bucket (one compiled
# program per prompt length and dtype); larger ones round up to the next power of two.
BUCKET_MINIMUMS = {"n_heads": 8, "d_model": 128, "d_head": 16, "d_mlp": 256, "n_vocab": 16, "n_ctx": 128,
                   "d_out": 16}


def bucket_config(config: ModelConfig, minimums: dict[str, int] = BUCKET_MINIMUMS) -> ModelConfig:
    """``config`` with every width rounded up to a power of two, at least ``minimums`` (layers kept).

    ``pad_params`` zero-pads a model's weights to it; the outputs are unchanged.
    """
    return ModelConfig(n_layers=config.n_layers, **{
        f: bucket(getattr(config, f), minimum=minimums.get(f, 1))
        for f in ModelConfig.__dataclass_fields__ if f != "n_layers"})
