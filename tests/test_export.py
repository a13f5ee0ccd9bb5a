"""safetensors export: config and residual labels in the metadata, a bit-exact round trip, tampering caught."""

import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

import superpose.cli
from superpose import Example, Prompt, Task, TaskSet, WeightsFileError, build
from superpose.verify.export import load_safetensors, save_safetensors


@pytest.fixture
def model():
    tasks = TaskSet(5, 2, [Task("copy0", 0, [0, 1, 2, 3, 4]), Task("next1", 1, [1, 2, 3, 4, 0]),
                           Task("const", 0, [2] * 5)], token_names=["a", "b", "c", "d", "e"])
    return build(tasks, max_examples=9, sharpness=40.0)


def leaves(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from leaves(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value


def test_round_trip_is_bit_exact(tmp_path, model):
    path = str(tmp_path / "m.safetensors")
    save_safetensors(model, path)
    loaded = load_safetensors(path)
    assert loaded.config == model.config and loaded.tasks == model.tasks
    assert loaded.residual_labels == model.residual_labels
    assert (loaded.max_examples, loaded.sharpness) == (9, 40.0)
    original, restored = dict(leaves(model.params)), dict(leaves(loaded.params))
    assert set(original) == set(restored) and len(original) == 2 + 7 * 12 + 2
    for name, array in original.items():
        assert restored[name].dtype == np.float64 and np.array_equal(restored[name], array), name
    prompt = Prompt([Example([0, 1], 0), Example([3, 3], 4), Example([1, 0], 2)], query=[4, 2])
    assert np.array_equal(loaded.run(prompt, dtype="float64")[0], model.run(prompt, dtype="float64")[0])


def test_metadata_read_by_safetensors_itself(tmp_path, model):
    path = str(tmp_path / "m.safetensors")
    save_safetensors(model, path)
    with safe_open(path, framework="numpy") as f:
        metadata = f.metadata()
        names = set(f.keys())
        w_in = f.get_tensor("layer_3/mlp/W_in")
    assert metadata["format"] == "superpose-safetensors/1"
    assert json.loads(metadata["config"]) == {   # three tasks reading slots 0 and 1: two heads
        "n_layers": 7, "n_heads": 2, "d_model": model.config.d_model, "d_head": model.config.d_head,
        "d_mlp": model.config.d_mlp, "n_vocab": 7, "n_ctx": 40, "d_out": 5}
    labels = json.loads(metadata["residual_labels"])
    assert len(labels) == model.config.d_model and labels == model.residual_labels
    assert labels[:7] == [f"token[{v}]" for v in (0, 1, 2, 3, 4, "BOS", "ARROW")]
    assert labels[-5:] == [f"out[{v}]" for v in range(5)]
    assert json.loads(metadata["tasks"])["tasks"][2] == {"name": "const", "slot": 0, "table": [2] * 5}
    assert "q.k without 1/sqrt(d_head) scaling" in metadata["conventions"]
    assert names == set(json.loads(metadata["sha256"]))
    assert np.array_equal(w_in, model.params["layer_3"]["mlp"]["W_in"])


def test_a_modified_tensor_is_caught(tmp_path, model):
    path = str(tmp_path / "m.safetensors")
    metadata = save_safetensors(model, path)
    tensors = load_file(path)
    tensors["layer_5/attn/W_K"] = tensors["layer_5/attn/W_K"].copy()
    tensors["layer_5/attn/W_K"][0, 0, 0] += 1e-12
    save_file(tensors, path, metadata=metadata)
    with pytest.raises(WeightsFileError, match=r"layer_5/attn/W_K does not match its SHA-256 digest"):
        load_safetensors(path)


def test_unreadable_and_foreign_files_are_typed_errors(tmp_path, model):
    path = tmp_path / "m.safetensors"
    save_safetensors(model, str(path))
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(WeightsFileError, match="unreadable safetensors file"):
        load_safetensors(str(truncated))
    foreign = tmp_path / "f.safetensors"
    save_file({"x": np.zeros(3)}, str(foreign), metadata={"format": "something else"})
    with pytest.raises(WeightsFileError, match="format 'something else'"):
        load_safetensors(str(foreign))
    with pytest.raises(WeightsFileError, match="file not found"):
        load_safetensors(str(tmp_path / "missing.safetensors"))


def test_export_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(superpose.cli, "COMMAND_MODULES", ("superpose.verify.cli",))
    tasks = tmp_path / "tasks.json"
    tasks.write_text('{"vocab_size": 3, "slots": 1, "tasks": [{"name": "id", "slot": 0, "table": [0, 1, 2]}]}')
    out = tmp_path / "m.safetensors"
    assert superpose.cli.main(["export", str(tasks), "-o", str(out), "--max-examples", "4"]) == 0
    assert f"wrote {out}: 7 layers" in capsys.readouterr().out
    assert load_safetensors(str(out)).config.n_ctx == 15
    before = out.read_bytes()
    assert superpose.cli.main(["export", str(tasks), "-o", str(out)]) == 2   # exists: refused without --force
    assert "exists; pass --force to overwrite it" in capsys.readouterr().err and out.read_bytes() == before
    assert superpose.cli.main(["export", str(tasks), "-o", str(out), "--force", "--max-examples", "5"]) == 0
    assert load_safetensors(str(out)).config.n_ctx == 18
    assert superpose.cli.main(["export", str(tasks), "-o", str(tasks), "--force"]) == 2   # never the input
    assert "also an input of this command" in capsys.readouterr().err
    assert superpose.cli.main(["export", str(tasks), "-o", str(tmp_path / "missing" / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "missing does not exist" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    tasks.write_text('{"vocab_size": 3, "slots": 1, "tasks": [{"name": "id", "slot": 2, "table": [0, 1, 2]}]}')
    assert superpose.cli.main(["export", str(tasks), "-o", str(tmp_path / "other.safetensors")]) == 2
    assert "tasks[0].slot: 2 is outside 0..0" in capsys.readouterr().err
