"""Shared fixtures and the suite's settings. Imports nothing heavy at the top: pytest-xdist's controller
loads this file before it starts the workers, and runs no test (the workers import what the tests use)."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import importlib
import io
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, is_hypothesis_test, settings


def pytest_configure(config):
    """Start JAX's backend on its one default CPU device in every process that runs tests. Otherwise the
    first in-process `superpose bench` (``use_all_cores``) gives the process one device per core, and
    the tests after it see another device count than when run alone or in another order. Tests of
    several devices run them in subprocesses."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return   # pytest-xdist's controller
    import jax

    jax.devices()


# `make test` draws the same examples every run (derandomize: a failure in CI is reproducible, and the
# compile count below does not depend on the draw, e.g. whether the CLI fuzzer grew a prompt past
# 256 tokens, which needs a program of its own length); HYPOTHESIS_PROFILE=thorough draws new ones.
settings.register_profile(
    "default", deadline=None, print_blob=True, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=1000,
                          derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# One padded shape for every Hypothesis test that runs the model (the families of test_properties,
# test_executors, test_blockwise, test_lens and test_generation_construction): with one prompt length
# (its n_ctx, 128) they share a program per dtype (and one more for test_blockwise's small blocks).
# Every width is bucketed as `run` buckets it but the MLP's, which is rounded up to a multiple of 128
# only: the widest family needs 2072 hidden units, the power of two would be 4096, and the MLP is most
# of the work of each fuzzed run.
def _fuzz_shape():
    from superpose import executor
    from superpose.verify.strategies import covering_config

    cover = executor.covering_config(
        covering_config(max_vocab=8, max_slots=3, max_tasks=4, max_examples=24),
        covering_config(max_vocab=4, max_slots=2, max_tasks=3, max_examples=8, max_arity=2, max_answer_length=3))
    return dataclasses.replace(executor.bucket_config(cover), d_mlp=-(-cover.d_mlp // 128) * 128)


def __getattr__(name):   # FUZZ_SHAPE is computed on first import by a test module (PEP 562)
    if name == "FUZZ_SHAPE":
        globals()[name] = _fuzz_shape()
        return globals()[name]
    raise AttributeError(name)


MAX_HYPOTHESIS_PROGRAMS = 5
HYPOTHESIS_PROGRAMS: set = set()   # the executor's programs that Hypothesis tests ran in this session
HYPOTHESIS_TESTS: set = set()      # the Hypothesis tests this session selected (node ids) ...
HYPOTHESIS_TESTS_RUN: set = set()  # ... and those that ran in this process


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Record which compiled programs each Hypothesis test runs (``superpose.executor.PROGRAM_LOG``)."""
    from superpose import executor

    before = dict(executor.PROGRAM_LOG)
    yield
    if item.get_closest_marker("hypothesis"):
        HYPOTHESIS_TESTS_RUN.add(item.nodeid)
        HYPOTHESIS_PROGRAMS.update(k for k, n in executor.PROGRAM_LOG.items() if n > before.get(k, 0))


@pytest.hookimpl(tryfirst=True)   # before xdist's own hook, which reads the xdist_group markers
def pytest_collection_modifyitems(config, items):
    """The compile-count test reads what the Hypothesis tests before it ran: run it last.

    Under pytest-xdist (``make test``: ``-n auto --dist loadgroup``) the Hypothesis tests and the
    compile-count test form one group, so one worker runs them all, in this order, and the count is
    the whole Hypothesis suite's; every other test is grouped by its file, so a module's fixtures
    (an example's run, a loaded checkpoint) are computed by one worker only."""
    last = [i for i in items if i.name == "test_the_hypothesis_suite_runs_at_most_five_programs"]
    items[:] = [i for i in items if i not in last] + last
    # registered as "xdist" when setuptools loads it, as "xdist.plugin" when named (make test's PYTEST_PLUGINS)
    if any(config.pluginmanager.hasplugin(name) for name in ("xdist", "xdist.plugin")):
        for item in items:
            hypothesis = item in last or is_hypothesis_test(getattr(item, "obj", None))  # the marker comes later
            item.add_marker(pytest.mark.xdist_group("hypothesis" if hypothesis else item.path.name))


def pytest_collection_finish(session):
    """Note the session's Hypothesis tests (for test_compile_count). Then keep the garbage collector
    off the objects the collection imported (JAX, Flax, sympy, torch):
    every full collection traversed those millions of objects again (about 10 s of each worker's
    time under ``make test``). ``gc.collect`` first so that no garbage is frozen with them; then
    collect less often (the tests allocate heavily, mostly short-lived JAX tracing objects)."""
    HYPOTHESIS_TESTS.update(i.nodeid for i in session.items if is_hypothesis_test(getattr(i, "obj", None)))
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def pytest_sessionfinish(session):
    # pytest's last cleanup collects garbage five times over the whole heap (to report exceptions raised
    # in finalizers): with what the session left frozen too, those collections cost nothing
    gc.freeze()
    report = os.environ.get("SUPERPOSE_PROGRAM_REPORT")
    if report:   # for test_compile_count, which runs the Hypothesis tests in a subprocess when run alone
        with open(report, "w") as f:
            json.dump(sorted(repr(k) for k in HYPOTHESIS_PROGRAMS), f)


def run_example(module: str, out_dir):
    """(returned result, printed text) of ``superpose.examples.<module>.main`` at its small size."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = importlib.import_module(f"superpose.examples.{module}").main(out_dir=out_dir, small=True)
    return result, printed.getvalue()


@pytest.fixture
def two_tasks() -> TaskSet:
    """Copy slot 0, and 'next' of slot 1, over 5 tokens with 2 input slots."""
    from superpose import Task, TaskSet

    return TaskSet(vocab_size=5, slots=2, tasks=[
        Task("copy0", 0, [0, 1, 2, 3, 4]),
        Task("next1", 1, [1, 2, 3, 4, 0]),
    ])


@pytest.fixture
def mixed_prompt(two_tasks) -> Prompt:
    """Consistent, ambiguous and noise examples mixed."""
    from superpose import Example, Prompt

    return Prompt([
        Example([0, 3], 0),   # copy0 only
        Example([2, 1], 2),   # copy0 and next1 (ambiguous)
        Example([4, 4], 1),   # noise: copy0 -> 4, next1 -> 0
        Example([3, 0], 1),   # next1 only
        Example([1, 2], 1),   # copy0 only
    ], query=[2, 2])


def random_prompt(tasks: TaskSet, m: int, rng: np.random.Generator, noise: float = 0.2) -> Prompt:
    from superpose import Example, Prompt

    examples = []
    for _ in range(m):
        x = rng.integers(0, tasks.vocab_size, tasks.slots).tolist()
        if rng.random() < noise:
            y = int(rng.integers(0, tasks.vocab_size))
        else:
            y = tasks.tasks[int(rng.integers(0, tasks.K))](x)
        examples.append(Example(x, y))
    return Prompt(examples, rng.integers(0, tasks.vocab_size, tasks.slots).tolist())


# The task set and prompt the command-line tests write to files (tests/test_cli.py, test_reliability.py).
TASKS = {"vocab_size": 4, "slots": 2, "tasks": [
    {"name": "copy0", "slot": 0, "table": [0, 1, 2, 3]},
    {"name": "inc1", "slot": 1, "table": [1, 2, 3, 0]},
]}
PROMPT = {"examples": [{"inputs": [0, 1], "answer": 0}, {"inputs": [2, 2], "answer": 3},
                       {"inputs": [1, 2], "answer": 1}], "query": [3, 3]}


def write_input(tmp_path, name, obj) -> str:
    """Write ``obj`` (JSON-encoded unless a string, kept byte for byte via surrogateescape) to tmp_path/name."""
    path = tmp_path / name
    path.write_bytes((obj if isinstance(obj, str) else json.dumps(obj)).encode("utf-8", "surrogateescape"))
    return str(path)
