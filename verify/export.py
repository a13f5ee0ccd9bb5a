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
from typing import Sequence

import numpy as np

from superpose.construct.build import SuperposeModel, planned_config
from superpose.executor import ModelConfig, param_shapes
from superpose.files import OutputFileError, atomic_write
from superpose.io import array_digest, checked_model, flatten_params
from superpose.resources import MemoryLimit, check_memory, estimate_for_config, memory_limit
from superpose.setting import SuperposeError, TaskSet, WeightsFileError

FORMAT = "superpose-safetensors/1"
CONVENTIONS = ("attention scores q.k without 1/sqrt(d_head) scaling; causal softmax; ReLU MLP; no layer norm; "
               "biases everywhere; readout h W_U + b_U is the probability distribution over the d content tokens "
               "(no softmax); tokens: content 0..d-1, BOS = d, ARROW = d+1")


def save_safetensors(model: SuperposeModel, path: str, force: bool = True, inputs: Sequence[str] = ()) -> dict[str, str]:
    """Write ``model`` to ``path`` atomically (``superpose.files.atomic_write``: with ``force=False`` an
    existing file is refused, ``inputs`` never overwritten); returns the metadata written."""
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
    with atomic_write(path, force=force, inputs=inputs) as tmp:
        try:
            save_file(tensors, tmp, metadata=metadata)
        except Exception as e:  # safetensors raises its own SafetensorError for I/O problems
            raise OutputFileError(f"--output: cannot write {path}: {e}") from None
    return metadata


def read_safetensors(path: str, check=None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The raw tensors and header metadata of a safetensors file (``WeightsFileError`` if unreadable).

    ``check(metadata, shapes)`` (``shapes``: name -> (shape, dtype) from the file's header) runs
    before any tensor is read, so a header that claims huge tensors is refused first.
    """
    from safetensors import safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            metadata = f.metadata() or {}
            if check is not None:
                check(metadata, {name: (tuple(f.get_slice(name).get_shape()), f.get_slice(name).get_dtype())
                                 for name in f.keys()})
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except SuperposeError:
        raise
    except FileNotFoundError:
        raise WeightsFileError(f"{path}: file not found") from None
    except Exception as e:  # safetensors raises its own SafetensorError for a malformed header
        raise WeightsFileError(f"{path}: unreadable safetensors file ({type(e).__name__}: {e})") from None
    return tensors, metadata


def load_safetensors(path: str, limit: MemoryLimit | None = None) -> SuperposeModel:
    """Read and check a file written by ``save_safetensors``.

    The metadata and every tensor's header shape and dtype are checked against the config
    (and the model against the memory limit) before any tensor data is read.
    """
    limit = limit or memory_limit()
    parsed: dict = {}

    def check(metadata: dict, shapes: dict) -> None:
        if metadata.get("format") != FORMAT:
            raise WeightsFileError(f"{path}: format {str(metadata.get('format'))[:80]!r}, expected {FORMAT!r}")
        try:
            config = ModelConfig(**json.loads(metadata["config"]))
            tasks = TaskSet.from_json(json.loads(metadata["tasks"]))
            max_examples = json.loads(metadata["max_examples"])
            if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 0:
                raise ValueError(f"max_examples {max_examples!r}")
            parsed.update(config=config, tasks=tasks, max_examples=max_examples,
                          sharpness=float(json.loads(metadata["sharpness"])),
                          labels=json.loads(metadata["residual_labels"]), digests=json.loads(metadata["sha256"]))
            expected_config = planned_config(tasks, max_examples)
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError, SuperposeError) as e:
            raise WeightsFileError(f"{path}: malformed metadata ({type(e).__name__}: {str(e)[:200]})") from None
        if config != expected_config:
            raise WeightsFileError(f"{path}: config or residual layout does not match its task set")
        check_memory(estimate_for_config(config, loaded=True), limit,
                     f"{path}: loading this model (context {config.n_ctx} tokens)",
                     "raise --memory-limit or SUPERPOSE_MEMORY_LIMIT")
        expected = flatten_params(param_shapes(config))
        if set(shapes) != set(expected):
            missing, extra = set(expected) - set(shapes), set(shapes) - set(expected)
            raise WeightsFileError(f"{path}: arrays missing {sorted(missing)[:3]} / unexpected {sorted(extra)[:3]}")
        for name, (shape, dtype) in shapes.items():
            if dtype != "F64":
                raise WeightsFileError(f"{path}: {name} is {dtype}, expected float64")
            if shape != tuple(expected[name]):
                raise WeightsFileError(f"{path}: {name} has shape {shape}, config says {tuple(expected[name])}")

    tensors, _ = read_safetensors(path, check)
    p = parsed
    return checked_model(path, tensors, p["tasks"], p["config"], p["max_examples"], p["sharpness"], p["digests"],
                         p["labels"])
