"""Save and load a built model as one ``.npz`` file with its layout and config in the metadata.

The file holds every array of the params pytree under its path (``layer_3/mlp/W_in``)
and a ``__metadata__`` entry: JSON with the format version, the task set, the build
options, the model config, the residual layout and labels, and a SHA-256 digest of
every array. ``load`` checks all of it and raises ``WeightsFileError`` for a
truncated, tampered or mismatched file; a loaded model gives bit-identical outputs.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from typing import Any

import numpy as np

from superpose.construct.build import SuperposeModel, build
from superpose.executor import ModelConfig, param_shapes
from superpose.setting import SuperposeError, TaskSet, WeightsFileError

FORMAT = "superpose-weights/1"


def flatten_params(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"layer_1": {"attn": {"W_Q": a}}}`` -> ``{"layer_1/attn/W_Q": a}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_params(value, path + "/"))
        else:
            out[path] = value
    return out


def unflatten_params(flat: dict[str, Any]) -> dict:
    """The inverse of ``flatten_params``."""
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def array_digest(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(array)
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()


def save(model: SuperposeModel, path: str) -> None:
    """Write ``model`` to ``path`` (an ``.npz`` file)."""
    flat = flatten_params(model.params)
    metadata = {
        "format": FORMAT,
        "tasks": model.tasks.to_json(),
        "max_examples": model.max_examples,
        "sharpness": model.sharpness,
        "config": model.config.to_json(),
        "layout": model.layout.to_json(),
        "residual_labels": model.residual_labels,
        "sha256": {k: array_digest(v) for k, v in flat.items()},
    }
    blob = np.frombuffer(json.dumps(metadata).encode("utf-8"), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, __metadata__=blob, **flat)


def load(path: str, expect_tasks: TaskSet | None = None) -> SuperposeModel:
    """Read a model saved by ``save``; with ``expect_tasks``, also check it was built for them."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if "__metadata__" not in names:
                raise WeightsFileError(f"{path}: not a superpose weights file (no __metadata__ entry)")
            metadata = json.loads(archive["__metadata__"].tobytes().decode("utf-8"))
            flat = {name: archive[name] for name in names if name != "__metadata__"}
    except WeightsFileError:
        raise
    except FileNotFoundError:
        raise WeightsFileError(f"{path}: file not found") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, UnicodeDecodeError) as e:
        raise WeightsFileError(f"{path}: unreadable or truncated weights file ({type(e).__name__}: {e})") from None

    found = metadata.get("format") if isinstance(metadata, dict) else None
    if found != FORMAT:
        raise WeightsFileError(f"{path}: unknown format {found!r}, expected {FORMAT!r}")
    try:
        tasks = TaskSet.from_json(metadata["tasks"])
        config = ModelConfig(**metadata["config"])
        max_examples, sharpness = int(metadata["max_examples"]), float(metadata["sharpness"])
        digests = dict(metadata["sha256"])
        labels = metadata.get("residual_labels")
    except (KeyError, TypeError, ValueError, SuperposeError) as e:
        raise WeightsFileError(f"{path}: malformed metadata ({e})") from None
    return checked_model(path, flat, tasks, config, max_examples, sharpness, digests, labels, expect_tasks)


def checked_model(path: str, flat: dict[str, np.ndarray], tasks: TaskSet, config: ModelConfig,
                  max_examples: int, sharpness: float, digests: dict[str, str], residual_labels: Any,
                  expect_tasks: TaskSet | None = None) -> SuperposeModel:
    """The model stored in a file, after checking it (any format: .npz here, safetensors in verify.export).

    Every array must have the shape ``config`` implies and match its SHA-256 digest, and
    rebuilding from the stored task set and options must give the same config and
    residual labels; with ``expect_tasks`` the stored task set must equal it.
    """
    expected_shapes = flatten_params(param_shapes(config))
    if set(flat) != set(expected_shapes):
        missing, extra = set(expected_shapes) - set(flat), set(flat) - set(expected_shapes)
        raise WeightsFileError(f"{path}: arrays missing {sorted(missing)[:3]} / unexpected {sorted(extra)[:3]}")
    for name, array in flat.items():
        if tuple(array.shape) != tuple(expected_shapes[name]):
            raise WeightsFileError(f"{path}: {name} has shape {array.shape}, config says {expected_shapes[name]}")
        if digests.get(name) != array_digest(array):
            raise WeightsFileError(f"{path}: {name} does not match its SHA-256 digest (file modified?)")
    if expect_tasks is not None and expect_tasks != tasks:
        raise WeightsFileError(f"{path}: built for a different task set than the one given")
    try:
        reference = build(tasks, max_examples=max_examples, sharpness=sharpness)
    except SuperposeError as e:
        raise WeightsFileError(f"{path}: metadata describes an invalid model ({e})") from None
    if reference.config != config or reference.residual_labels != residual_labels:
        raise WeightsFileError(f"{path}: config or residual layout does not match its task set")
    params = unflatten_params({k: np.asarray(v, dtype=np.float64) for k, v in flat.items()})
    return SuperposeModel(tasks, max_examples, sharpness, reference.layout, config, params, reference.layers)
