"""Export a built model as safetensors, with its config and residual labels in the metadata.

Tensors keep the params pytree's paths (``embed/W_E``, ``layer_3/mlp/W_in``, ...,
``unembed/W_U``) and dtype (float64). The safetensors header metadata (string to
string) holds:

* ``format``: ``superpose-safetensors/1``;
* ``config``: the ``ModelConfig`` as JSON (n_layers, n_heads, d_model, d_head, d_mlp,
  n_vocab, n_ctx, d_out);
* ``residual_labels``: JSON list, ``residual_labels[i]`` names residual dimension i;
* ``tasks``, ``max_examples``, ``sharpness``: what the model was built for (JSON);
* ``conventions``: how to run the weights (scores ``q.k`` with no ``1/sqrt(d_head)``,
  causal softmax, ReLU MLP, no layer norm, linear readout that is itself the
  distribution over the d content tokens; token ids: content ``0..d-1``, BOS = d, ARROW = d+1);
* ``sha256``: JSON map from tensor name to the SHA-256 of its bytes.

``load_safetensors`` checks all of it (a modified tensor, a wrong shape or a layout
that does not match the task set raises ``WeightsFileError``) and returns a
``SuperposeModel`` whose outputs are bit-identical to the saved one's. Only NumPy and
the ``safetensors`` package are needed (no torch).
"""

from __future__ import annotations

import json

import numpy as np

from superpose.construct.build import ModelConfig, SuperposeModel
from superpose.io import array_digest, checked_model, flatten_params
from superpose.setting import InputFileError, SuperposeError, TaskSet, WeightsFileError

FORMAT = "superpose-safetensors/1"
CONVENTIONS = ("attention scores q.k without 1/sqrt(d_head) scaling; causal softmax; ReLU MLP; no layer norm; "
               "biases everywhere; readout h W_U + b_U is the probability distribution over the d content tokens "
               "(no softmax); tokens: content 0..d-1, BOS = d, ARROW = d+1")


def save_safetensors(model: SuperposeModel, path: str) -> dict[str, str]:
    """Write ``model`` to ``path``; returns the metadata written."""
    from safetensors.numpy import save_file

    tensors = {name: np.ascontiguousarray(a, dtype=np.float64) for name, a in flatten_params(model.params).items()}
    metadata = {
        "format": FORMAT,
        "config": json.dumps(model.config.to_json()),
        "residual_labels": json.dumps(model.residual_labels),
        "tasks": json.dumps(model.tasks.to_json()),
        "max_examples": json.dumps(model.max_examples),
        "sharpness": json.dumps(model.sharpness),
        "conventions": CONVENTIONS,
        "sha256": json.dumps({name: array_digest(a) for name, a in tensors.items()}),
    }
    try:
        save_file(tensors, path, metadata=metadata)
    except OSError as e:
        raise InputFileError(f"--output: cannot write {path}: {e}") from None
    return metadata


def read_safetensors(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The raw tensors and header metadata of a safetensors file (``WeightsFileError`` if unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except FileNotFoundError:
        raise WeightsFileError(f"{path}: file not found") from None
    except Exception as e:  # safetensors raises its own SafetensorError for a malformed header
        raise WeightsFileError(f"{path}: unreadable safetensors file ({type(e).__name__}: {e})") from None
    return tensors, metadata


def load_safetensors(path: str) -> SuperposeModel:
    """Read and check a file written by ``save_safetensors``."""
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != FORMAT:
        raise WeightsFileError(f"{path}: format {metadata.get('format')!r}, expected {FORMAT!r}")
    try:
        config = ModelConfig(**json.loads(metadata["config"]))
        tasks = TaskSet.from_json(json.loads(metadata["tasks"]))
        max_examples = int(json.loads(metadata["max_examples"]))
        sharpness = float(json.loads(metadata["sharpness"]))
        labels = json.loads(metadata["residual_labels"])
        digests = json.loads(metadata["sha256"])
    except (KeyError, TypeError, ValueError, SuperposeError) as e:
        raise WeightsFileError(f"{path}: malformed metadata ({type(e).__name__}: {e})") from None
    for name, array in tensors.items():
        if array.dtype != np.float64:
            raise WeightsFileError(f"{path}: {name} is {array.dtype}, expected float64")
    return checked_model(path, tensors, tasks, config, max_examples, sharpness, digests, labels)
