"""The executed model: a plain decoder-only transformer in Flax, and batched JAX execution.

``Transformer`` takes nothing but shapes (``ModelConfig``), weights (``params``) and token
ids. Each of its layers is ``h += attention(h); h += mlp(h)`` with causal softmax
multi-head attention (scores ``q . k``, no extra scale: any ``1/sqrt(d_head)`` is folded
into ``W_Q``), a ReLU MLP, no layer norm, and a linear readout ``h W_U + b_U``.
Attention computes ``softmax(s) v`` as ``(exp(s - max s) v) / sum exp(s - max s)``.

``run`` pads prompts into a few shape buckets (powers of two) so that JAX compiles
once per bucket rather than once per prompt; padding goes at the end, where causal
attention keeps it from influencing any real position.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Iterable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from superpose.construct.build import ModelConfig, SuperposeModel, param_shapes
from superpose.construct.bound import unit_roundoff
from superpose.setting import Example, Prompt, PromptError, prediction_positions, tokenize, validate_prompt

HIGHEST = jax.lax.Precision.HIGHEST


class Embed(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, tokens):
        c = self.config
        W_E = self.param("W_E", nn.initializers.zeros, (c.n_vocab, c.d_model))
        W_pos = self.param("W_pos", nn.initializers.zeros, (c.n_ctx, c.d_model))
        return W_E[tokens] + W_pos[: tokens.shape[-1]]


class Attention(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, h):
        c = self.config
        shape_in, shape_b = (c.n_heads, c.d_model, c.d_head), (c.n_heads, c.d_head)
        W_Q, W_K, W_V = (self.param(n, nn.initializers.zeros, shape_in) for n in ("W_Q", "W_K", "W_V"))
        b_Q, b_K, b_V = (self.param(n, nn.initializers.zeros, shape_b) for n in ("b_Q", "b_K", "b_V"))
        W_O = self.param("W_O", nn.initializers.zeros, (c.n_heads, c.d_head, c.d_model))
        b_O = self.param("b_O", nn.initializers.zeros, (c.d_model,))
        q = jnp.einsum("btd,hde->bhte", h, W_Q, precision=HIGHEST) + b_Q[None, :, None, :]
        k = jnp.einsum("btd,hde->bhte", h, W_K, precision=HIGHEST) + b_K[None, :, None, :]
        v = jnp.einsum("btd,hde->bhte", h, W_V, precision=HIGHEST) + b_V[None, :, None, :]
        scores = jnp.einsum("bhte,bhue->bhtu", q, k, precision=HIGHEST)
        T = h.shape[1]
        causal = jnp.tril(jnp.ones((T, T), dtype=bool))
        scores = jnp.where(causal, scores, -jnp.inf)
        # softmax(scores) @ v, normalised after the weighted sum (as flash attention does):
        # the same function, but sums of equal weights stay exact integers.
        unnormalised = jnp.exp(scores - jax.lax.stop_gradient(scores.max(axis=-1, keepdims=True)))
        normaliser = unnormalised.sum(axis=-1, keepdims=True)
        z = jnp.einsum("bhtu,bhue->bhte", unnormalised, v, precision=HIGHEST) / normaliser
        pattern = unnormalised / normaliser
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

    @nn.compact
    def __call__(self, h):
        attn_out, pattern = Attention(self.config, name="attn")(h)
        h_mid = h + attn_out
        mlp_out, hidden = MLP(self.config, name="mlp")(h_mid)
        return h_mid + mlp_out, {"resid_mid": h_mid, "pattern": pattern, "mlp_hidden": hidden}


class Transformer(nn.Module):
    """Decoder-only transformer; ``__call__(tokens[batch, T])`` returns ``(readout, cache)``.

    ``cache`` holds, per layer, the residual stream after attention (``resid_mid``) and
    after the MLP (``resid_post``), the attention pattern ``[batch, head, query, key]``
    and the MLP's hidden activations; ``cache["resid_pre"]`` is the embedding.
    """

    config: ModelConfig

    @nn.compact
    def __call__(self, tokens):
        c = self.config
        h = Embed(c, name="embed")(tokens)
        cache: dict[str, Any] = {"resid_pre": h}
        for i in range(1, c.n_layers + 1):
            h, layer_cache = Block(c, name=f"layer_{i}")(h)
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


COMPILED_SIGNATURES: set[tuple] = set()  # (config, tokens shape, dtype, capture) run so far: one compile each


@partial(jax.jit, static_argnames=("config", "capture"))
def forward(config: ModelConfig, params: Any, tokens: jax.Array, capture: bool = False):
    """Readout ``[batch, T, d_out]`` (and the activation cache when ``capture``)."""
    readout, cache = Transformer(config).apply({"params": params}, tokens)
    return (readout, cache) if capture else readout


def _dtype(dtype: Any) -> str:
    unit_roundoff(dtype)  # raises a typed error for anything but float32/float64
    return np.dtype(dtype).name


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

    def pad(array, target):
        return np.pad(array, [(0, t - n) for n, t in zip(array.shape, target)])

    return jax.tree_util.tree_map(pad, params, param_shapes(shape),
                                  is_leaf=lambda x: isinstance(x, np.ndarray))


def device_params(model: SuperposeModel, dtype: str, shape: ModelConfig | None = None) -> Any:
    """The params as JAX arrays of ``dtype``, zero-padded to ``shape`` if given (cached on the model)."""
    key = ("params", dtype, shape)
    if key not in model.cache:
        params = model.params if shape is None else pad_params(model.params, model.config, shape)
        with jax.enable_x64(dtype == "float64"):
            model.cache[key] = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=dtype), params)
    return model.cache[key]


def bucket(n: int, minimum: int = 16) -> int:
    """The smallest power of two >= max(n, minimum)."""
    return 1 << (max(n, minimum, 1) - 1).bit_length()


def run_tokens(model: SuperposeModel, tokens: np.ndarray, dtype: str = "float32",
               capture: bool = False, shape: ModelConfig | None = None):
    """Run already-tokenized prompts ``tokens[batch, T]``; returns the readout ``[batch, T, d]``
    (and the activation cache of ``Transformer`` when ``capture``; it has the padded
    widths when ``shape`` is given)."""
    dtype = _dtype(dtype)
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise PromptError(f"tokens: expected shape [batch, T], got {tokens.shape}")
    n_ctx = (shape or model.config).n_ctx
    if tokens.shape[1] > n_ctx:
        raise PromptError(f"tokens: length {tokens.shape[1]} exceeds the model's context {n_ctx}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= model.config.n_vocab):
        raise PromptError(f"tokens: ids must lie in 0..{model.config.n_vocab - 1}")
    COMPILED_SIGNATURES.add((shape or model.config, tokens.shape, dtype, capture))
    with jax.enable_x64(dtype == "float64"):
        out = forward(shape or model.config, device_params(model, dtype, shape),
                      jnp.asarray(tokens, dtype=jnp.int32), capture=capture)
        out = jax.tree_util.tree_map(np.asarray, out)
    if shape is None:
        return out
    d = model.config.d_out
    return (out[0][..., :d], out[1]) if capture else out[..., :d]


def run(model: SuperposeModel, prompts: Sequence[Prompt] | Prompt, dtype: str = "float32",
        shape: ModelConfig | None = None, max_batch_elements: int = 2 ** 26) -> list[np.ndarray]:
    """The readout at every prediction position of each prompt, ``[m_i + 1, d]`` arrays.

    Prompts are validated (a ``PromptError`` names the field at fault), padded to a
    power-of-two length and batched in power-of-two batches. With ``shape`` (a config
    covering ``model.config``, e.g. from ``covering_config``) the weights are zero-padded
    to it, so models built for different task sets share one compiled program: a whole
    Hypothesis run then compiles only a handful of shapes.

    >>> from superpose import Task, TaskSet, Prompt, Example, build
    >>> tasks = TaskSet(vocab_size=3, slots=1, tasks=[Task("id", 0, [0, 1, 2]), Task("inc", 0, [1, 2, 0])])
    >>> model = build(tasks, max_examples=4)
    >>> out = run(model, Prompt([Example([0], 0), Example([1], 1), Example([2], 0)], query=[1]), "float64")[0]
    >>> out[-1].round(6).tolist()   # 2 of 3 examples fit "id", 1 fits "inc": 2/3 on 1, 1/3 on 2
    [0.0, 0.666667, 0.333333]
    """
    dtype = _dtype(dtype)
    if isinstance(prompts, Prompt):
        prompts = [prompts]
    if isinstance(prompts, (str, bytes, dict, Example)) or not isinstance(prompts, Iterable):
        raise PromptError(f"prompts: expected a Prompt or a list of Prompts, got {type(prompts).__name__}")
    prompts = list(prompts)
    for i, p in enumerate(prompts):
        try:
            validate_prompt(model.tasks, p, model.max_examples)
        except PromptError as e:
            raise PromptError(f"prompt {i}: {e}") from None
    token_lists = [tokenize(model.tasks, p) for p in prompts]
    results: list[np.ndarray | None] = [None] * len(prompts)
    by_length: dict[int, list[int]] = {}
    for i, toks in enumerate(token_lists):
        by_length.setdefault(min(bucket(len(toks)), (shape or model.config).n_ctx), []).append(i)
    for T, members in sorted(by_length.items()):
        # keep [batch, heads, T, T] attention patterns within the memory budget
        per_chunk = max(1, max_batch_elements // ((shape or model.config).n_heads * T * T))
        per_chunk = 1 << (per_chunk.bit_length() - 1)
        for start in range(0, len(members), per_chunk):
            chunk = members[start:start + per_chunk]
            batch = np.full((bucket(len(chunk), minimum=1), T), model.tasks.bos, dtype=np.int32)
            for row, i in enumerate(chunk):
                batch[row, : len(token_lists[i])] = token_lists[i]
            readout = run_tokens(model, batch, dtype, shape=shape)
            for row, i in enumerate(chunk):
                results[i] = readout[row, prediction_positions(model.tasks, prompts[i].n_examples)]
    return results  # type: ignore[return-value]


@partial(jax.jit, static_argnames=("config", "first", "last"))
def _apply_layers(config: ModelConfig, params: Any, resid: jax.Array, first: int, last: int):
    for i in range(first, last + 1):
        resid, _ = Block(config).apply({"params": params[f"layer_{i}"]}, resid)
    return resid


@partial(jax.jit, static_argnames=("config",))
def _apply_unembed(config: ModelConfig, params: Any, resid: jax.Array):
    return Unembed(config).apply({"params": params["unembed"]}, resid)


def embed(model: SuperposeModel, tokens: np.ndarray, dtype: str = "float64") -> np.ndarray:
    """The residual stream ``[batch, T, d_model]`` before layer 1 (token + position embedding)."""
    dtype = _dtype(dtype)
    with jax.enable_x64(dtype == "float64"):
        params = device_params(model, dtype)
        out = Embed(model.config).apply({"params": params["embed"]}, jnp.asarray(tokens, dtype=jnp.int32))
        return np.array(out)  # a writable copy, so callers can patch it


def apply_layers(model: SuperposeModel, resid: np.ndarray, first: int, last: int,
                 dtype: str = "float64") -> np.ndarray:
    """Run layers ``first..last`` (1-based, inclusive) on a residual stream ``[batch, T, d_model]``.

    With ``embed`` and ``unembed`` this splits a forward pass anywhere, so a residual
    state can be inspected or patched between layers (activation patching):

    >>> from superpose import Task, TaskSet, Prompt, Example, build, tokenize
    >>> tasks = TaskSet(vocab_size=3, slots=1, tasks=[Task("id", 0, [0, 1, 2]), Task("inc", 0, [1, 2, 0])])
    >>> model = build(tasks, max_examples=2)
    >>> tokens = tokenize(tasks, Prompt([Example([0], 1)], query=[2]))[None, :]
    >>> h = apply_layers(model, embed(model, tokens), 1, 5)
    >>> float(h[0, -1, model.layout.at("mix", 1)])      # the one example fits "inc"
    1.0
    >>> h[0, -1, model.layout["mix"].slice] = [0.25, 0.75]   # patch a different mixture in
    >>> unembed(model, apply_layers(model, h, 6, 7))[0, -1].tolist()
    [0.75, 0.0, 0.25]
    """
    dtype = _dtype(dtype)
    if not 1 <= first <= last <= model.config.n_layers:
        raise ValueError(f"layers must satisfy 1 <= first <= last <= {model.config.n_layers}, got {first}..{last}")
    with jax.enable_x64(dtype == "float64"):
        out = _apply_layers(model.config, device_params(model, dtype), jnp.asarray(resid, dtype=dtype), first, last)
        return np.array(out)


def unembed(model: SuperposeModel, resid: np.ndarray, dtype: str = "float64") -> np.ndarray:
    """The linear readout ``resid W_U + b_U`` of a residual stream ``[batch, T, d_model]``."""
    dtype = _dtype(dtype)
    with jax.enable_x64(dtype == "float64"):
        return np.array(_apply_unembed(model.config, device_params(model, dtype), jnp.asarray(resid, dtype=dtype)))
