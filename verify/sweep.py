"""Sweeps: build and run the construction over many configurations, each checked against the prediction.

A configuration (``SweepConfig``) fixes the vocabulary size d, the number of tasks K,
the input slots s, the examples per prompt m, the sharpness beta, the dtype, how task
proportions are drawn (``uniform``, ``dirichlet``, ``skewed``), the share of ambiguous
task examples and of noise examples, the number of prompts and a seed. For each one
the sweep draws a random task set and prompts (``superpose.verify.sampling``), builds
the model for prompts of m examples, runs every prompt (``superpose.verify.batched``:
models of one padded shape stacked and sharded over the devices) and records:

* ``max_abs_error``: the largest ``|readout - prediction|`` over every prediction
  position of every prompt, the prediction being the analytic one
  (``superpose.verify.compare`` against ``superpose.verify.analytic``, which never looks at weights);
* ``bound``: ``model.error_bound(dtype, prompt_length=T)`` (``None`` when hypothesis H
  fails, i.e. no bound is claimed), ``error_over_bound`` and ``violated``
  (a bound that holds and is exceeded; a NaN or infinite error also counts);
* calibration at each query: the paper's KL divergence
  (``superpose.verify.calibration``) against the tasks' shares of the examples and
  against the analytic mixture, and the points ``(share, probability)`` per answer;
* d_model, parameters, prompt length, realized ambiguous and noise shares, and
  seconds spent building, running (compile excluded, batched calls split evenly over
  the models in them) and checking.

Records are written as JSON Lines (one object per configuration, in completion order
with ``index`` giving the configuration's position); ``summary_table`` prints a short
table. ``grid``, ``random_configs`` and ``PRESETS`` make configuration lists.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import jax
import numpy as np

from superpose.construct.build import build
from superpose.files import atomic_write
from superpose.model import pad_params
from superpose.setting import InputFileError, SuperposeError, TaskSet, tokenize
from superpose.verify.analytic import task_mixture
from superpose.verify.batched import Item, ShardedRunner, padded_shape
from superpose.verify.calibration import answer_distribution, calibration_kl
from superpose.verify.compare import compare
from superpose.verify.sampling import MIXTURES, mixture_shares, random_task_set, realized_counts, sample_prompt

RECORD_FORMAT = "superpose-sweep/1"
DTYPES = ("float32", "float64")


class SweepError(SuperposeError):
    """A sweep specification (a value list, a preset, a count) is out of range."""


@dataclass(frozen=True)
class SweepConfig:
    """One point of a sweep. ``ambiguous_share`` is a share of the task examples, ``noise_share`` of all."""

    vocab_size: int
    n_tasks: int
    slots: int
    n_examples: int
    sharpness: float
    dtype: str
    mixture: str
    ambiguous_share: float
    noise_share: float
    n_prompts: int
    seed: int
    max_arity: int = 1   # each task reads 1..max_arity distinct slots (at most ``slots``)

    @property
    def prompt_length(self) -> int:
        return (self.n_examples + 1) * (self.slots + 2)

    def to_json(self) -> dict:
        return asdict(self)

    def validate(self) -> "SweepConfig":
        checks = [
            (self.vocab_size >= 1, "vocab_size", "must be >= 1"),
            (self.n_tasks >= 1, "n_tasks", "must be >= 1"),
            (self.slots >= 1, "slots", "must be >= 1"),
            (self.n_examples >= 0, "n_examples", "must be >= 0"),
            (math.isfinite(self.sharpness) and self.sharpness > 0, "sharpness", "must be finite and > 0"),
            (self.dtype in DTYPES, "dtype", f"must be one of {DTYPES}"),
            (self.mixture in MIXTURES, "mixture", f"must be one of {MIXTURES}"),
            (0.0 <= self.ambiguous_share <= 1.0, "ambiguous_share", "must lie in [0, 1]"),
            (0.0 <= self.noise_share <= 1.0, "noise_share", "must lie in [0, 1]"),
            (self.n_prompts >= 1, "n_prompts", "must be >= 1"),
            (self.max_arity >= 1, "max_arity", "must be >= 1"),
        ]
        for ok, name, message in checks:
            if not ok:
                raise SweepError(f"{name}: {message}, got {getattr(self, name)!r}")
        return self


# Value lists a grid is made of: parameter name -> (type, default values).
AXES: dict[str, tuple[type, tuple]] = {
    "vocab_size": (int, (4, 8)),
    "n_tasks": (int, (1, 2, 3)),
    "slots": (int, (1, 2)),
    "max_arity": (int, (1,)),
    "n_examples": (int, (0, 4, 16)),
    "sharpness": (float, (50.0,)),
    "dtype": (str, ("float64",)),
    "mixture": (str, ("dirichlet",)),
    "ambiguous_share": (float, (0.0, 0.25)),
    "noise_share": (float, (0.0, 0.2)),
}


def _config(values: dict[str, Any], n_prompts: int, seed: int) -> SweepConfig:
    return SweepConfig(**{name: AXES[name][0](values[name]) for name in AXES},
                       n_prompts=int(n_prompts), seed=int(seed)).validate()


def _axes(values: dict[str, Sequence]) -> dict[str, tuple]:
    unknown = set(values) - set(AXES)
    if unknown:
        raise SweepError(f"unknown sweep parameter(s): {sorted(unknown)}")
    out = {name: tuple(values.get(name, default)) for name, (_, default) in AXES.items()}
    for name, vals in out.items():
        if not vals:
            raise SweepError(f"{name}: needs at least one value")
    return out


def grid(values: dict[str, Sequence], n_prompts: int = 4, seed: int = 0) -> list[SweepConfig]:
    """Every combination of the value lists (unlisted parameters take ``AXES`` defaults)."""
    axes = _axes(values)
    names = list(axes)
    return [_config(dict(zip(names, combo)), n_prompts, seed + i)
            for i, combo in enumerate(itertools.product(*(axes[n] for n in names)))]


def random_configs(values: dict[str, Sequence], count: int, n_prompts: int = 4, seed: int = 0) -> list[SweepConfig]:
    """``count`` configurations, each parameter drawn uniformly from its value list."""
    if count < 1:
        raise SweepError(f"--random: needs a count >= 1, got {count}")
    axes = _axes(values)
    rng = np.random.default_rng(seed)
    return [_config({n: vals[int(rng.integers(0, len(vals)))] for n, vals in axes.items()}, n_prompts, seed + i)
            for i in range(count)]


# Named unions of grids. "figures" makes the README figures: error vs sharpness, error vs
# prompt length, d_model vs m*n, and calibration.
PRESETS: dict[str, list[dict[str, Any]]] = {
    "smoke": [
        dict(vocab_size=[4], n_tasks=[1, 3], slots=[1, 2], n_examples=[0, 6], dtype=["float32", "float64"],
             ambiguous_share=[0.25], noise_share=[0.2], n_prompts=2),
    ],
    "figures": [
        dict(vocab_size=[8], n_tasks=[3], slots=[1], n_examples=[32], dtype=["float32", "float64"],
             sharpness=[2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 50, 64, 80, 100],
             ambiguous_share=[0.25], noise_share=[0.1], n_prompts=4),
        dict(vocab_size=[8], n_tasks=[3], slots=[2], dtype=["float32", "float64"],
             n_examples=[1, 3, 7, 15, 31, 63, 127, 255, 511, 1023], ambiguous_share=[0.25], noise_share=[0.1],
             n_prompts=2),
        dict(vocab_size=[4], n_tasks=[2], slots=[1], n_examples=[1, 4, 16, 64, 256, 1024], ambiguous_share=[0.25],
             noise_share=[0.1], n_prompts=1),
        dict(vocab_size=[16], n_tasks=[8], slots=[1], n_examples=[1, 4, 16, 64, 256], ambiguous_share=[0.25],
             noise_share=[0.1], n_prompts=1),
        dict(vocab_size=[16], n_tasks=[2, 3, 4, 6], slots=[1], n_examples=[48], ambiguous_share=[0.0],
             noise_share=[0.0, 0.25], n_prompts=16),
    ],
}

# "scale" (benchmarks/sweep_scale.py): 100,368 random prompts over 338 random task sets, both dtypes, many
# prompts per model (a sweep's cost is mostly moving each model's padded weights); small vocabularies give
# duplicate tables (d = 2: four 1-slot tables); 1,040 prompts of 1,024 to 4,096 tokens.
PRESETS["scale"] = [
    dict(vocab_size=[2, 4], n_tasks=[1, 3, 6], slots=[1, 3], max_arity=[2], n_examples=[0, 8, 40],
         dtype=["float32", "float64"], ambiguous_share=[0.0, 0.3], noise_share=[0.0, 0.2], n_prompts=256),
    dict(vocab_size=[8], n_tasks=[2, 4], slots=[2], n_examples=[4, 24], dtype=["float32", "float64"],
         ambiguous_share=[0.0, 0.3], noise_share=[0.0, 0.2], n_prompts=800),
    dict(vocab_size=[4, 8], n_tasks=[2, 4], slots=[2], n_examples=[255, 511], dtype=["float32", "float64"],
         ambiguous_share=[0.3], noise_share=[0.2], n_prompts=64),
    dict(vocab_size=[4], n_tasks=[2], slots=[2], n_examples=[1023], dtype=["float32", "float64"],
         ambiguous_share=[0.3], noise_share=[0.2], n_prompts=8),
]


def preset(name: str, seed: int = 0) -> list[SweepConfig]:
    if name not in PRESETS:
        raise SweepError(f"--preset: unknown preset {name!r}; choose from {sorted(PRESETS)}")
    configs: list[SweepConfig] = []
    for spec in PRESETS[name]:
        spec = dict(spec)
        n_prompts = spec.pop("n_prompts", 4)
        configs += grid(spec, n_prompts=n_prompts, seed=seed + 1000 * len(configs))
    return configs


# ---------------------------------------------------------------------------------------------
# The prediction at every prefix, in O(m K) exact arithmetic.

# ---------------------------------------------------------------------------------------------
# Running a sweep.

@dataclass
class _Case:
    """A configuration in flight: its model, prompts and the readouts gathered so far."""

    index: int
    config: SweepConfig
    tasks: TaskSet
    model: Any
    samples: list
    padded: Any
    shape: Any
    chunks: list[tuple[int, int]]
    readouts: dict[int, np.ndarray]
    build_seconds: float
    run_seconds: float = 0.0


def _prepare(index: int, config: SweepConfig, perturb: float) -> _Case:
    start = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    tasks = random_task_set(rng, config.vocab_size, config.n_tasks, config.slots, config.max_arity)
    samples = [sample_prompt(rng, tasks, config.n_examples, mixture_shares(config.mixture, config.n_tasks, rng),
                             config.ambiguous_share, config.noise_share) for _ in range(config.n_prompts)]
    model = build(tasks, max_examples=config.n_examples, sharpness=config.sharpness)
    params = model.params
    if perturb:
        noise = np.random.default_rng(config.seed + 1)
        params = jax.tree_util.tree_map(lambda a: a + perturb * noise.standard_normal(a.shape), params)
    shape = padded_shape(model.config)
    padded = pad_params(params, model.config, shape)
    return _Case(index, config, tasks, model, samples, padded, shape, [], {}, time.perf_counter() - start)


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _finish(case: _Case, runner: ShardedRunner) -> dict:
    start = time.perf_counter()
    config, tasks, model = case.config, case.tasks, case.model
    prompts = [sample.prompt for sample in case.samples]
    comparisons = compare(model, prompts, config.dtype, readouts=[case.readouts[p] for p in range(len(prompts))])
    errors = [c.max_error for c in comparisons]
    query_errors = [float(c.errors[-1]) for c in comparisons]
    kl_examples, kl_votes, points = [], [], []
    counts = {"examples": 0, "ambiguous": 0, "noise": 0}
    for sample, comparison in zip(case.samples, comparisons):
        for key, value in realized_counts(tasks, sample.prompt).items():
            counts[key] += value
        answers = [t(sample.prompt.query) for t in tasks.tasks]
        probabilities = comparison.outputs[-1]
        votes = [float(x) for x in task_mixture(tasks, sample.prompt.examples)]
        kl_votes.append(calibration_kl(votes, answers, probabilities))
        shares = sample.example_shares
        if shares is not None:
            kl_examples.append(calibration_kl(shares, answers, probabilities))
            by_vote = answer_distribution(votes, answers)
            for answer, share in answer_distribution(shares, answers).items():
                points.append([share, by_vote[answer], float(probabilities[answer])])
    error = max(errors)
    bound = comparisons[0].bound   # every prompt of a configuration has config.prompt_length tokens
    holds = bool(bound.holds)
    violated = holds and not error <= bound.total
    task_examples = counts["examples"] - counts["noise"]
    check_seconds = time.perf_counter() - start
    return {
        "format": RECORD_FORMAT,
        "index": case.index,
        "config": config.to_json(),
        "prompt_length": config.prompt_length,
        "example_length": config.slots + 2,
        "d_model": model.config.d_model,
        "slots_read": len(model.tasks.slots_read),
        "n_params": model.n_params,
        "model_config": model.config.to_json(),
        "compiled_shape": case.shape.to_json(),
        "max_abs_error": _finite_or_none(error),
        "max_abs_error_query": _finite_or_none(max(query_errors)),
        "bound": bound.total if holds else None,
        "bound_leak": _finite_or_none(bound.leak),
        "bound_rounding": bound.rounding if holds else None,
        "bound_holds": holds,
        "error_over_bound": error / bound.total if holds and math.isfinite(error) and bound.total > 0 else None,
        "violated": bool(violated or not math.isfinite(error)),
        "realized": {**counts,
                     "ambiguous_share": counts["ambiguous"] / task_examples if task_examples else None,
                     "noise_share": counts["noise"] / counts["examples"] if counts["examples"] else None},
        "calibration": {
            "kl_example_shares_mean": _finite_or_none(float(np.mean(kl_examples))) if kl_examples else None,
            "kl_example_shares_max": _finite_or_none(max(kl_examples)) if kl_examples else None,
            "kl_vote_shares_max": _finite_or_none(max(kl_votes)),
            "points": points,
        },
        "seconds": {"build": case.build_seconds, "run": case.run_seconds, "check": check_seconds,
                    "total": case.build_seconds + case.run_seconds + check_seconds},
        "devices": runner.n_devices,
        "executor": runner.executor,
    }


def run_sweep(configs: Sequence[SweepConfig], runner: ShardedRunner | None = None, perturb: float = 0.0,
              on_progress: Callable[[int, int], None] | None = None) -> Iterator[dict]:
    """Yield one record per configuration (in completion order; ``record["index"]`` is its position).

    Configurations are ordered so that models of one padded shape and dtype run
    together: each batched call stacks up to ``runner.items_per_call`` (model, prompt
    batch) items, sharded over ``runner``'s devices. ``perturb`` adds seeded Gaussian
    noise of that size to every weight (to see the checks catch a broken model).
    """
    runner = runner or ShardedRunner()
    order = sorted(range(len(configs)), key=lambda i: (configs[i].dtype, configs[i].n_tasks, configs[i].vocab_size,
                                                         configs[i].prompt_length, configs[i].slots,
                                                         configs[i].n_prompts, i))
    pending: list[tuple[_Case, int]] = []   # (case, chunk number) waiting for the current call
    pending_key: tuple | None = None
    open_cases: dict[int, _Case] = {}
    done = 0

    def flush() -> list[dict]:
        nonlocal pending, pending_key
        if not pending:
            return []
        shape, dtype, batch = pending_key  # type: ignore[misc]
        items = []
        for case, chunk in pending:
            start, stop = case.chunks[chunk]
            tokens = np.full((batch, shape.n_ctx), case.tasks.bos, dtype=np.int32)
            for row, sample in enumerate(case.samples[start:stop]):
                ids = tokenize(case.tasks, sample.prompt)
                tokens[row, : len(ids)] = ids
            items.append(Item(case.padded, tokens))
        readouts, seconds = runner.run(shape, dtype, items, models=runner.items_per_call(shape, batch))
        finished = []
        for (case, chunk), readout in zip(pending, readouts):
            start, stop = case.chunks[chunk]
            for row in range(stop - start):
                case.readouts[start + row] = readout[row]
            case.run_seconds += seconds / len(pending)
            if len(case.readouts) == len(case.samples):
                finished.append(_finish(open_cases.pop(case.index), runner))
        pending, pending_key = [], None
        return finished

    for i in order:
        case = _prepare(i, configs[i], perturb)
        open_cases[i] = case
        batch = runner.prompts_per_item(case.shape, case.config.n_prompts)
        case.chunks = [(s, min(s + batch, len(case.samples))) for s in range(0, len(case.samples), batch)]
        key = (case.shape, case.config.dtype, batch)
        for chunk in range(len(case.chunks)):
            if pending and key != pending_key:
                for record in flush():
                    done += 1
                    on_progress and on_progress(done, len(configs))
                    yield record
            pending.append((case, chunk))
            pending_key = key
            if len(pending) == runner.items_per_call(case.shape, batch):
                for record in flush():
                    done += 1
                    on_progress and on_progress(done, len(configs))
                    yield record
    for record in flush():
        done += 1
        on_progress and on_progress(done, len(configs))
        yield record


# ---------------------------------------------------------------------------------------------
# Records: JSON Lines and a summary table.

def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None`` (strict JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_records(records: Iterable[dict], path: str, force: bool = True) -> Iterator[dict]:
    """Write each record as one JSON line as it arrives, passing it on.

    The lines go (flushed) to a temporary file beside ``path`` that replaces it only when
    every record is written (``superpose.files.atomic_write``; ``force=False`` refuses an
    existing ``path``), so an interrupted sweep never leaves a truncated file in its place.
    """
    with atomic_write(path, force=force) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            record = json_safe(record)
            f.write(json.dumps(record, allow_nan=False) + "\n")
            f.flush()
            yield record


def read_records(path: str) -> list[dict]:
    """Read a sweep file written by ``write_records``; ``InputFileError`` names the bad line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise InputFileError(f"SWEEP: file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(f"SWEEP: cannot read {path}: {e}") from None
    records = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputFileError(f"SWEEP: {path} line {n} is not valid JSON ({e.msg})") from None
        if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
            raise InputFileError(f"SWEEP: {path} line {n} is not a {RECORD_FORMAT} record")
        records.append(record)
    if not records:
        raise InputFileError(f"SWEEP: {path} holds no records")
    return records


def _fmt(x: float | None, spec: str = ".2e") -> str:
    return "-" if x is None else format(x, spec)


def summary_table(records: Sequence[dict]) -> str:
    """One row per (dtype, sharpness): configurations, bounds that hold, worst error, bound and ratio."""
    rows: dict[tuple, list[dict]] = {}
    for r in records:
        rows.setdefault((r["config"]["dtype"], r["config"]["sharpness"]), []).append(r)
    header = (f"{'dtype':<8} {'sharpness':>9} {'configs':>7} {'bound holds':>11} {'max error':>10} "
              f"{'max bound':>10} {'max err/bound':>13} {'max T':>6} {'max d_model':>11} {'violations':>10}")
    lines = [header, "-" * len(header)]
    for (dtype, sharpness), group in sorted(rows.items()):
        errors = [r["max_abs_error"] for r in group if r["max_abs_error"] is not None]
        bounds = [r["bound"] for r in group if r["bound"] is not None]
        ratios = [r["error_over_bound"] for r in group if r["error_over_bound"] is not None]
        lines.append(
            f"{dtype:<8} {sharpness:>9g} {len(group):>7} {sum(r['bound_holds'] for r in group):>11} "
            f"{_fmt(max(errors) if errors else None):>10} {_fmt(max(bounds) if bounds else None):>10} "
            f"{_fmt(max(ratios) if ratios else None, '.3g'):>13} {max(r['prompt_length'] for r in group):>6} "
            f"{max(r['d_model'] for r in group):>11} {sum(r['violated'] for r in group):>10}")
    return "\n".join(lines)


def violation_report(records: Sequence[dict]) -> str:
    """A loud multi-line message naming every configuration whose bound was violated ('' if none)."""
    bad = [r for r in records if r["violated"]]
    if not bad:
        return ""
    lines = ["!" * 78, f"!!! BOUND VIOLATED in {len(bad)} of {len(records)} configurations", "!" * 78]
    for r in bad[:20]:
        c = r["config"]
        lines.append(f"  config {r['index']}: d={c['vocab_size']} K={c['n_tasks']} s={c['slots']} "
                     f"m={c['n_examples']} beta={c['sharpness']:g} {c['dtype']} seed={c['seed']}: "
                     f"error {_fmt(r['max_abs_error']) if r['max_abs_error'] is not None else 'NaN or inf'} "
                     f"> bound {_fmt(r['bound'])}")
    if len(bad) > 20:
        lines.append(f"  ... and {len(bad) - 20} more")
    return "\n".join(lines)


__all__ = ["SweepConfig", "SweepError", "AXES", "PRESETS", "grid", "random_configs", "preset", "run_sweep",
           "write_records", "read_records", "summary_table", "violation_report"]
