"""A small GPT-style decoder-only transformer (pre-LayerNorm, GELU MLP, learned positions).

Unlike the constructed model this one is trained, so it uses the usual ingredients of
trained transformers (layer norm, GELU, random initialisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    n_ctx: int
    d_model: int = 64
    n_layers: int = 3
    n_heads: int = 4

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
        h = h + pos[: tokens.shape[1]]
        mask = nn.make_causal_mask(tokens)
        for i in range(c.n_layers):
            h = Block(c, name=f"block_{i}")(h, mask)
        h = nn.LayerNorm(name="ln_final")(h)
        return nn.Dense(c.vocab_size, name="unembed")(h)


def n_params(params) -> int:
    import jax

    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
