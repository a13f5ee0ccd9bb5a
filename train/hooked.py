"""The trained GPT (``train.model``) in TransformerLens's layout: patching and TransformerLens export.

``from_checkpoint`` renames the Flax params for ``superpose.verify.patching`` (one hookable
forward pass for both models). ``save_trained_safetensors`` / ``load_trained_hooked_transformer``
give a ``transformer_lens.HookedTransformer`` (``lens`` extra) computing the same function:

* flax ``LayerNorm`` (``scale``, ``bias``, epsilon 1e-6) -> ``normalization_type="LN"`` with
  ``eps=1e-6`` (TransformerLens's default is 1e-5);
* flax ``nn.gelu`` is the tanh approximation -> ``act_fn="gelu_new"``;
* ``MultiHeadDotProductAttention``: ``query/key/value`` kernels ``[d_model, heads, d_head]`` ->
  ``W_Q/W_K/W_V [heads, d_model, d_head]``, ``out`` kernel ``[heads, d_head, d_model]`` -> ``W_O``;
  flax divides the query by ``sqrt(d_head)`` as TransformerLens's default ``use_attn_scale`` does;
* learned positions ``pos_embed`` (plus the example-offset table, when the model has one:
  ``train.model.position_table``) -> ``W_pos`` (``positional_embedding_type="standard"``);
* the unembedding ``Dense`` over all ``vocab + 2`` tokens -> ``W_U``, ``b_U`` (``d_vocab_out = d_vocab``).

The file holds the tensors in TransformerLens's names (float32, as trained) and, in its
metadata, the format, the ``HookedTransformerConfig`` fields and the training config.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from typing import Any, Sequence

import numpy as np

from superpose.files import OutputFileError, atomic_write
from superpose.setting import WeightsFileError
from superpose.verify.patching import HookedWeights

from .model import trained_position_table

FORMAT = "superpose-trained-lens/1"
FLAX_LN_EPS = 1e-6   # flax.linen.LayerNorm's default epsilon


def from_checkpoint(run) -> HookedWeights:
    """The trained model of a ``train.trainer.TrainResult`` (``load_checkpoint``) in the hookable layout."""
    p = run.params
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    blocks = []
    for i in range(run.config.n_layers):
        b, a = p[f"block_{i}"], p[f"block_{i}"]["attn"]
        block = {f"W_{n.upper()[0]}": f64(a[n]["kernel"]).transpose(1, 0, 2) for n in ("query", "key", "value")}
        block.update({f"b_{n.upper()[0]}": f64(a[n]["bias"]) for n in ("query", "key", "value")})
        block.update(W_O=f64(a["out"]["kernel"]), b_O=f64(a["out"]["bias"]),
                     W_in=f64(b["mlp_in"]["kernel"]), b_in=f64(b["mlp_in"]["bias"]),
                     W_out=f64(b["mlp_out"]["kernel"]), b_out=f64(b["mlp_out"]["bias"]),
                     ln1_w=f64(b["ln_attn"]["scale"]), ln1_b=f64(b["ln_attn"]["bias"]),
                     ln2_w=f64(b["ln_mlp"]["scale"]), ln2_b=f64(b["ln_mlp"]["bias"]))
        blocks.append(block)
    d_head = run.config.d_model // run.config.n_heads
    positions = trained_position_table(p, run.config.model_config)
    return HookedWeights(f64(p["embed"]["embedding"]), f64(positions), blocks, f64(p["unembed"]["kernel"]),
                         f64(p["unembed"]["bias"]), act="gelu_tanh", attn_scale=float(np.sqrt(d_head)),
                         layer_norm=True, ln_eps=FLAX_LN_EPS,
                         ln_final=(f64(p["ln_final"]["scale"]), f64(p["ln_final"]["bias"])), output="logits",
                         tasks=run.config.tasks, name="trained")


_LN_NAMES = {"ln1_w": "ln1.w", "ln1_b": "ln1.b", "ln2_w": "ln2.w", "ln2_b": "ln2.b"}


def lens_state(weights: HookedWeights) -> dict[str, np.ndarray]:
    """TransformerLens state-dict names -> float32 arrays, for a model with LayerNorm (the trained GPT)."""
    state = {"embed.W_E": weights.W_E, "pos_embed.W_pos": weights.W_pos, "unembed.W_U": weights.W_U,
             "unembed.b_U": weights.b_U, "ln_final.w": weights.ln_final[0], "ln_final.b": weights.ln_final[1]}
    for i, block in enumerate(weights.blocks):
        for name, array in block.items():
            part = "mlp" if name in ("W_in", "b_in", "W_out", "b_out") else "attn"
            state[f"blocks.{i}.{_LN_NAMES[name]}" if name in _LN_NAMES else f"blocks.{i}.{part}.{name}"] = array
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}


def lens_config_fields(weights: HookedWeights) -> dict:
    """The ``HookedTransformerConfig`` fields (JSON-able) that make TransformerLens compute the trained GPT."""
    return dict(model_name="superpose-trained", n_layers=weights.n_layers, d_model=weights.d_model,
                n_ctx=len(weights.W_pos), d_head=weights.d_model // weights.n_heads, n_heads=weights.n_heads,
                d_mlp=weights.blocks[0]["W_in"].shape[1], d_vocab=weights.W_E.shape[0],
                d_vocab_out=weights.W_U.shape[1], act_fn="gelu_new", normalization_type="LN", eps=weights.ln_eps,
                positional_embedding_type="standard", attention_dir="causal", default_prepend_bos=False)


def save_trained_safetensors(run, path: str, force: bool = False, inputs: Sequence[str] = ()) -> dict[str, str]:
    """Write a trained checkpoint's weights in TransformerLens's names to ``path`` (atomically)."""
    from safetensors.numpy import save_file

    weights = from_checkpoint(run)
    metadata = {"format": FORMAT, "lens_config": json.dumps(lens_config_fields(weights)),
                "train_config": json.dumps(asdict(run.config)), "step": str(run.step)}
    with atomic_write(path, force=force, inputs=inputs) as tmp:
        try:
            save_file(lens_state(weights), tmp, metadata=metadata)
        except Exception as e:  # safetensors raises its own SafetensorError for I/O problems
            raise OutputFileError(f"--output: cannot write {path}: {e}") from None
    return metadata


def hooked_transformer(lens_config: dict, state: dict[str, np.ndarray], device: str = "cpu") -> Any:
    """A ``HookedTransformer`` (float32, eval mode) with ``state`` loaded strictly."""
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    with warnings.catch_warnings():  # 3.x announces HookedTransformer's removal in 4.0
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated", category=DeprecationWarning)
        hooked = HookedTransformer(HookedTransformerConfig(**lens_config, dtype=torch.float32, device=device,
                                                           init_weights=False))
    full = hooked.state_dict()
    weight_keys = {k for k, v in full.items() if v.is_floating_point() and not k.endswith(".IGNORE")}
    if weight_keys != set(state):
        raise WeightsFileError(f"tensors do not match this transformer-lens version's parameters: missing "
                               f"{sorted(weight_keys - set(state))[:3]}, extra {sorted(set(state) - weight_keys)[:3]}")
    for key, array in state.items():
        if tuple(full[key].shape) != array.shape:
            raise WeightsFileError(f"{key}: TransformerLens expects {tuple(full[key].shape)}, file has {array.shape}")
        full[key] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(device)
    hooked.load_state_dict(full, strict=True)
    hooked.eval()
    return hooked


def load_trained_hooked_transformer(path: str, device: str = "cpu") -> Any:
    """A ``HookedTransformer`` from a file written by ``superpose export-trained``."""
    from superpose.verify.export import read_safetensors

    def check(metadata, shapes):
        if metadata.get("format") != FORMAT:
            raise WeightsFileError(f"{path}: format {str(metadata.get('format'))[:80]!r}, expected {FORMAT!r}")

    tensors, metadata = read_safetensors(path, check)
    try:
        lens_config = json.loads(metadata["lens_config"])
    except (KeyError, ValueError) as e:
        raise WeightsFileError(f"{path}: malformed metadata ({type(e).__name__})") from None
    return hooked_transformer(lens_config, tensors, device)


def to_hooked_transformer(run, device: str = "cpu") -> Any:
    """A ``HookedTransformer`` holding a trained checkpoint's weights (no file)."""
    weights = from_checkpoint(run)
    return hooked_transformer(lens_config_fields(weights), lens_state(weights), device)
