"""The models ``superpose llm-eval`` measures, behind one ``AnswerScorer`` each (``lens`` extra: torch,
transformers, transformer-lens).

``load_scorer(path)`` recognises

* a Hugging Face causal LM: a local directory with ``config.json`` (or, optionally, a hub
  name; when it cannot be fetched that is one line, ``LLMEvalError``), scored on text
  (``TextScorer``);
* the constructed model: a ``.safetensors`` file from ``superpose export``, run through
  TransformerLens (``superpose.verify.lens``), scored on its own task set;
* a trained model: a checkpoint directory from ``superpose train`` or a ``.safetensors``
  file from ``superpose export-trained``, run through TransformerLens (``train.hooked``).

A Hugging Face model is refused before loading when its parameters (counted from the
safetensors headers, else from the weight files' sizes) times the dtype's bytes, plus a
fifth for the forward pass, exceed the memory limit (``superpose.resources``).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from superpose.resources import MemoryLimit, ResourceError, format_size
from .llm_eval import AnswerScorer, Family, LLMEvalError, PromptFormat, TextScorer, TokenScorer, token_family

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
FORWARD_OVERHEAD = 1.2   # weights plus a fifth for activations and the logits of a short prompt


def require_lens_extra() -> None:
    """``MissingExtraError`` (``superpose.commands.require_extra``) when torch or transformers is missing."""
    from superpose.commands import require_extra

    for module in ("torch", "transformers"):
        require_extra(module, "lens", "llm-eval")


@dataclass
class LoadedModel:
    kind: str                 # "llm", "constructed" or "trained"
    scorer: AnswerScorer
    family: Family | None     # a token-level model's own family; None for text models


# --------------------------------------------------------------------------- Hugging Face

class HFCausalLM:
    """A ``transformers`` causal LM and its tokeniser as ``llm_eval.CausalLM``."""

    def __init__(self, model: Any, tokenizer: Any):
        self.model = model.eval()
        self.tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def continuation_logprobs(self, prefix: Sequence[int], continuations: Sequence[Sequence[int]],
                              ) -> list[np.ndarray]:
        import torch

        seqs = [list(prefix) + list(c) for c in continuations]
        width = max(map(len, seqs))
        context = getattr(self.model.config, "max_position_embeddings", None) or \
            getattr(self.model.config, "n_positions", None)
        if context is not None and width > context:
            raise LLMEvalError(f"--examples: the prompt and answer take {width} tokens, over the model's context "
                               f"of {context}; use fewer examples")
        ids = torch.zeros((len(seqs), width), dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):  # right padding: the scored positions never see the padding
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        with torch.no_grad():
            logits = self.model(input_ids=ids.to(self.model.device), attention_mask=mask.to(self.model.device)).logits
            logp = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
        start = len(prefix) - 1  # position whose next token is the continuation's first
        return [np.array([logp[i, start + j, t] for j, t in enumerate(c)], dtype=np.float64)
                for i, c in enumerate(continuations)]


def _safetensors_header(path: str) -> dict:
    """The JSON header of a safetensors file (8-byte little-endian length, then JSON), tensors unread."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > 100 * 2 ** 20:
            raise ValueError("header over 100 MiB")
        return json.loads(f.read(n))


def _safetensors_params(path: str) -> int:
    header = _safetensors_header(path)
    return sum(int(np.prod(v["shape"])) for k, v in header.items() if k != "__metadata__")


def hf_parameter_count(directory: str) -> int:
    """Parameters of the weights in a model directory: exact from safetensors headers; from the sizes
    of other weight files at 2 bytes a parameter (an overestimate for float32 files)."""
    total = 0
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        try:
            if name.endswith(".safetensors"):
                total += _safetensors_params(path)
            elif name.endswith((".bin", ".pt", ".pth")):
                total += os.path.getsize(path) // 2
        except (OSError, ValueError, KeyError, struct.error) as e:
            raise LLMEvalError(f"--model: cannot read the weights header of {path} ({type(e).__name__})") from None
    if total == 0:
        raise LLMEvalError(f"--model: {directory} holds no weight files (*.safetensors, *.bin)")
    return total


def load_hf(name: str, dtype: str, limit: MemoryLimit, device: str = "cpu") -> HFCausalLM:
    """A causal LM from a local directory (or, when it is none, the hub), after the memory check."""
    require_lens_extra()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the command prints one summary line
    local = os.path.isdir(name)
    if local:
        n = hf_parameter_count(name)
        need = n * DTYPE_BYTES[dtype] * FORWARD_OVERHEAD
        if need > limit.bytes:
            raise ResourceError(f"loading {name} would need about {format_size(need)} ({n:,} parameters x "
                                f"{DTYPE_BYTES[dtype]} bytes in {dtype}, plus a fifth), over the memory limit "
                                f"{limit}; use --dtype bfloat16 or raise --memory-limit")
    # read at call time (huggingface_hub reads it once, at import): offline, a hub name fails at once
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local or offline)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=getattr(torch, dtype), local_files_only=local or offline)
    except Exception as e:  # transformers raises OSError, ValueError, HTTP errors...: one line either way
        where = "from the local directory" if local else \
            "(not a local directory, and it could not be fetched from the Hugging Face hub" + \
            (": HF_HUB_OFFLINE is set)" if offline else ")")
        raise LLMEvalError(f"--model: cannot load {name} {where}: {type(e).__name__}: "
                           f"{' '.join(str(e).split())[:200]}") from None
    try:
        model = model.to(device)
    except (RuntimeError, ValueError) as e:
        raise LLMEvalError(f"--device: cannot move the model to {device!r}: {' '.join(str(e).split())[:160]}") from None
    return HFCausalLM(model, tokenizer)


# --------------------------------------------------------------------------- constructed and trained

def _softmax_content(logits: np.ndarray, d: int) -> np.ndarray:
    """Softmax over the whole vocabulary (content, BOS, ARROW), then the d content tokens."""
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(axis=-1, keepdims=True))[..., :d]


def constructed_scorer(path: str, limit: MemoryLimit) -> LoadedModel:
    """The constructed model of a ``superpose export`` file, through TransformerLens."""
    from .export import load_safetensors
    from .lens import hooked_readout, to_hooked_transformer

    model = load_safetensors(path, limit)
    hooked = to_hooked_transformer(model)  # float64 on the CPU: the construction's exactness check
    # the readout is itself the distribution over the d content tokens (no softmax)
    scorer = TokenScorer(lambda tokens: hooked_readout(hooked, tokens), model.max_examples)
    return LoadedModel("constructed", scorer, token_family(model.tasks, "constructed model's tasks"))


def trained_scorer(hooked: Any, config: Any) -> LoadedModel:
    """A trained model (``HookedTransformer`` and its ``TrainConfig``) on its own tasks."""
    import torch

    d = config.tasks.vocab_size

    def probs(tokens: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = hooked(torch.from_numpy(np.asarray(tokens, dtype=np.int64)).to(hooked.cfg.device),
                            return_type="logits")
        return _softmax_content(logits.double().cpu().numpy(), d)

    # trained on n_examples examples; a mixed prompt is n_examples - 1 examples and a query (train.trainer)
    return LoadedModel("trained", TokenScorer(probs, config.n_examples - 1),
                       token_family(config.tasks, f"trained model's tasks ({config.family})"))


def _safetensors_format(path: str) -> str:
    """The ``format`` in a safetensors file's header metadata (``""`` if none)."""
    try:
        return str(_safetensors_header(path).get("__metadata__", {}).get("format", ""))
    except (OSError, ValueError, struct.error, AttributeError) as e:
        raise LLMEvalError(f"--model: {path} is not a readable safetensors file ({type(e).__name__})") from None


def load_scorer(path: str, fmt: PromptFormat, dtype: str, limit: MemoryLimit, device: str = "cpu") -> LoadedModel:
    """The model at ``path`` (see the module docstring) behind an ``AnswerScorer``."""
    require_lens_extra()
    if os.path.isfile(path) and path.endswith(".safetensors"):
        from superpose.train.hooked import FORMAT as TRAINED_FORMAT

        from .export import FORMAT as CONSTRUCTED_FORMAT

        kind = _safetensors_format(path)
        if kind == CONSTRUCTED_FORMAT:
            return constructed_scorer(path, limit)
        if kind == TRAINED_FORMAT:
            from superpose.train.hooked import load_trained_hooked_transformer
            from superpose.train.trainer import TrainConfig

            from .export import read_safetensors

            metadata = read_safetensors(path)[1]
            return trained_scorer(load_trained_hooked_transformer(path, device),
                                  TrainConfig.from_dict(json.loads(metadata["train_config"])))
        raise LLMEvalError(f"--model: {path} is a safetensors file of format {kind[:60]!r}; expected one from "
                           "superpose export or export-trained (a Hugging Face model is a directory)")
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "checkpoint.msgpack")):
        from superpose.train.hooked import to_hooked_transformer
        from superpose.train.trainer import load_checkpoint

        run = load_checkpoint(path)
        return trained_scorer(to_hooked_transformer(run, device), run.config)
    if os.path.exists(path) and not (os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json"))):
        raise LLMEvalError(f"--model: {path} is neither a model directory (config.json), a training checkpoint "
                           "(checkpoint.msgpack) nor a .safetensors export")
    return LoadedModel("llm", TextScorer(load_hf(path, dtype, limit, device), fmt), None)


__all__ = ["HFCausalLM", "LoadedModel", "constructed_scorer", "hf_parameter_count", "load_hf",
           "load_scorer", "require_lens_extra", "trained_scorer"]
