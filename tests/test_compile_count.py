"""The Hypothesis suite shares a handful of compiled programs (``superpose.executor.PROGRAM_LOG``)."""

import json
import os
import subprocess
import sys

from conftest import HYPOTHESIS_PROGRAMS, HYPOTHESIS_TESTS, HYPOTHESIS_TESTS_RUN, MAX_HYPOTHESIS_PROGRAMS

HERE = os.path.dirname(os.path.abspath(__file__))


def test_the_hypothesis_suite_runs_at_most_five_programs(tmp_path):
    """Runs last (conftest): counts the programs the session's Hypothesis tests ran; run alone, it runs
    every Hypothesis test (``-m hypothesis``) in a subprocess and counts theirs."""
    programs = sorted(repr(k) for k in HYPOTHESIS_PROGRAMS)
    if programs:   # the count is the whole suite's only if every Hypothesis test ran here (make test's xdist group)
        assert HYPOTHESIS_TESTS <= HYPOTHESIS_TESTS_RUN, \
            f"{len(HYPOTHESIS_TESTS - HYPOTHESIS_TESTS_RUN)} Hypothesis tests ran in another process"
    else:
        report = tmp_path / "programs.json"
        done = subprocess.run([sys.executable, "-m", "pytest", HERE, "-q", "-m", "hypothesis", "-p", "no:cacheprovider"],
                              env={**os.environ, "SUPERPOSE_PROGRAM_REPORT": str(report)}, capture_output=True,
                              text=True, cwd=os.path.dirname(HERE))
        assert done.returncode == 0, done.stdout[-3000:]
        programs = json.loads(report.read_text())
    assert programs, "no Hypothesis test ran the model"
    assert len(programs) <= MAX_HYPOTHESIS_PROGRAMS, "\n".join(programs)


def test_the_program_log_counts_one_program_per_key(two_tasks, mixed_prompt):
    from superpose import build
    from superpose import model as executor

    model = build(two_tasks, max_examples=6)
    before = dict(executor.PROGRAM_LOG)
    compiled_before = len(executor.PROGRAMS)
    for dtype in ("float64", "float64", "float32"):
        executor.run(model, mixed_prompt, dtype=dtype, shape=model.config)
    ran = {k: n - before.get(k, 0) for k, n in executor.PROGRAM_LOG.items() if n > before.get(k, 0)}
    assert sorted((k.dtype, n) for k, n in ran.items()) == [("float32", 1), ("float64", 2)]
    assert len(executor.PROGRAMS) - compiled_before <= 2 and all(k in executor.PROGRAMS for k in ran)
