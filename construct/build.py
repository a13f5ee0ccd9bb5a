"""Assemble the seven layers into the weights of a plain decoder-only transformer.

>>> from superpose import Task, TaskSet, Prompt, Example
>>> tasks = TaskSet(vocab_size=4, slots=2, tasks=[
...     Task("copy first", 0, [0, 1, 2, 3]), Task("next of second", 1, [1, 2, 3, 0])])
>>> model = build(tasks, max_examples=8)
>>> model.config.n_layers, model.config.n_heads, model.config.d_model  # d=4, S=2, K=2, L=6 (T_max=36)
(7, 2, 43)
>>> model.residual_labels[:3], model.residual_labels[-1]
(['token[0]', 'token[1]', 'token[2]'], 'out[3]')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from superpose.model import ModelConfig, run
from superpose.setting import BuildError, Prompt, PromptError, TaskSet, TaskSetError, _require_int

from . import (
    layer1_find_answers,
    layer2_check_examples,
    layer3_snap_and_count,
    layer4_cast_votes,
    layer5_tally_mixture,
    layer6_fetch_query_inputs,
    layer7_weight_and_sum,
)
from .layout import Layout
from .positional import n_frequencies, positional_table
from .residual import Context, d_model_formula, make_layout
from .spec import Layer, LayerSpec

#: The seven layers, in order; everything the project states about a layer is in its spec.
LAYER_SPECS: tuple[LayerSpec, ...] = (
    layer1_find_answers.SPEC,
    layer2_check_examples.SPEC,
    layer3_snap_and_count.SPEC,
    layer4_cast_votes.SPEC,
    layer5_tally_mixture.SPEC,
    layer6_fetch_query_inputs.SPEC,
    layer7_weight_and_sum.SPEC,
)

DEFAULT_SHARPNESS = 50.0
DEFAULT_MAX_EXAMPLES = 64


def planned_config(tasks: TaskSet, max_examples: int = DEFAULT_MAX_EXAMPLES, conditioned: bool = True) -> ModelConfig:
    """The shapes ``build(tasks, max_examples)`` produces, computed from the specs without building
    any weights (O(1) work, so memory can be estimated before a build is attempted).

    ``n_heads = S`` (distinct slots read, >= 1), ``d_model = 2d + S d + 5K + 2L + 5``,
    ``d_head = max(2L, d, K)`` (plus 1 for answers of several tokens: the anchored and gated
    heads score one more term, copy ARROW too, and the tally also reads ``ok``), ``d_mlp`` =
    the widest layer's stated width (for ``A > 1`` tokens per answer see the layer specs). Every build
    checks that its weights have exactly these shapes.

    >>> from superpose import Task, TaskSet
    >>> tasks = TaskSet(vocab_size=4, slots=2, tasks=[Task("a", 0, [0, 1, 2, 3]), Task("b", 1, [1, 2, 3, 0])])
    >>> planned_config(tasks, 8) == build(tasks, 8).config
    True
    """
    if not isinstance(tasks, TaskSet):
        raise TaskSetError(f"tasks: expected a TaskSet, got {type(tasks).__name__}")
    m = _require_int(max_examples, "max_examples", BuildError)
    if m < 0:
        raise BuildError(f"max_examples: must be >= 0, got {m}")
    max_len = tasks.max_prompt_length(m)
    d, K, L, A = tasks.vocab_size, tasks.K, n_frequencies(max_len), tasks.answer_length
    return ModelConfig(
        n_layers=len(LAYER_SPECS),
        n_heads=max(1, max(spec.n_heads(tasks, conditioned) for spec in LAYER_SPECS)),
        d_model=d_model_formula(d, len(tasks.slots_read), K, max_len, A),
        d_head=max(2 * L, d, K) + int(A > 1),
        d_mlp=max(1, max(spec.n_units(tasks, conditioned) for spec in LAYER_SPECS)),
        n_vocab=tasks.n_tokens, n_ctx=max_len, d_out=d)


@dataclass
class SuperposeModel:
    """Explicit weights of the seven-layer task-superposition transformer, and their meaning.

    ``params`` is a nested dict of float64 NumPy arrays (the Flax params pytree);
    ``layout`` names every residual dimension; ``layers`` keeps each layer's builder
    (hidden-unit labels, head descriptions, declared reads/writes).
    """

    tasks: TaskSet
    max_examples: int
    sharpness: float
    layout: Layout
    config: ModelConfig
    params: dict[str, Any]
    layers: tuple[Layer, ...] = field(repr=False, default=())
    cache: dict = field(default_factory=dict, repr=False, compare=False)  # device arrays per dtype
    conditioned: bool = True   # answers of several tokens: condition on the answer so far (else marginal)

    @property
    def residual_labels(self) -> list[str]:
        """``residual_labels[i]`` names dimension i of every residual activation."""
        return list(self.layout.labels)

    @property
    def max_len(self) -> int:
        return self.config.n_ctx

    @property
    def n_params(self) -> int:
        return int(sum(a.size for a in _leaves(self.params)))

    def hidden_labels(self, layer: int) -> list[str]:
        """Labels of the MLP hidden units of ``layer`` (1..7)."""
        return self.layers[layer - 1].mlp.hidden_labels(self.config.d_mlp)

    def run(self, prompts: Sequence[Prompt] | Prompt, dtype: str = "float32") -> list[np.ndarray]:
        """Model readout at every prediction position of each prompt (JAX); see ``superpose.model.run``."""
        return run(self, prompts, dtype=dtype)

    def error_bound(self, dtype: str = "float32", prompt_length: int | None = None):
        """Rigorous bound on the max-abs output error; see ``construct.bound.error_bound``."""
        from .bound import error_bound

        T = self.max_len if prompt_length is None else _require_int(prompt_length, "prompt_length", PromptError)
        if not 1 <= T <= self.max_len:
            raise PromptError(f"prompt_length: must lie in 1..{self.max_len} (the model's context), got {T}")
        r, A, L = max(t.arity for t in self.tasks.tasks), self.tasks.answer_length, n_frequencies(self.max_len)
        if A == 1:
            return error_bound(self.tasks.K, T, L, self.sharpness, dtype, arity=r, vocab_size=self.tasks.vocab_size,
                               example_length=self.tasks.example_length)
        return _long_answer_bound(error_bound, self.tasks.K, T, L, self.sharpness, dtype, r + A, self.tasks.vocab_size)

    def summary(self) -> str:
        c = self.config
        return (f"{c.n_layers} layers, {c.n_heads} heads/layer, d_model {c.d_model}, d_head {c.d_head}, "
                f"d_mlp {c.d_mlp}, context {c.n_ctx} tokens, {self.n_params:,} parameters")


def _long_answer_bound(error_bound, K: int, T: int, L: int, beta: float, dtype: str, arity: int, d: int):
    """The bound for answers of A > 1 tokens (a sketch, like the rounding part of the one-token bound).

    Differences from one-token answers, each covered by an over-estimate: (1) the anchored
    look-back heads of layer 1 leak at most ``e^{-beta} + (T-2) e^{-2 beta} <= (T-1) e^{-2 (beta/2)}``,
    so hypothesis H is checked at ``beta / 2`` as well as at ``beta``; (2) the checks and ``ok``
    units read up to ``r + A`` inputs, all exact bits but the slots, so the conjunction's
    rounding is that of arity ``r + A``; (3) at answer positions ``j >= 1`` the tally's score
    gaps are those of the one-token tally or larger (surviving examples ``4 beta``, others
    ``2 beta``, BOS ``beta``) and layer 6 adds ``prior * (ok_k / |survivors| - 1/K)``, whose
    error is at most twice the tally's: so three times the larger of the two one-token totals.
    """
    at_beta = error_bound(K, T, L, beta, dtype, arity=arity, vocab_size=d)
    at_half = error_bound(K, T, L, beta / 2, dtype, arity=arity, vocab_size=d)
    worst = max((at_beta, at_half), key=lambda b: b.total)
    holds = at_beta.holds and at_half.holds
    leak = 3 * max(at_beta.leak, at_half.leak)
    total = 3 * worst.total if holds else math.inf
    why = "" if holds else (at_beta.why or at_half.why)   # why H fails, for the no-bound message
    return type(at_beta)(leak, total - leak if holds else math.inf, total,
                         max(at_beta.snap_input_error, at_half.snap_input_error), holds, why=why)


def _leaves(tree: Any):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _leaves(v)
    else:
        yield tree


def _check_sharpness(sharpness: Any) -> float:
    if isinstance(sharpness, bool) or not isinstance(sharpness, (int, float, np.floating, np.integer)):
        raise BuildError(f"sharpness: expected a number, got {sharpness!r}")
    value = float(sharpness)
    if not math.isfinite(value) or value <= 0:
        raise BuildError(f"sharpness: must be a finite number > 0, got {sharpness!r}")
    return value


def build(tasks: TaskSet, max_examples: int = DEFAULT_MAX_EXAMPLES,
          sharpness: float = DEFAULT_SHARPNESS, conditioned: bool = True) -> SuperposeModel:
    """Build the seven-layer transformer for ``tasks`` and prompts of up to ``max_examples`` examples.

    ``sharpness`` (beta) scales every attention score: larger is closer to hard
    attention (see ``construct.bound.error_bound``).
    """
    if not isinstance(tasks, TaskSet):
        raise TaskSetError(f"tasks: expected a TaskSet, got {type(tasks).__name__}")
    m = _require_int(max_examples, "max_examples", BuildError)
    if m < 0:
        raise BuildError(f"max_examples: must be >= 0, got {m}")
    beta = _check_sharpness(sharpness)
    max_len = tasks.max_prompt_length(m)
    layout = make_layout(tasks, max_len)
    if not isinstance(conditioned, bool):
        raise BuildError(f"conditioned: expected True or False, got {conditioned!r}")
    config = planned_config(tasks, m, conditioned)

    ctx = Context(tasks, layout, beta, conditioned)
    layers = tuple(spec.build(ctx) for spec in LAYER_SPECS)
    for layer in layers:
        layer.check()
    if layout.d_model != config.d_model or any(h.d_head > config.d_head for layer in layers
                                                for h in layer.attention.heads):
        raise AssertionError(f"the built layout ({layout.d_model} dimensions) or a head is larger than "
                             f"the planned config {config}")

    params: dict[str, Any] = {"embed": _embeddings(tasks, layout, max_len)}
    for layer in layers:
        params[f"layer_{layer.number}"] = {
            "attn": layer.attention.dense(config.n_heads, config.d_head),
            "mlp": layer.mlp.dense(config.d_mlp),
        }
    W_U = np.zeros((layout.d_model, tasks.vocab_size))
    W_U[layout["out"].slice, :] = np.eye(tasks.vocab_size)
    params["unembed"] = {"W_U": W_U, "b_U": np.zeros(tasks.vocab_size)}
    return SuperposeModel(tasks, m, beta, layout, config, params, layers, conditioned=conditioned)


def _embeddings(tasks: TaskSet, layout: Layout, max_len: int) -> dict[str, np.ndarray]:
    """One-hot token embedding and the sinusoidal position code; neither depends on the tasks."""
    W_E = np.zeros((tasks.n_tokens, layout.d_model))
    W_E[:, layout["token"].slice] = np.eye(tasks.n_tokens)
    W_pos = np.zeros((max_len, layout.d_model))
    L = layout["pos_cos"].size
    table = positional_table(max_len, L)
    W_pos[:, layout["pos_cos"].slice] = table[:, :L]
    W_pos[:, layout["pos_sin"].slice] = table[:, L:]
    return {"W_E": W_E, "W_pos": W_pos}

