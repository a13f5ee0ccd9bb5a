"""Save and load a built model as one ``.npz`` file with its layout and config in the metadata.

The file holds every array of the params pytree under its path (``layer_3/mlp/W_in``)
and a ``__metadata__`` entry: JSON with the format version, the task set, the build
options, the model config, the residual layout and labels, and a SHA-256 digest of
every array. ``load`` checks all of it and raises ``WeightsFileError`` for a
truncated, tampered or mismatched file; a loaded model gives bit-identical outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from superpose.construct.build import SuperposeModel, build, planned_config
from superpose.executor import ModelConfig, param_shapes
from superpose.files import atomic_write
from superpose.resources import (MemoryLimit, ResourceError, check_memory, estimate_for_config, format_size,
                                 memory_limit)
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


def save(model: SuperposeModel, path: str, force: bool = True, inputs: Sequence[str] = ()) -> None:
    """Write ``model`` to ``path`` (an ``.npz`` file), atomically (``superpose.files.atomic_write``).

    With ``force=False`` an existing file is refused; ``inputs`` are never overwritten. A
    missing directory or an unwritable place raises ``OutputFileError``.
    """
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
    if not model.conditioned:   # the marginal variant for answers of several tokens
        metadata["conditioned"] = False
    blob = np.frombuffer(json.dumps(metadata).encode("utf-8"), dtype=np.uint8)
    with atomic_write(path, force=force, inputs=inputs) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, __metadata__=blob, **flat)


@dataclass(frozen=True)
class WeightsHeader:
    """What a weights file says about itself (its metadata), read without touching any array."""

    path: str
    tasks: TaskSet
    config: ModelConfig
    max_examples: int
    sharpness: float
    digests: dict
    residual_labels: Any
    conditioned: bool = True


def _member_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: str):
    """(shape, dtype) from the ``.npy`` header of one archive member, reading no data."""
    with archive.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"npy format version {version}")
        except (ValueError, EOFError, SyntaxError, TypeError, KeyError) as e:
            raise WeightsFileError(f"{path}: member {info.filename} is not a NumPy array ({e})") from None
    if fortran or dtype.hasobject:
        raise WeightsFileError(f"{path}: member {info.filename} holds {'objects' if dtype.hasobject else 'a Fortran-order array'}")
    return tuple(shape), dtype


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: str, shape: tuple, dtype) -> np.ndarray:
    """The array of one member, after its header was checked to be ``shape``/``dtype``."""
    array = np.empty(shape, dtype=dtype)
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(f)
        if array.nbytes:
            got = f.readinto(memoryview(array.reshape(-1)).cast("B"))
            if got != array.nbytes:
                raise WeightsFileError(f"{path}: unreadable or truncated weights file "
                                       f"({info.filename}: {got} of {array.nbytes} bytes)")
    return array


def _archive_members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    return {info.filename[:-4] if info.filename.endswith(".npy") else info.filename: info
            for info in archive.infolist()}


def _open_archive(path: str) -> zipfile.ZipFile:
    if not os.path.exists(path):
        raise WeightsFileError(f"{path}: file not found")
    if os.path.isdir(path):
        raise WeightsFileError(f"{path}: is a directory, not a weights file")
    try:
        is_zip = zipfile.is_zipfile(path)
        if is_zip:
            return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise WeightsFileError(f"{path}: unreadable or truncated weights file ({type(e).__name__}: {e})") from None
    raise WeightsFileError(f"{path}: not a superpose weights file (not an .npz archive: truncated, "
                           "or some other kind of file)")


def _header_from(archive: zipfile.ZipFile, path: str, limit: MemoryLimit) -> WeightsHeader:
    members = _archive_members(archive)
    if "__metadata__" not in members:
        raise WeightsFileError(f"{path}: not a superpose weights file (no __metadata__ entry)")
    info = members["__metadata__"]
    shape, dtype = _member_header(archive, info, path)
    if len(shape) != 1 or dtype != np.uint8:
        raise WeightsFileError(f"{path}: __metadata__ is {dtype}{list(shape)}, expected uint8 bytes")
    if 20 * shape[0] > limit.bytes:  # the JSON text becomes Python objects of about 20 times its size
        raise ResourceError(f"{path}: its metadata is {format_size(shape[0])}; reading it would need about "
                            f"{format_size(20 * shape[0])}, over the memory limit {limit}; raise --memory-limit "
                            "or SUPERPOSE_MEMORY_LIMIT if the file is trusted")
    try:
        metadata = json.loads(_read_member(archive, info, path, shape, dtype).tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise WeightsFileError(f"{path}: malformed metadata ({type(e).__name__})") from None
    found = metadata.get("format") if isinstance(metadata, dict) else None
    if found != FORMAT:
        raise WeightsFileError(f"{path}: unknown format {str(found)[:80]!r}, expected {FORMAT!r}")
    try:
        tasks = TaskSet.from_json(metadata["tasks"])
        config = ModelConfig(**metadata["config"])
        max_examples, sharpness = metadata["max_examples"], float(metadata["sharpness"])
        if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 0:
            raise ValueError(f"max_examples {max_examples!r}")
        digests = dict(metadata["sha256"])
        labels = metadata.get("residual_labels")
        conditioned = metadata.get("conditioned", True)
        if not isinstance(conditioned, bool):
            raise ValueError(f"conditioned {conditioned!r}")
        expected = planned_config(tasks, max_examples, conditioned)
    except (KeyError, TypeError, ValueError, AttributeError, SuperposeError) as e:
        raise WeightsFileError(f"{path}: malformed metadata ({str(e)[:200]})") from None
    if config != expected:
        raise WeightsFileError(f"{path}: config or residual layout does not match its task set")
    return WeightsHeader(path, tasks, config, max_examples, sharpness, digests, labels, conditioned)


def read_header(path: str, limit: MemoryLimit | None = None) -> WeightsHeader:
    """The metadata of a weights file (task set, config, build options), checked, no array read."""
    limit = limit or memory_limit()
    with _open_archive(path) as archive, _unreadable_is_typed(path):
        return _header_from(archive, path, limit)


@contextlib.contextmanager
def _unreadable_is_typed(path: str):
    """Turn what the zip and npy readers raise for a damaged file into ``WeightsFileError``."""
    try:
        yield
    except SuperposeError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise WeightsFileError(f"{path}: unreadable or truncated weights file ({type(e).__name__}: {e})") from None


def load(path: str, expect_tasks: TaskSet | None = None, limit: MemoryLimit | None = None) -> SuperposeModel:
    """Read a model saved by ``save``; with ``expect_tasks``, also check it was built for them.

    Nothing large is read before it is checked: the metadata first (its config must be
    the one its task set implies, and the model must fit the memory limit, ``limit`` or
    ``superpose.resources.memory_limit()``), then every array's ``.npy`` header (shape and
    dtype as the config says), and only then the data.
    """
    limit = limit or memory_limit()
    with _open_archive(path) as archive, _unreadable_is_typed(path):
        header = _header_from(archive, path, limit)
        if expect_tasks is not None and expect_tasks != header.tasks:
            raise WeightsFileError(f"{path}: built for a different task set than the one given")
        check_memory(estimate_for_config(header.config, loaded=True), limit,
                     f"{path}: loading this model (context {header.config.n_ctx} tokens)",
                     "raise --memory-limit or SUPERPOSE_MEMORY_LIMIT")
        members = _archive_members(archive)
        expected = flatten_params(param_shapes(header.config))
        names = set(members) - {"__metadata__"}
        if names != set(expected):
            missing, extra = set(expected) - names, names - set(expected)
            raise WeightsFileError(f"{path}: arrays missing {sorted(missing)[:3]} / unexpected {sorted(extra)[:3]}")
        headers = {name: _member_header(archive, members[name], path) for name in expected}
        for name, (shape, dtype) in headers.items():
            if shape != tuple(expected[name]) or dtype != np.float64:
                raise WeightsFileError(f"{path}: {name} is {dtype} of shape {shape}, "
                                       f"config says float64 of shape {tuple(expected[name])}")
        flat = {name: _read_member(archive, members[name], path, shape, dtype)
                for name, (shape, dtype) in headers.items()}
    h = header
    return checked_model(path, flat, h.tasks, h.config, h.max_examples, h.sharpness, h.digests, h.residual_labels,
                         expect_tasks, h.conditioned)


def checked_model(path: str, flat: dict[str, np.ndarray], tasks: TaskSet, config: ModelConfig,
                  max_examples: int, sharpness: float, digests: dict[str, str], residual_labels: Any,
                  expect_tasks: TaskSet | None = None, conditioned: bool = True) -> SuperposeModel:
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
        reference = build(tasks, max_examples=max_examples, sharpness=sharpness, conditioned=conditioned)
    except SuperposeError as e:
        raise WeightsFileError(f"{path}: metadata describes an invalid model ({e})") from None
    if reference.config != config or reference.residual_labels != residual_labels:
        raise WeightsFileError(f"{path}: config or residual layout does not match its task set")
    params = unflatten_params({k: np.asarray(v, dtype=np.float64) for k, v in flat.items()})
    return SuperposeModel(tasks, max_examples, sharpness, reference.layout, config, params, reference.layers,
                          conditioned=conditioned)
