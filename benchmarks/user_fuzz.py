"""A user's fuzz test, as the README's recipe writes it, timed: examples per second.

    python benchmarks/user_fuzz.py [--examples 1000] [--unpadded 50] [-o RESULT.json [--force]]

The test draws small task sets and prompts (``superpose.verify.strategies.cases``: d <= 8,
K <= 4, s <= 3, m <= 24), builds each model, runs the prompt with ``model.run`` and compares
the readout with the analytic prediction within the bound. ``model.run`` pads every
model's widths to ``superpose.executor.bucket_config`` and short prompts to 128 tokens,
so the task sets share a handful of compiled programs. For comparison, ``--unpadded N``
runs N examples of the same test on each model's own widths (``shape=model.config``: a
new program for most task sets). Prints one JSON object: examples, seconds, examples per
second, programs compiled, and the load average, and with ``-o`` writes it atomically
(an existing file only with ``--force``).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from hypothesis import HealthCheck, given, settings

from superpose import build, predict
from superpose import executor
from superpose.model import run
from superpose.verify.strategies import cases

M = 24


def fuzz(examples: int, padded: bool) -> dict:
    """Run the recipe's test for ``examples`` examples; seconds, examples per second, programs compiled."""
    seen = []

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=cases(max_vocab=8, max_tasks=4, max_examples=M))
    def test_the_model_matches_the_prediction(case):
        tasks, prompt = case
        model = build(tasks, max_examples=M)
        out = model.run(prompt, dtype="float64")[0] if padded else \
            run(model, prompt, dtype="float64", shape=model.config)[0]
        assert np.abs(out - predict(tasks, prompt)).max() <= model.error_bound("float64").total
        seen.append(1)

    programs = len(executor.PROGRAMS)
    start = time.perf_counter()
    test_the_model_matches_the_prediction()
    seconds = time.perf_counter() - start
    return {"examples": len(seen), "seconds": seconds, "examples_per_second": len(seen) / seconds,
            "programs_compiled": len(executor.PROGRAMS) - programs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--unpadded", type=int, default=50, help="examples on each model's own widths (0: skip)")
    parser.add_argument("-o", "--output", metavar="RESULT.json", help="also write the JSON here (atomically)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --output")
    args = parser.parse_args()
    if args.output and os.path.exists(args.output) and not args.force:   # refuse before the minutes of fuzzing
        parser.error(f"--output: {args.output} exists; pass --force to overwrite it")
    result = {"load_average_start": list(os.getloadavg()), "cpu_count": os.cpu_count(),
              "padded": fuzz(args.examples, padded=True)}
    if args.unpadded:
        result["unpadded"] = fuzz(args.unpadded, padded=False)
    result["load_average_end"] = list(os.getloadavg())
    text = json.dumps(result, indent=1)
    print(text)
    if args.output:
        from superpose.files import atomic_write

        with atomic_write(args.output, force=args.force) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
