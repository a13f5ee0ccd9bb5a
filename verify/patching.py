"""Activation patching shared by the constructed and the trained models.

Both models are decoder-only transformers of the same shape, so both are run here by one
hookable NumPy forward pass (float64) over weights in TransformerLens's layout
(``HookedWeights``): token + position embedding, then per layer an optional LayerNorm,
causal softmax attention, an optional LayerNorm and an MLP, then an optional final
LayerNorm and the unembedding. Each model kind has an adapter that only renames its
weights: ``from_constructed`` here (``superpose.construct``: no LayerNorm, ReLU, unscaled
scores, the readout is itself the distribution) and ``superpose.train.hooked.from_checkpoint``
(the trained GPT: LayerNorm, tanh-GELU, scores over ``sqrt(d_head)``, logits). Each adapter's
test checks this forward pass against the model's own (Flax) forward.

A **site** is ``Site(layer, sublayer, head=None, position=None)``: ``layer`` counts from 1 (as
the construction's ``layer_1..layer_7``); ``sublayer`` is one of ``SUBLAYERS`` (``"attn"`` and
``"mlp"`` are the sublayers' outputs written into the residual stream, ``"attn"`` with a
``head`` is that head's share of it, without ``b_O``); ``position`` is a token index (negative
counts from the end: ``-1`` is a prompt's last token, the query's ARROW) or ``None`` for all.
A **readout** maps the output ``[batch, T, vocab]`` to one number per prompt:
``TokenProbability`` or ``LogitDifference``.

>>> from superpose import Task, TaskSet, Prompt, Example, build, tokenize
>>> tasks = TaskSet(vocab_size=3, slots=1, tasks=[Task("id", 0, [0, 1, 2]), Task("inc", 0, [1, 2, 0])])
>>> hooked = from_constructed(build(tasks, max_examples=2))
>>> a = tokenize(tasks, Prompt([Example([0], 0)], query=[2]))[None]   # shows "id": answer 2
>>> b = tokenize(tasks, Prompt([Example([0], 1)], query=[2]))[None]   # shows "inc": answer 0
>>> readout = TokenProbability(2)
>>> float(readout(hooked, run_with_patches(hooked, a))[0])
1.0
>>> float(activation_patch(hooked, a, b, [Site(5, "resid_post", position=-1)], readout)[0])
0.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from superpose.setting import SuperposeError

SUBLAYERS = ("resid_pre", "attn", "resid_mid", "mlp", "resid_post")
ACTIVATIONS = ("relu", "gelu_tanh")
OUTPUTS = ("logits", "probabilities")


class PatchError(SuperposeError):
    """A site, readout or patch does not fit the model or the prompts."""


@dataclass(frozen=True)
class Site:
    """Where in the forward pass: ``layer`` (1-based), ``sublayer`` (``SUBLAYERS``), ``head``, ``position``."""

    layer: int
    sublayer: str
    head: int | None = None
    position: int | None = None

    def check(self, weights: "HookedWeights", T: int) -> None:
        L, H = len(weights.blocks), weights.n_heads
        if isinstance(self.layer, bool) or not isinstance(self.layer, int) or not 1 <= self.layer <= L:
            raise PatchError(f"site {self}: layer must be 1..{L}")
        if self.sublayer not in SUBLAYERS:
            raise PatchError(f"site {self}: sublayer must be one of {list(SUBLAYERS)}")
        if self.head is not None and (self.sublayer != "attn" or not 0 <= self.head < H):
            raise PatchError(f"site {self}: a head (0..{H - 1}) is named only with sublayer 'attn'")
        if self.position is not None and not -T <= self.position < T:
            raise PatchError(f"site {self}: position outside the {T} tokens of the prompts")


@dataclass
class HookedWeights:
    """A decoder-only transformer in TransformerLens's layout, as float64 arrays.

    ``blocks[i]`` holds ``W_Q, b_Q, W_K, b_K, W_V, b_V, W_O, b_O, W_in, b_in, W_out, b_out`` and,
    with LayerNorm, ``ln1_w, ln1_b, ln2_w, ln2_b``; ``ln_final`` is ``(w, b)`` or ``None``.
    ``output`` says what ``h W_U + b_U`` is: ``"logits"`` or ``"probabilities"`` (the construction).
    """

    W_E: np.ndarray
    W_pos: np.ndarray
    blocks: list[dict[str, np.ndarray]]
    W_U: np.ndarray
    b_U: np.ndarray
    act: str = "relu"
    attn_scale: float = 1.0
    layer_norm: bool = False
    ln_eps: float = 1e-5
    ln_final: tuple[np.ndarray, np.ndarray] | None = None
    output: str = "probabilities"
    tasks: Any = None               # the TaskSet the model answers (tokens: content 0..d-1, BOS, ARROW)
    name: str = "model"
    cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.act not in ACTIVATIONS or self.output not in OUTPUTS:
            raise PatchError(f"act {self.act!r} / output {self.output!r}: expected {ACTIVATIONS} / {OUTPUTS}")

    @property
    def n_heads(self) -> int:
        return self.blocks[0]["W_Q"].shape[0]

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def d_model(self) -> int:
        return self.W_E.shape[1]


def from_constructed(model) -> HookedWeights:
    """The constructed model (``superpose.build``) in the hookable layout (its weights renamed)."""
    p = model.params
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    blocks = [{name: f64(a) for part in ("attn", "mlp") for name, a in p[f"layer_{i}"][part].items()}
              for i in range(1, model.config.n_layers + 1)]
    return HookedWeights(f64(p["embed"]["W_E"]), f64(p["embed"]["W_pos"]), blocks, f64(p["unembed"]["W_U"]),
                         f64(p["unembed"]["b_U"]), tasks=model.tasks, name="constructed")


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def _act(x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "relu":
        return np.maximum(x, 0)
    # flax nn.gelu, TL gelu_new; x * x * x, not x ** 3 (NumPy's float power is several times slower)
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * (x * x * x))))


def _dense(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``x @ W`` over the last axis as one 2-D matrix product (several times faster than a stacked one)."""
    rows = int(np.prod(x.shape[:-1]))   # not -1: a layer may have no live hidden units (x.shape[-1] == 0)
    return (x.reshape(rows, x.shape[-1]) @ W).reshape(x.shape[:-1] + (W.shape[-1],))


def _per_head(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``einsum("btd,hde->bhte", x, W)`` as one 2-D matrix product."""
    H, D, e = W.shape
    return _dense(x, W.transpose(1, 0, 2).reshape(D, H * e)).reshape(x.shape[:2] + (H, e)).transpose(0, 2, 1, 3)


def _live_units(block: dict[str, np.ndarray], act: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``W_in, b_in, W_out`` of the block's MLP without the hidden units that write nothing.

    A unit whose ``W_out`` row is zero adds nothing to the output, and a unit whose ``W_in``
    column is zero is the constant ``act(b_in)``, which adds nothing when that is 0. Leaving
    both out gives the same MLP output: the construction pads every layer's MLP to the widest
    layer's width, so most of its units are such zeros (for the three-task model of
    ``examples/inside_a_trained_model.py``, 1,976 of 9,216 in layers 1-6). Found on every call:
    the weights may have been edited since the last one."""
    W_in, b_in, W_out = block["W_in"], block["b_in"], block["W_out"]
    reads = W_in.any(0) | (_act(b_in, act) != 0)
    live = reads & W_out.any(1)
    if live.all():
        return W_in, b_in, W_out
    return W_in[:, live], b_in[live], W_out[live]


Patch = Callable[[np.ndarray], np.ndarray]   # the activation at a site -> its replacement


def _apply(patches: dict[Site, Patch], layer: int, sublayer: str, value: np.ndarray, head: int | None = None):
    for site, fn in patches.items():
        if (site.layer, site.sublayer, site.head) != (layer, sublayer, head):
            continue
        index = (slice(None),) if site.position is None else (slice(None), site.position)
        new = np.asarray(fn(value[index].copy()), dtype=np.float64)
        if new.shape != value[index].shape:
            raise PatchError(f"patch at {site}: got shape {new.shape}, the activation has {value[index].shape}")
        value = value.copy()
        value[index] = new
    return value


def run_with_patches(weights: HookedWeights, tokens: np.ndarray, patches: dict[Site, Patch] | None = None,
                     cache: dict | None = None) -> np.ndarray:
    """The output ``[batch, T, vocab]`` of ``tokens[batch, T]`` with ``patches`` applied.

    With ``cache`` (a dict) it is filled with every activation: ``cache[(layer, sublayer)]``
    ``[batch, T, d_model]``, ``cache[(layer, "pattern")]`` ``[batch, head, query, key]``,
    ``cache[(layer, "head_out")]`` ``[batch, head, T, d_model]`` and ``cache["final"]`` (the
    residual stream after the last layer, before the final LayerNorm).
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
        raise PatchError(f"tokens: expected integer ids of shape [batch, T], got {tokens.dtype} {tokens.shape}")
    V, T = weights.W_E.shape[0], tokens.shape[1]
    if tokens.size and (tokens.min() < 0 or tokens.max() >= V):
        raise PatchError(f"tokens: ids must lie in 0..{V - 1}")
    if T > len(weights.W_pos):
        raise PatchError(f"tokens: length {T} exceeds the model's context {len(weights.W_pos)}")
    patches = dict(patches or {})
    for site in patches:
        if not isinstance(site, Site):
            raise PatchError(f"patches: keys must be Site, got {type(site).__name__}")
        site.check(weights, T)
    w = weights
    h = w.W_E[tokens] + w.W_pos[:T]
    causal = np.tril(np.ones((T, T), dtype=bool))
    heads_patched = {s.layer for s in patches if s.head is not None}
    for layer, b in enumerate(w.blocks, start=1):
        h = _apply(patches, layer, "resid_pre", h)
        x = layer_norm(h, b["ln1_w"], b["ln1_b"], w.ln_eps) if w.layer_norm else h
        q, k, v = (_per_head(x, b[f"W_{n}"]) + b[f"b_{n}"][:, None] for n in "QKV")
        scores = np.where(causal, np.einsum("bhte,bhue->bhtu", q, k, optimize=True) / w.attn_scale, -np.inf)
        pattern = np.exp(scores - scores.max(-1, keepdims=True))
        pattern /= pattern.sum(-1, keepdims=True)
        z = np.einsum("bhtu,bhue->bhte", pattern, v, optimize=True)
        if cache is not None or layer in heads_patched:
            head_out = np.einsum("bhte,hed->bhtd", z, b["W_O"], optimize=True)
            for head in range(w.n_heads):
                head_out[:, head] = _apply(patches, layer, "attn", head_out[:, head], head)
            attn_out = head_out.sum(1) + b["b_O"]
        else:
            attn_out = np.einsum("bhte,hed->btd", z, b["W_O"], optimize=True) + b["b_O"]
        attn_out = _apply(patches, layer, "attn", attn_out)
        if cache is not None:
            cache.update({(layer, "resid_pre"): h, (layer, "pattern"): pattern, (layer, "head_out"): head_out})
        h = _apply(patches, layer, "resid_mid", h + attn_out)
        x = layer_norm(h, b["ln2_w"], b["ln2_b"], w.ln_eps) if w.layer_norm else h
        W_in, b_in, W_out = _live_units(b, w.act)
        hidden = _act(_dense(x, W_in) + b_in, w.act)
        mlp_out = _apply(patches, layer, "mlp", _dense(hidden, W_out) + b["b_out"])
        if cache is not None:
            cache.update({(layer, "attn"): attn_out, (layer, "resid_mid"): h, (layer, "mlp"): mlp_out})
        h = _apply(patches, layer, "resid_post", h + mlp_out)
        if cache is not None:
            cache[(layer, "resid_post")] = h
    if cache is not None:
        cache["final"] = h
    if w.ln_final is not None:
        h = layer_norm(h, *w.ln_final, w.ln_eps)
    return _dense(h, w.W_U) + w.b_U


def probabilities(weights: HookedWeights, output: np.ndarray) -> np.ndarray:
    """The distribution over tokens given by an output (softmax of logits; the construction's readout as is)."""
    if weights.output == "probabilities":
        return output
    e = np.exp(output - output.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _per_prompt(token, n: int, where: str) -> np.ndarray:
    tokens = np.broadcast_to(np.asarray(token), (n,))
    if not np.issubdtype(tokens.dtype, np.integer):
        raise PatchError(f"{where}: token ids must be integers, got {tokens.dtype}")
    return tokens


@dataclass(frozen=True)
class TokenProbability:
    """The probability of ``token`` (an id, or one id per prompt) at ``position`` (default: the last token)."""

    token: Any
    position: int = -1

    def __call__(self, weights: HookedWeights, output: np.ndarray) -> np.ndarray:
        p = probabilities(weights, output[:, self.position])
        return p[np.arange(len(p)), _per_prompt(self.token, len(p), "TokenProbability")]


@dataclass(frozen=True)
class LogitDifference:
    """``logit(a) - logit(b)`` at ``position`` (for a readout that is already a distribution: ``log p_a - log p_b``)."""

    token_a: Any
    token_b: Any
    position: int = -1

    def __call__(self, weights: HookedWeights, output: np.ndarray) -> np.ndarray:
        out = output[:, self.position]
        if weights.output == "probabilities":
            out = np.log(np.clip(out, 1e-300, None))
        rows = np.arange(len(out))
        return (out[rows, _per_prompt(self.token_a, len(out), "LogitDifference")]
                - out[rows, _per_prompt(self.token_b, len(out), "LogitDifference")])


def activation(cache: dict, site: Site) -> np.ndarray:
    """The activation at ``site`` in a ``run_with_patches`` cache."""
    if site.head is not None:
        value = cache[(site.layer, "head_out")][:, site.head]
    else:
        value = cache[(site.layer, site.sublayer)]
    return value if site.position is None else value[:, site.position]


def activation_patch(weights: HookedWeights, destination: np.ndarray, source: np.ndarray,
                     sites: Sequence[Site], readout: Callable | None = None) -> np.ndarray:
    """Run ``destination`` tokens with the activations at ``sites`` taken from a run of ``source``.

    Both are ``[batch, T]`` (the lengths may differ when every site names a position, counted
    from the end for prompts that end alike). Returns ``readout(weights, output)`` or, without
    a readout, the patched output ``[batch, T, vocab]``.
    """
    destination, source = np.asarray(destination), np.asarray(source)
    if destination.shape[0] != source.shape[0]:
        raise PatchError(f"activation_patch: {destination.shape[0]} destination prompts, {source.shape[0]} sources")
    if destination.shape[1] != source.shape[1] and any(s.position is None for s in sites):
        raise PatchError("activation_patch: prompts of different lengths need a position at every site")
    cache: dict = {}
    run_with_patches(weights, source, cache=cache)
    for site in sites:
        site.check(weights, source.shape[1])
    patches = {site: (lambda old, v=activation(cache, site): v) for site in sites}
    output = run_with_patches(weights, destination, patches)
    return output if readout is None else readout(weights, output)
