"""The ``scale`` sweep preset (fuzzing at scale) and its summary (benchmarks/sweep_scale.py)."""

import importlib.util
import os

from superpose.verify import sweep as sw
from superpose.verify.batched import ShardedRunner, shapes_compiled

HERE = os.path.dirname(os.path.abspath(__file__))


def _program():
    spec = importlib.util.spec_from_file_location("sweep_scale", os.path.join(HERE, "..", "benchmarks", "sweep_scale.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_scale_preset_has_100000_prompts_of_both_dtypes_and_1000_long_ones():
    configs = sw.preset("scale")
    assert sum(c.n_prompts for c in configs) >= 100_000
    assert sum(c.n_prompts for c in configs if 1024 <= c.prompt_length <= 4096) >= 1000
    assert {c.dtype for c in configs} == {"float32", "float64"}
    assert len({c.seed for c in configs}) == len(configs)   # a random task set each
    assert {c.vocab_size for c in configs} == {2, 4, 8} and {c.n_tasks for c in configs} == {1, 2, 3, 4, 6}
    assert {c.slots for c in configs} == {1, 2, 3} and {c.max_arity for c in configs} == {1, 2}
    assert {c.ambiguous_share for c in configs} >= {0.0, 0.3} and {c.noise_share for c in configs} >= {0.0, 0.2}


def test_the_summary_counts_what_the_records_hold():
    configs = sw.preset("smoke")
    runner = ShardedRunner()
    records = sorted(sw.run_sweep(configs, runner), key=lambda r: r["index"])
    summary = _program().summarise(records, 2.0, shapes_compiled(runner))
    assert summary["configurations"] == len(configs) == 16
    assert summary["prompts"] == sum(c.n_prompts for c in configs)
    assert summary["prediction_positions"] == sum(c.n_prompts * (c.n_examples + 1) for c in configs)
    assert summary["positions_per_second"] == summary["prediction_positions"] / 2.0
    assert summary["violations"] == 0
    by = summary["by"]
    assert sum(row["configurations"] for row in by.values()) == 16
    assert max(row["max_abs_error"] for row in by.values()) == max(r["max_abs_error"] for r in records)
