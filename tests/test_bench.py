"""`superpose bench` (benchmarks/bench.py): the report's structure and correctness checks
(timings are reported, never asserted)."""

import json

import pytest

import jax
import jax.numpy as jnp

import superpose.cli
import superpose.verify.cli
from superpose import Task, TaskSet, build
from superpose import model as executor

bench = superpose.verify.cli.load_bench_program()

TINY = ["bench", "--quick", "--throughput-lengths", "64", "--lengths", "64,128", "--tasks", "1,2", "--no-hypothesis",
        "--quiet"]


@pytest.fixture(autouse=True)
def verify_commands(monkeypatch):
    monkeypatch.setattr(superpose.cli, "COMMAND_MODULES", ("superpose.verify.cli",))


def test_bench_quick_reports_every_section_and_every_point_is_within_its_bound(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert superpose.cli.main([*TINY, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert set(result) >= {"machine", "matmul", "throughput", "by_length", "length_exponents", "by_tasks",
                           "tasks_exponents", "targets", "all_within_bound", "largest_checked"}
    assert result["machine"]["cores"] >= 1 and result["machine"]["backend"] == jax.default_backend()
    assert [p["T"] for p in result["by_length"]] == [64, 128]
    assert [p["K"] for p in result["by_tasks"]] == [1, 2]
    points = result["by_length"] + result["by_tasks"] + [row["jax"] for row in result["throughput"]]
    for p in points:
        assert p["fits"] and p["seconds"] > 0 and p["compile_seconds"] > 0 and p["xla_peak_bytes"] > 0
        assert p["bound"] is not None and 0 <= p["max_abs_error"] <= p["bound"] <= 1e-10
    for row in result["throughput"]:   # TransformerLens and NumPy run the same weights: the same outputs
        assert row["numpy"]["max_abs_error"] <= row["jax"]["bound"]
        assert row["lens"]["max_abs_error"] <= row["jax"]["bound"] and row["lens"]["batch"] == row["batch"]
        assert row["ratio_numpy"] == pytest.approx(row["jax"]["prompts_per_second"]
                                                   / row["numpy"]["prompts_per_second"])
        assert row["ratio_lens"] == pytest.approx(row["jax"]["prompts_per_second"]
                                                  / row["lens"]["prompts_per_second"])
    assert result["all_within_bound"] is True
    assert "JAX/TL" in text and "Scaling with prompt length" in text
    assert "Every measured point within its bound: True" in text


def test_points_that_do_not_fit_the_memory_limit_are_not_run():
    p = bench.measure_forward(bench.QUICK, 2, 64, 1, memory_limit=1000.0)
    assert p["fits"] is False and p["xla_peak_bytes"] > 1000 and "seconds" not in p
    assert p["note"].startswith("needs ") and "> limit" in p["note"]


def test_fitted_exponent_of_a_power_law():
    xs = [256, 512, 1024, 4096]
    assert bench.fit_exponent(xs, [3.0 * x ** 2 for x in xs]) == pytest.approx(2.0, abs=1e-12)
    assert bench.fit_exponent(xs, [0.5 * x ** 1.5 for x in xs]) == pytest.approx(1.5, abs=1e-12)
    assert bench.fit_exponent([256], [1.0]) is None


def test_matmul_flops_agree_with_xlas_own_count_on_the_dense_path():
    """XLA's cost analysis counts the same matrix products plus the elementwise work (a few % more)."""
    tasks = TaskSet(6, 2, [Task("a", 0, list(range(6))), Task("b", 1, [5, 4, 3, 2, 1, 0]), Task("c", 0, [1] * 6)])
    for T in (64, 256):
        model = build(tasks, max_examples=T // 4 - 1)
        with jax.enable_x64(True):
            cost = executor.forward.lower(model.config, executor.device_params(model, "float64"),
                                          jnp.zeros((2, T), jnp.int32)).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        ratio = cost["flops"] / bench.forward_flops(model.config, 2, T)
        assert 1.0 <= ratio <= 1.1, ratio


def test_block_wise_flops_count_the_visible_blocks():
    """T = 4096 in 16 blocks of 256: 136 visible block pairs; q k^T twice and (exp) v once on each."""
    config = build(TaskSet(4, 2, [Task("a", 0, [0, 1, 2, 3])]), max_examples=1023).config
    T, H, dh, D, M, L = 4096, config.n_heads, config.d_head, config.d_model, config.d_mlp, config.n_layers
    projections = 3 * 2 * T * D * H * dh + 2 * T * H * dh * D + 2 * 2 * T * D * M
    attention = 3 * 2 * H * 136 * 256 ** 2 * dh
    assert bench.forward_flops(config, 1, T) == L * (projections + attention) + 2 * T * D * config.d_out


def test_bad_bench_options_exit_2(capsys):
    assert superpose.cli.main(["bench", "--quick", "--lengths", "65", "--no-hypothesis"]) == 2
    assert "must be a multiple of s + 2 = 4" in capsys.readouterr().err
    assert superpose.cli.main(["bench", "--quick", "--memory-fraction", "2"]) == 2


def test_bench_without_a_source_checkout_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(superpose.verify.cli, "BENCH_PROGRAM", str(tmp_path / "benchmarks" / "bench.py"))
    assert superpose.cli.main(["bench", "--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runs benchmarks/bench.py from a source checkout" in err[0]


def test_the_user_fuzz_benchmark_writes_its_output_atomically_and_only_with_force(tmp_path, monkeypatch, capsys):
    """``make user-fuzz`` refreshes the committed result through ``-o ... --force``; without ``--force``
    an existing file is refused before any fuzzing, and left as it was."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(superpose.verify.cli.BENCH_PROGRAM), "user_fuzz.py")
    spec = importlib.util.spec_from_file_location("user_fuzz_program", path)
    program = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(program)
    out = tmp_path / "fuzz.json"
    monkeypatch.setattr("sys.argv", ["user_fuzz.py", "--examples", "2", "--unpadded", "0", "-o", str(out)])
    program.main()
    written = json.loads(out.read_text())
    assert written["padded"]["examples"] == 2 and written == json.loads(capsys.readouterr().out)
    out.write_text("kept")
    with pytest.raises(SystemExit) as refused:
        program.main()
    assert refused.value.code == 2 and "exists; pass --force" in capsys.readouterr().err
    assert out.read_text() == "kept"
    monkeypatch.setattr("sys.argv", ["user_fuzz.py", "--examples", "2", "--unpadded", "0", "-o", str(out), "--force"])
    program.main()
    assert json.loads(out.read_text())["padded"]["examples"] == 2
