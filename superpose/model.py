"""Running prompts through the executor: batching, padding, activation capture, patching.

``run`` pads prompts into a few shape buckets (powers of two) so that JAX compiles
once per bucket rather than once per prompt; padding goes at the end, where causal
attention keeps it from influencing any real position. It also zero-pads the weights
to ``bucket_config(model.config)``, so models of different task sets share compiled
programs (a fuzz test of many small task sets compiles a handful). Long prompts run
attention block by block (``superpose.executor.blockwise_attention``). A ``model`` here is anything
with ``tasks``, ``max_examples``, ``config``, ``params`` and a ``cache`` dict (a
``superpose.construct.SuperposeModel``); this module imports only the setting and the
executor (``superpose.executor``, whose names it re-exports).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from superpose.executor import (  # noqa: F401  (re-exported: the executor's public names)
    ATTENTION_BLOCK,
    attention_block,
    batch_shardings,
    HIGHEST,
    PROGRAM_LOG,
    PROGRAMS,
    Block,
    Embed,
    ModelConfig,
    ProgramKey,
    Transformer,
    Unembed,
    bucket,
    blockwise_attention,
    bucket_config,
    causal_attention,
    compiled_forward,
    covering_config,
    forward,
    live_heads,
    pad_params,
    param_shapes,
    use_all_cores,
)
from superpose.setting import BuildError, Example, Prompt, PromptError, prediction_positions, tokenize, validate_prompt

DTYPES = ("float32", "float64")


def _dtype(dtype: Any) -> str:
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise BuildError(f"dtype: must be one of {list(DTYPES)}, got {dtype!r}")
    return name


def device_params(model, dtype: str, shape: ModelConfig | None = None, devices: int = 1) -> Any:
    """The params as JAX arrays of ``dtype``, zero-padded to ``shape`` if given, on the first
    ``devices`` devices (replicated; cached on the model)."""
    key = ("params", dtype, shape, devices)
    if key not in model.cache:
        params = model.params if shape is None else pad_params(model.params, model.config, shape)
        host = jax.tree_util.tree_map(lambda a: np.asarray(a, dtype=dtype), params)
        placement = batch_shardings(devices)[1] if devices > 1 else None
        with jax.enable_x64(dtype == "float64"):
            model.cache[key] = jax.device_put(host, placement)  # one batched transfer of the whole tree
    return model.cache[key]


def model_live_heads(model) -> tuple[tuple[int, ...], ...]:
    """``live_heads`` of the model's params (cached on the model; the same for any zero padding)."""
    if "live_heads" not in model.cache:
        model.cache["live_heads"] = live_heads(model.params)
    return model.cache["live_heads"]


def batch_devices(batch: int) -> int:
    """How many devices ``run_tokens`` splits a batch over: all of them if they divide it, else one."""
    n = jax.device_count()
    return n if n > 1 and batch % n == 0 else 1


# A job of at least this many (padded) tokens gets programs of its own: its dead heads left out
# (``program_key``) and, in ``run``, the model's own widths. Compiling them costs less than
# computing zero-padded widths and dead heads for that many tokens.
LARGE_JOB_TOKENS = 2 ** 15


def program_key(model, batch: int, T: int, dtype: str, capture: bool = False,
                shape: ModelConfig | None = None, block: int | None = None) -> ProgramKey:
    """The program ``run_tokens`` runs ``tokens[batch, T]`` with (see there for the choices)."""
    block = attention_block(T) if block is None else block
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    dense = capture or T <= block   # one key (block = T) for every dense program of a length
    # Leave dead heads out where the work pays for a program of its own: long prompts, or
    # large batches. A few short prompts keep every head, so task sets of one shape share programs.
    prune = not capture and (T > ATTENTION_BLOCK or batch * T >= LARGE_JOB_TOKENS)
    return ProgramKey(shape or model.config, dtype, batch, T, capture, T if dense else block,
                      heads=model_live_heads(model) if prune else None,
                      devices=1 if capture else batch_devices(batch))


def program_inputs(model, key: ProgramKey, tokens: np.ndarray, shape: ModelConfig | None = None):
    """``(params, tokens)`` as ``compiled_forward(key)`` takes them: on its devices, of its dtype.

    Call with 64-bit mode on for float64 (``jax.enable_x64``), as the program."""
    placed = jnp.asarray(tokens, dtype=jnp.int32)
    if key.devices > 1:
        placed = jax.device_put(placed, batch_shardings(key.devices)[0])
    return device_params(model, key.dtype, shape, key.devices), placed


def run_tokens(model, tokens: np.ndarray, dtype: str = "float32",
               capture: bool = False, shape: ModelConfig | None = None, block: int | None = None):
    """Run already-tokenized prompts ``tokens[batch, T]``; returns the readout ``[batch, T, d]``
    (and the activation cache of ``Transformer`` when ``capture``; it has the padded
    widths when ``shape`` is given). Without ``capture``, prompts longer than ``block``
    (default ``attention_block(T)``: dense up to ``ATTENTION_BLOCK`` tokens) run attention
    block by block; beyond ``ATTENTION_BLOCK`` tokens, or for a batch of at least
    ``LARGE_JOB_TOKENS`` tokens, attention is computed for the live heads only
    (``live_heads``: the others add exactly zero; a few short prompts keep every head, so
    that task sets of one padded shape share programs). The batch is split over all JAX devices
    when they divide it (``use_all_cores``). With ``capture``, attention is dense, for
    every head, on one device (the cache holds the ``T x T`` patterns)."""
    dtype = _dtype(dtype)
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise PromptError(f"tokens: expected shape [batch, T], got {tokens.shape}")
    n_ctx = (shape or model.config).n_ctx
    if tokens.shape[1] > n_ctx:
        raise PromptError(f"tokens: length {tokens.shape[1]} exceeds the model's context {n_ctx}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= model.config.n_vocab):
        raise PromptError(f"tokens: ids must lie in 0..{model.config.n_vocab - 1}")
    key = program_key(model, tokens.shape[0], tokens.shape[1], dtype, capture, shape, block)
    with jax.enable_x64(dtype == "float64"):
        out = compiled_forward(key)(*program_inputs(model, key, tokens, shape))
        out = jax.tree_util.tree_map(np.asarray, out)
    if shape is None:
        return out
    d = model.config.d_out
    return (out[0][..., :d], out[1]) if capture else out[..., :d]


MIN_LENGTH = 128  # shortest padded prompt length in ``run``: short prompts share one program


def run(model, prompts: Sequence[Prompt] | Prompt, dtype: str = "float32",
        shape: ModelConfig | None = None, max_batch_elements: int = 2 ** 26) -> list[np.ndarray]:
    """The readout at every prediction position of each prompt, ``[m_i + 1, d]`` arrays.

    Prompts are validated (a ``PromptError`` names the field at fault), padded to a
    power-of-two length (at least ``MIN_LENGTH``) and batched in power-of-two batches.
    The weights are zero-padded to ``shape``. By default that is
    ``bucket_config(model.config)`` (every width rounded up to a power of two), so that
    models built for different task sets share compiled programs (a whole Hypothesis run
    compiles a handful); a large job (at least ``LARGE_JOB_TOKENS`` padded tokens) runs
    the model's own widths instead (padding would cost more than it saves in compiles).
    Pass ``shape=model.config`` to run the unpadded model, or a ``covering_config`` of a
    family to share one shape across buckets.

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
    if shape is None:   # the tokens the bucketed shape would run decide
        shape = bucket_config(model.config)
        if sum(min(bucket(len(t), minimum=MIN_LENGTH), shape.n_ctx) for t in token_lists) >= LARGE_JOB_TOKENS:
            shape = model.config
    if shape == model.config:
        shape = None   # the model's own arrays, unpadded
    n_ctx = (shape or model.config).n_ctx
    results: list[np.ndarray | None] = [None] * len(prompts)
    by_length: dict[int, list[int]] = {}
    for i, toks in enumerate(token_lists):
        by_length.setdefault(min(bucket(len(toks), minimum=MIN_LENGTH), n_ctx), []).append(i)
    for T, members in sorted(by_length.items()):
        # keep [batch, heads, T, min(T, block)] attention scores within the memory budget
        per_chunk = max(1, max_batch_elements // ((shape or model.config).n_heads * T * attention_block(T)))
        per_chunk = 1 << (per_chunk.bit_length() - 1)
        for start in range(0, len(members), per_chunk):
            chunk = members[start:start + per_chunk]
            batch = np.full((bucket(len(chunk), minimum=1), T), model.tasks.bos, dtype=np.int32)
            for row, i in enumerate(chunk):
                batch[row, : len(token_lists[i])] = token_lists[i]
            readout = run_tokens(model, batch, dtype, shape=shape)
            for row, i in enumerate(chunk):
                results[i] = readout[row, prediction_positions(model.tasks, prompts[i].n_examples,
                                                                len(prompts[i].query_prefix))]
    return results  # type: ignore[return-value]


@partial(jax.jit, static_argnames=("config", "first", "last"))
def _apply_layers(config: ModelConfig, params: Any, resid: jax.Array, first: int, last: int):
    for i in range(first, last + 1):
        resid, _ = Block(config).apply({"params": params[f"layer_{i}"]}, resid)
    return resid


@partial(jax.jit, static_argnames=("config",))
def _apply_unembed(config: ModelConfig, params: Any, resid: jax.Array):
    return Unembed(config).apply({"params": params["unembed"]}, resid)


def embed(model, tokens: np.ndarray, dtype: str = "float64") -> np.ndarray:
    """The residual stream ``[batch, T, d_model]`` before layer 1 (token + position embedding)."""
    dtype = _dtype(dtype)
    with jax.enable_x64(dtype == "float64"):
        params = device_params(model, dtype)
        out = Embed(model.config).apply({"params": params["embed"]}, jnp.asarray(tokens, dtype=jnp.int32))
        return np.array(out)  # a writable copy, so callers can patch it


def apply_layers(model, resid: np.ndarray, first: int, last: int,
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


def unembed(model, resid: np.ndarray, dtype: str = "float64") -> np.ndarray:
    """The linear readout ``resid W_U + b_U`` of a residual stream ``[batch, T, d_model]``."""
    dtype = _dtype(dtype)
    with jax.enable_x64(dtype == "float64"):
        return np.array(_apply_unembed(model.config, device_params(model, dtype), jnp.asarray(resid, dtype=dtype)))
