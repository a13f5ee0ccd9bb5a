"""A small GPT-style decoder-only transformer (pre-LayerNorm, GELU MLP, learned positions).

Unlike the constructed model this one is trained, so it uses the usual ingredients of
trained transformers (layer norm, GELU, random initialisation).

Positions: a learned table ``pos_embed[t]`` as in GPT-2 and, when ``example_length`` L > 0,
a second learned table indexed by the offset inside an example (``example_offsets``: BOS is
row L, then the offsets ``0, 1, .., L - 1`` repeat once per example). The sum
``position_table`` is still one vector per absolute position, so the model is a plain GPT
with learned absolute positions whose table is parametrised as "GPT-2's table plus a
periodic part"; the TransformerLens export folds it into ``W_pos``. Why: in-context
retrieval needs every token to know its offset in its example, and with GPT-2's table alone
each position (60 of them at 4 input slots, 100 at 8) has to learn that separately. No run without it left the loss
plateau of a uniform guess over the query's characters; with it, 4-position runs do
(README, Emergence: ``make emergence-offsets``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import flax.linen as nn
import numpy as np


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    n_ctx: int
    d_model: int = 64
    n_layers: int = 3
    n_heads: int = 4
    example_length: int = 0   # > 0: add the learned example-offset embedding (module docstring)

    def to_json(self) -> dict:
        return dict(self.__dict__)


class Block(nn.Module):
    config: GPTConfig

    @nn.compact
    def __call__(self, h, mask):
        c = self.config
        attn = nn.MultiHeadDotProductAttention(num_heads=c.n_heads, qkv_features=c.d_model, name="attn")
        h = h + attn(nn.LayerNorm(name="ln_attn")(h), mask=mask)
        x = nn.LayerNorm(name="ln_mlp")(h)
        x = nn.Dense(4 * c.d_model, name="mlp_in")(x)
        return h + nn.Dense(c.d_model, name="mlp_out")(nn.gelu(x))


class GPT(nn.Module):
    """``__call__(tokens[B, T]) -> logits[B, T, vocab]``."""

    config: GPTConfig

    @nn.compact
    def __call__(self, tokens):
        c = self.config
        h = nn.Embed(c.vocab_size, c.d_model, name="embed")(tokens)
        pos = self.param("pos_embed", nn.initializers.normal(0.02), (c.n_ctx, c.d_model))
        offset_embed = self.param("example_pos_embed", nn.linear.default_embed_init,
                                  (c.example_length + 1, c.d_model)) if c.example_length else None
        h = h + position_table(pos, offset_embed, c.example_length)[: tokens.shape[1]]
        mask = nn.make_causal_mask(tokens)
        for i in range(c.n_layers):
            h = Block(c, name=f"block_{i}")(h, mask)
        h = nn.LayerNorm(name="ln_final")(h)
        return nn.Dense(c.vocab_size, name="unembed")(h)


def example_offsets(n_ctx: int, example_length: int) -> np.ndarray:
    """Row of the example-offset table for each position: BOS -> L, then ``(t - 1) mod L``.

    >>> example_offsets(8, 3).tolist()
    [3, 0, 1, 2, 0, 1, 2, 0]
    """
    t = np.arange(n_ctx)
    return np.where(t == 0, example_length, (t - 1) % example_length)


def position_table(pos_embed, example_pos_embed, example_length: int):
    """The position vector added at each absolute position: ``pos_embed[t]`` plus, with an
    example length, ``example_pos_embed[example_offsets(t)]`` (JAX or NumPy arrays)."""
    if not example_length:
        return pos_embed
    return pos_embed + example_pos_embed[example_offsets(pos_embed.shape[0], example_length)]


def trained_position_table(params, config: GPTConfig):
    """``position_table`` of a trained model's params."""
    return position_table(params["pos_embed"], params.get("example_pos_embed"), config.example_length)


@functools.lru_cache(maxsize=32)
def compiled_logits(config: GPTConfig):
    """``(params, tokens) -> logits``, jitted once per config and shared by every caller (a
    ``jax.jit`` made per call compiles the same program again)."""
    import jax

    model = GPT(config)
    return jax.jit(lambda params, tokens: model.apply({"params": params}, tokens))


def n_params(params) -> int:
    import jax

    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
