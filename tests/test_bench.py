"""`superpose bench`: the report's structure and correctness checks (timings are reported, never asserted)."""

import json

import pytest

import jax
import jax.numpy as jnp

import superpose.cli
from superpose import Task, TaskSet, build
from superpose import model as executor
from superpose.verify.bench import fit_exponent, forward_flops

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
                           "tasks_exponents", "breakdown", "all_within_bound", "largest_checked"}
    assert result["machine"]["cores"] >= 1 and result["machine"]["backend"] == jax.default_backend()
    assert [p["T"] for p in result["by_length"]["standard"]] == [64, 128]
    assert [p["K"] for p in result["by_tasks"]["chunked"]] == [1, 2]
    points = [p for group in ("by_length", "by_tasks") for pts in result[group].values() for p in pts]
    points += [row[e] for row in result["throughput"] for e in ("standard", "chunked")]
    for p in points:
        assert p["fits"] and p["seconds"] > 0 and p["compile_seconds"] > 0 and p["xla_peak_bytes"] > 0
        assert p["bound"] is not None and 0 <= p["max_abs_error"] <= p["bound"] <= 1e-10
    for row in result["throughput"]:
        assert row["numpy"]["max_abs_error"] <= row["standard"]["bound"]
        assert row["ratio_standard"] == pytest.approx(row["standard"]["prompts_per_second"]
                                                      / row["numpy"]["prompts_per_second"])
    assert result["all_within_bound"] is True
    assert "Throughput: batched JAX" in text and "Scaling with prompt length" in text
    assert "Every measured point within its bound: True" in text


def test_points_that_do_not_fit_the_memory_limit_are_not_run():
    from superpose.verify.bench import QUICK, measure_forward

    points = [measure_forward(QUICK, 2, 64, 1, memory_limit=1000.0, executor=e) for e in ("standard", "chunked")]
    for p in points:
        assert p["fits"] is False and p["xla_peak_bytes"] > 1000 and "seconds" not in p
        assert p["note"].startswith("needs ") and "> limit" in p["note"]


def test_fitted_exponent_of_a_power_law():
    xs = [256, 512, 1024, 4096]
    assert fit_exponent(xs, [3.0 * x ** 2 for x in xs]) == pytest.approx(2.0, abs=1e-12)
    assert fit_exponent(xs, [0.5 * x ** 1.5 for x in xs]) == pytest.approx(1.5, abs=1e-12)
    assert fit_exponent([256], [1.0]) is None


def test_matmul_flops_agree_with_xlas_own_count():
    """XLA's cost analysis counts the same matrix products plus the elementwise work (a few % more)."""
    tasks = TaskSet(6, 2, [Task("a", 0, list(range(6))), Task("b", 1, [5, 4, 3, 2, 1, 0]), Task("c", 0, [1] * 6)])
    for T in (64, 256):
        model = build(tasks, max_examples=T // 4 - 1)
        with jax.enable_x64(True):
            cost = executor.forward.lower(model.config, executor.device_params(model, "float64"),
                                          jnp.zeros((2, T), jnp.int32)).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        ratio = cost["flops"] / forward_flops(model.config, 2, T)
        assert 1.0 <= ratio <= 1.1, ratio


def test_bad_bench_options_exit_2(capsys):
    assert superpose.cli.main(["bench", "--quick", "--lengths", "65", "--no-hypothesis"]) == 2
    assert "must be a multiple of s + 2 = 4" in capsys.readouterr().err
    assert superpose.cli.main(["bench", "--quick", "--memory-fraction", "2"]) == 2
    assert "--memory-fraction: must lie in (0, 1]" in capsys.readouterr().err
