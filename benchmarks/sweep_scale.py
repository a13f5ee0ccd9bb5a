"""Fuzzing at scale: the ``scale`` sweep preset (100,368 random prompts), summarised.

    python benchmarks/sweep_scale.py [--records build/sweep-scale.jsonl] [-o benchmarks/sweep-scale.json] [--force]

Runs ``superpose sweep --preset scale`` in-process (the same ``superpose.verify.sweep``
functions, sharded over all JAX devices), writes every record to ``--records`` (tens of
MB, not committed), and commits only a summary: configurations, prompts, verified
prediction positions, bound violations, worst error and error/bound per dtype and
prompt-length band, wall time, throughput (verified prediction positions per second)
and the machine's load; plus a gzipped sample of 100 records beside it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time

import jax
import numpy as np

from superpose.files import atomic_write, check_output
from superpose.verify import sweep as sw
from superpose.verify.batched import ShardedRunner, shapes_compiled

BANDS = [("0-255", 0, 255), ("256-1023", 256, 1023), ("1024-4096", 1024, 4096)]


def summarise(records: list[dict], seconds: float, compiled: list[dict]) -> dict:
    positions = lambda r: r["config"]["n_prompts"] * (r["config"]["n_examples"] + 1)  # noqa: E731
    out = {
        "command": "python benchmarks/sweep_scale.py (superpose sweep --preset scale)",
        "configurations": len(records),
        "prompts": sum(r["config"]["n_prompts"] for r in records),
        "prediction_positions": sum(positions(r) for r in records),
        "violations": sum(bool(r["violated"]) for r in records),
        "without_bound": sum(not r["bound_holds"] for r in records),
        "wall_seconds": seconds,
        "compiled_programs": len(compiled),
        "compile_seconds": sum(c["compile_seconds"] for c in compiled),
        "devices": [str(d) for d in jax.devices()],
        "load_average_end": list(os.getloadavg()),
        "vocab_sizes": sorted({r["config"]["vocab_size"] for r in records}),
        "task_counts": sorted({r["config"]["n_tasks"] for r in records}),
        "slot_counts": sorted({r["config"]["slots"] for r in records}),
        "by": {},
    }
    out["positions_per_second"] = out["prediction_positions"] / seconds
    out["prompts_per_second"] = out["prompts"] / seconds
    for dtype in ("float32", "float64"):
        for band, low, high in BANDS:
            rs = [r for r in records if r["config"]["dtype"] == dtype and low <= r["prompt_length"] <= high]
            if not rs:
                continue
            ratios = [r["error_over_bound"] for r in rs if r["error_over_bound"] is not None]
            out["by"][f"{dtype} T {band}"] = {
                "configurations": len(rs), "prompts": sum(r["config"]["n_prompts"] for r in rs),
                "prediction_positions": sum(positions(r) for r in rs),
                "violations": sum(bool(r["violated"]) for r in rs),
                "max_abs_error": max(r["max_abs_error"] for r in rs),
                "max_error_over_bound": max(ratios) if ratios else None,
                "longest_prompt": max(r["prompt_length"] for r in rs)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="build/sweep-scale.jsonl")
    parser.add_argument("-o", "--output", default="benchmarks/sweep-scale.json")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    args = parser.parse_args(argv)
    sample_path = args.output.removesuffix(".json") + "-sample.jsonl.gz"
    os.makedirs(os.path.dirname(args.records) or ".", exist_ok=True)
    for path in (args.records, args.output, sample_path):
        check_output(path, args.force)
    configs = sw.preset("scale")
    runner = ShardedRunner()
    load_start = list(os.getloadavg())
    start = time.perf_counter()
    records = list(sw.write_records(sw.run_sweep(configs, runner), args.records, force=args.force))
    seconds = time.perf_counter() - start
    records.sort(key=lambda r: r["index"])
    summary = {**summarise(records, seconds, shapes_compiled(runner)), "load_average_start": load_start}
    with atomic_write(args.output, force=args.force) as tmp, open(tmp, "w") as f:
        json.dump(summary, f, indent=1)
    picked = np.random.default_rng(0).choice(len(records), size=min(100, len(records)), replace=False)
    with atomic_write(sample_path, force=args.force) as tmp, gzip.open(tmp, "wt") as f:
        for i in sorted(picked):
            f.write(json.dumps(sw.json_safe(records[i])) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "by"}, indent=1))
    for key, row in summary["by"].items():
        print(f"{key:<22} {row['configurations']:>5} configs {row['prompts']:>6} prompts "
              f"{row['prediction_positions']:>9} positions  max error {row['max_abs_error']:.2e}  "
              f"error/bound {row['max_error_over_bound'] or 0:.2e}  violations {row['violations']}")
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
