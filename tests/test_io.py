"""Saving and loading weights: bit-identical round trip and typed errors for bad files."""

import json
import zipfile

import numpy as np
import pytest

from superpose import Task, TaskSet, WeightsFileError, build, load, save


def test_round_trip_gives_bit_identical_outputs(tmp_path, two_tasks, mixed_prompt):
    model = build(two_tasks, max_examples=6, sharpness=33.0)
    path = tmp_path / "model.npz"
    save(model, str(path))
    loaded = load(str(path))
    assert loaded.config == model.config and loaded.sharpness == 33.0 and loaded.max_examples == 6
    assert loaded.residual_labels == model.residual_labels
    for dtype in ("float32", "float64"):
        assert np.array_equal(loaded.run(mixed_prompt, dtype=dtype)[0], model.run(mixed_prompt, dtype=dtype)[0])


def test_metadata_carries_layout_and_config(tmp_path, two_tasks):
    model = build(two_tasks, max_examples=6)
    save(model, str(tmp_path / "m.npz"))
    with np.load(tmp_path / "m.npz") as f:
        meta = json.loads(f["__metadata__"].tobytes())
    assert meta["config"]["d_model"] == model.config.d_model
    assert meta["residual_labels"] == model.residual_labels
    assert [b["name"] for b in meta["layout"]][:3] == ["token", "pos_cos", "pos_sin"]


def test_truncated_file(tmp_path, two_tasks):
    path = tmp_path / "m.npz"
    save(build(two_tasks, max_examples=6), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsFileError, match="truncated"):
        load(str(path))


def test_tampered_weight(tmp_path, two_tasks):
    model = build(two_tasks, max_examples=6)
    path = tmp_path / "m.npz"
    save(model, str(path))
    with np.load(path) as f:
        arrays = {name: f[name] for name in f.files}
    arrays["layer_5/attn/W_K"] = arrays["layer_5/attn/W_K"] * 1.0001
    np.savez(path, **arrays)
    with pytest.raises(WeightsFileError, match="layer_5/attn/W_K does not match its SHA-256"):
        load(str(path))


def test_built_for_a_different_task_set(tmp_path, two_tasks):
    path = tmp_path / "m.npz"
    save(build(two_tasks, max_examples=6), str(path))
    other = TaskSet(5, 2, [Task("copy1", 1, list(range(5)))])
    with pytest.raises(WeightsFileError, match="different task set"):
        load(str(path), expect_tasks=other)


def test_not_a_weights_file(tmp_path):
    path = tmp_path / "m.npz"
    path.write_text("hello")
    with pytest.raises(WeightsFileError):
        load(str(path))
    with zipfile.ZipFile(tmp_path / "empty.npz", "w"):
        pass
    with pytest.raises(WeightsFileError, match="no __metadata__"):
        load(str(tmp_path / "empty.npz"))
    with pytest.raises(WeightsFileError, match="not found"):
        load(str(tmp_path / "missing.npz"))
