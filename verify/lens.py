"""The constructed weights as a TransformerLens ``HookedTransformer`` (``lens`` extra: torch, transformer-lens 3).

This is an independent execution of the weights by code nobody here wrote. The
``HookedTransformerConfig`` is set so that TransformerLens computes exactly our
function (checked against transformer-lens 3.9.0):

* ``normalization_type=None``: the default ``"LN"`` would add LayerNorms;
* ``use_attn_scale=False``: TransformerLens then divides scores by ``attn_scale = 1.0``
  (the default divides by ``sqrt(d_head)``), matching our unscaled ``q . k``;
* ``act_fn="relu"``, ``positional_embedding_type="standard"`` (a learned ``W_pos``
  table added to the embedding), ``attention_dir="causal"`` (masked with ``-inf``,
  then ``softmax``);
* ``dtype=torch.float64``, ``d_vocab = n_vocab`` (d + 2 input tokens) and
  ``d_vocab_out = d_out`` (d content tokens): the "logits" TransformerLens returns are
  our linear readout (no softmax is applied to them).

Weights are loaded with ``load_state_dict(..., strict=True)`` into a copy of the
model's own ``state_dict()`` (which also holds TransformerLens's buffers, e.g. each
attention's ``IGNORE`` and ``mask``). ``load_and_process_state_dict`` is *not* used:
it casts every tensor to float32 for processing and, by default, centres the
writing weights and the unembedding, which changes the readout.

Parameter names map one to one: ``embed/W_E -> embed.W_E``, ``embed/W_pos ->
pos_embed.W_pos``, ``layer_{i}/attn/X -> blocks.{i-1}.attn.X``, ``layer_{i}/mlp/X ->
blocks.{i-1}.mlp.X``, ``unembed/X -> unembed.X``; all shapes already follow
TransformerLens's conventions (``W_Q [n_heads, d_model, d_head]``, ...).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from superpose.construct.build import SuperposeModel


def state_dict_names(model: SuperposeModel) -> dict[str, tuple[str, ...]]:
    """TransformerLens state-dict key -> path in ``model.params``."""
    names = {"embed.W_E": ("embed", "W_E"), "pos_embed.W_pos": ("embed", "W_pos"),
             "unembed.W_U": ("unembed", "W_U"), "unembed.b_U": ("unembed", "b_U")}
    for i in range(1, model.config.n_layers + 1):
        for part in ("attn", "mlp"):
            for name in model.params[f"layer_{i}"][part]:
                names[f"blocks.{i - 1}.{part}.{name}"] = (f"layer_{i}", part, name)
    return names


def hooked_transformer_config(model: SuperposeModel, device: str = "cpu"):
    """The ``HookedTransformerConfig`` that makes TransformerLens compute our forward pass."""
    import torch
    from transformer_lens import HookedTransformerConfig

    c = model.config
    return HookedTransformerConfig(
        model_name="superpose", n_layers=c.n_layers, d_model=c.d_model, n_ctx=c.n_ctx, d_head=c.d_head,
        n_heads=c.n_heads, d_mlp=c.d_mlp, d_vocab=c.n_vocab, d_vocab_out=c.d_out, act_fn="relu",
        normalization_type=None, positional_embedding_type="standard", attention_dir="causal",
        use_attn_scale=False, dtype=torch.float64, device=device, default_prepend_bos=False, init_weights=False,
    )


def to_hooked_transformer(model: SuperposeModel, device: str = "cpu") -> Any:
    """A ``transformer_lens.HookedTransformer`` holding ``model``'s weights (float64, eval mode)."""
    import torch
    from transformer_lens import HookedTransformer

    with warnings.catch_warnings():  # 3.x announces HookedTransformer's removal in 4.0
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated", category=DeprecationWarning)
        hooked = HookedTransformer(hooked_transformer_config(model, device))
    state = hooked.state_dict()
    names = state_dict_names(model)
    weight_keys = {k for k, v in state.items() if v.is_floating_point() and not k.endswith(".IGNORE")}
    if weight_keys != set(names):
        raise RuntimeError("this transformer-lens version's parameters differ from the expected ones: "
                           f"missing {sorted(set(names) - weight_keys)[:3]}, "
                           f"extra {sorted(weight_keys - set(names))[:3]}")
    for key, path in names.items():
        array = model.params
        for p in path:
            array = array[p]
        if tuple(state[key].shape) != array.shape:
            raise RuntimeError(f"{key}: TransformerLens expects {tuple(state[key].shape)}, "
                               f"weights are {array.shape}")
        state[key] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64)).to(device)
    hooked.load_state_dict(state, strict=True)
    hooked.eval()
    scales = {float(block.attn.attn_scale) for block in hooked.blocks}
    if scales != {1.0} or hooked.cfg.normalization_type is not None:
        raise RuntimeError(f"TransformerLens attention scale {scales} / normalization "
                           f"{hooked.cfg.normalization_type!r}: expected 1.0 and None")
    return hooked


def hooked_readout(hooked: Any, tokens: np.ndarray) -> np.ndarray:
    """TransformerLens's output ``[batch, T, d]`` ("logits", i.e. our linear readout) as float64 NumPy."""
    import torch

    with torch.no_grad():
        logits = hooked(torch.from_numpy(np.asarray(tokens, dtype=np.int64)), return_type="logits")
    return logits.detach().cpu().numpy()


def load_hooked_transformer(path: str, device: str = "cpu") -> Any:
    """A ``HookedTransformer`` from a file written by ``superpose export`` (safetensors)."""
    from superpose.verify.export import load_safetensors

    return to_hooked_transformer(load_safetensors(path), device)
