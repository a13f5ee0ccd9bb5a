"""``superpose bench`` (``make bench``): speed, FLOP/s, compile time and memory of the forward pass.

This program lives in the repository's ``benchmarks/``, not in the library:
``superpose bench`` runs it from a source checkout, and so does
``python benchmarks/bench.py [options]``. Every measurement is taken in one run, on one
machine, and written to JSON:

* **machine**: CPU model, cores, memory, JAX backend and devices, load average;
* **dense matmul**: FLOP/s of a jitted ``n x n`` matrix product (the machine's ceiling
  for this dtype as XLA reaches it);
* **throughput**: prompts per second of the executor (``superpose.model``: batched,
  dense attention up to 256 tokens, block by block and for the live heads only beyond,
  the batch split over one CPU device per core (``use_all_cores``), and again on one
  device), of TransformerLens's
  ``HookedTransformer`` (CPU torch, float64, the same weights and batch) and of the NumPy
  reference (``superpose.verify.numpy_forward``, one prompt at a time), and the ratios,
  at several prompt lengths;
* **scaling with T** (256 up to 16384) and **with K** (tasks, up to 32): seconds per
  forward pass, achieved FLOP/s and its share of the dense-matmul ceiling, compile
  seconds, XLA's planned peak memory (``compiled.memory_analysis()``: arguments +
  outputs + temporaries), the process's measured resident-memory high-water mark during
  the call, the max-abs error against the analytic prediction and the bound; then growth
  exponents fitted by least squares on log-log axes (T >= 1024);
* **compiled programs** of the Hypothesis tests (``pytest -m hypothesis`` in a
  subprocess; ``superpose.executor.PROGRAM_LOG`` counts them).

A point is run only if XLA's planned peak memory is below ``memory_fraction`` of the
memory available when the benchmark starts; larger points are reported as not fitting,
with the memory they would need. FLOPs are those of the matrix products as executed:
dense attention computes all ``T x T`` scores (the mask is applied afterwards); the
block-wise path computes the visible blocks only, ``q k^T`` twice (max, then sums), for
the heads the program computes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from superpose.construct.build import ModelConfig, build
from superpose.executor import attention_block
from superpose.setting import SuperposeError, tokenize
from superpose.verify.sampling import mixture_shares, random_task_set, sample_prompt

GiB = 2.0 ** 30


class BenchError(SuperposeError):
    """A benchmark option is out of range."""


@dataclass(frozen=True)
class BenchOptions:
    dtype: str = "float64"
    vocab_size: int = 8
    slots: int = 2
    sharpness: float = 50.0
    throughput_lengths: tuple[int, ...] = (256, 1024, 4096)
    throughput_tasks: int = 4
    lengths: tuple[int, ...] = (256, 512, 1024, 2048, 4096, 8192, 16384)
    length_tasks: int = 2
    tasks: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    tasks_length: int = 1024
    matmul_size: int = 2048
    memory_fraction: float = 0.5
    repeats: int = 3
    numpy_max_prompts: int = 4
    lens: bool = True
    hypothesis_suite: str | None = "tests"

    def validate(self) -> "BenchOptions":
        example_length = self.slots + 2
        for T in (*self.throughput_lengths, *self.lengths, self.tasks_length):
            if T < 2 * example_length or T % example_length:
                raise BenchError(f"prompt length {T}: must be a multiple of s + 2 = {example_length} "
                                 f"and at least {2 * example_length}")
        if not 0 < self.memory_fraction <= 1:
            raise BenchError(f"--memory-fraction: must lie in (0, 1], got {self.memory_fraction}")
        if self.dtype not in ("float32", "float64"):
            raise BenchError(f"--dtype: must be float32 or float64, got {self.dtype!r}")
        if min(self.tasks) < 1 or self.throughput_tasks < 1 or self.length_tasks < 1:
            raise BenchError("task counts must be >= 1")
        if self.repeats < 1 or self.matmul_size < 1:
            raise BenchError("--repeats and the matmul size must be >= 1")
        return self


QUICK = BenchOptions(throughput_lengths=(64, 256), lengths=(64, 128, 256), tasks=(1, 2, 4), tasks_length=128,
                     matmul_size=512, repeats=1, numpy_max_prompts=2, hypothesis_suite=None)


# ---------------------------------------------------------------------------------------------
# Machine and memory.

def _proc_bytes(path: str, key: str) -> float:
    """A ``key:  N kB`` field of a /proc file (``/proc/meminfo``, ``/proc/self/status``) in bytes."""
    with open(path) as f:
        for line in f:
            if line.startswith(key + ":"):
                return float(line.split()[1]) * 1024
    return math.nan


def _meminfo(key: str) -> float:
    return _proc_bytes("/proc/meminfo", key)


def _status(key: str) -> float:
    return _proc_bytes("/proc/self/status", key)


def _reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (VmHWM) of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def machine_info() -> dict:
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(_meminfo("MemTotal") / GiB, 1),
        "memory_available_gib": round(_meminfo("MemAvailable") / GiB, 1),
        "platform": platform.platform(), "python": platform.python_version(), "jax": jax.__version__,
        "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
        "load_average": list(os.getloadavg()),
    }


# ---------------------------------------------------------------------------------------------
# Timing helpers.

def timed_calls(fn: Callable[[], Any], repeats: int, budget: float = 10.0) -> list[float]:
    """Seconds of up to ``repeats`` calls of ``fn`` (each blocking until its result is ready);
    no further calls once ``budget`` seconds have been spent (long calls are timed once)."""
    times: list[float] = []
    while len(times) < repeats and (not times or sum(times) < budget):
        start = time.perf_counter()
        out = fn()
        if hasattr(out, "block_until_ready"):
            out.block_until_ready()
        times.append(time.perf_counter() - start)
    return times


def best_seconds(fn: Callable[[], Any], repeats: int, budget: float = 10.0) -> float:
    """The fastest of ``timed_calls``."""
    return min(timed_calls(fn, repeats, budget))


def fit_exponent(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Slope of ``log y`` against ``log x`` by least squares (``None`` with fewer than 2 points)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y and y > 0]
    if len(pts) < 2 or len({p[0] for p in pts}) < 2:
        return None
    return float(np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)[0])


def forward_flops(config: ModelConfig, batch: int, length: int,
                  heads: tuple[tuple[int, ...], ...] | None = None) -> int:
    """FLOPs of the matrix products of one forward pass as the executor runs it: all T x T
    scores on the dense path, the visible blocks (``q k^T`` twice) on the block-wise path;
    for the computed heads only (``heads``, per layer; default all)."""
    T, D, dh, M = length, config.d_model, config.d_head, config.d_mlp
    block = attention_block(T)
    total = 2 * T * D * config.d_out
    for layer in range(config.n_layers):
        H = config.n_heads if heads is None else len(heads[layer])
        if block >= T:
            attention = 2 * 2 * H * T * T * dh                  # q k^T and (exp) v
        else:
            n = -(-T // block)
            pairs = n * (n + 1) // 2 * block * block            # (query, key) pairs in the visible blocks
            attention = 3 * 2 * H * pairs * dh                  # q k^T for the max, again for the sums, (exp) v
        total += (3 * 2 * T * D * H * dh      # q, k, v projections
                  + attention
                  + 2 * T * H * dh * D        # output projection
                  + 2 * 2 * T * D * M)        # MLP in and out
    return batch * total


def dense_matmul_flops(n: int, dtype: str, repeats: int) -> dict:
    """FLOP/s of a jitted ``n x n @ n x n`` product (``2 n^3`` FLOPs)."""
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(dtype == "float64"):
        rng = np.random.default_rng(0)
        a = jnp.asarray(rng.standard_normal((n, n)), dtype=dtype)
        b = jnp.asarray(rng.standard_normal((n, n)), dtype=dtype)
        product = jax.jit(lambda x, y: jnp.dot(x, y, precision=jax.lax.Precision.HIGHEST))
        product(a, b).block_until_ready()
        seconds = best_seconds(lambda: product(a, b), max(repeats, 2))
    return {"n": n, "dtype": dtype, "seconds": seconds, "flops_per_second": 2 * n ** 3 / seconds}


# ---------------------------------------------------------------------------------------------
# One measured point: a model, a batch of prompts, compile, memory, time, error.

@dataclass
class _Case:
    model: Any
    prompts: list
    tokens: np.ndarray


def _case(options: BenchOptions, n_tasks: int, length: int, batch: int, seed: int) -> _Case:
    rng = np.random.default_rng(seed)
    tasks = random_task_set(rng, options.vocab_size, n_tasks, options.slots)
    m = length // (options.slots + 2) - 1
    model = build(tasks, max_examples=m, sharpness=options.sharpness)
    prompts = [sample_prompt(rng, tasks, m, mixture_shares("dirichlet", n_tasks, rng), 0.25, 0.1).prompt
               for _ in range(batch)]
    tokens = np.stack([tokenize(tasks, p) for p in prompts]).astype(np.int32)
    return _Case(model, prompts, tokens)


def _max_error(case: _Case, readout: np.ndarray) -> float:
    """The largest error against the analytic prediction over the case's prompts (``verify.compare``)."""
    from superpose.verify.compare import compare

    return max(c.max_error for c in compare(case.model, case.prompts, readouts=list(readout)))


def measure_forward(options: BenchOptions, n_tasks: int, length: int, batch: int, memory_limit: float,
                    seed: int = 0, ceiling: float | None = None, one_device: bool = False) -> dict:
    """Compile, check the memory plan against ``memory_limit``, then time and check one forward pass
    of the executor (``superpose.executor.compiled_forward``, as ``superpose.model.run_tokens`` runs it)."""
    import jax
    import jax.numpy as jnp

    from superpose.model import compiled_forward, program_inputs, program_key

    case = _case(options, n_tasks, length, batch, seed)
    config, dtype = case.model.config, options.dtype
    key = program_key(case.model, batch, length, dtype)   # as superpose.model.run_tokens picks it
    if one_device:
        key = dataclasses.replace(key, devices=1)
    live = key.heads
    point: dict[str, Any] = {"T": length, "K": n_tasks, "batch": batch,
                             "block": key.block if key.block < length else None,
                             "d_model": config.d_model, "n_heads": config.n_heads, "d_head": config.d_head,
                             "d_mlp": config.d_mlp, "n_params": case.model.n_params,
                             "heads_computed": config.n_layers * config.n_heads if live is None else sum(map(len, live)),
                             "heads_total": config.n_layers * config.n_heads, "devices": key.devices,
                             "flops": forward_flops(config, batch, length, live)}
    with jax.enable_x64(dtype == "float64"):
        jax.clear_caches()  # time a real compile, not a cache hit
        params, tokens = program_inputs(case.model, key, case.tokens)
        from superpose import executor
        executor.PROGRAMS.pop(key, None)
        start = time.perf_counter()
        compiled = compiled_forward(key)
        point["compile_seconds"] = time.perf_counter() - start
        stats = compiled.memory_analysis()
        planned = (stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
                   - stats.alias_size_in_bytes)
        point["xla_peak_bytes"] = int(planned)
        point["xla_temp_bytes"] = int(stats.temp_size_in_bytes)
        if planned > memory_limit:
            point.update(fits=False, note=f"needs {planned / GiB:.1f} GiB > limit {memory_limit / GiB:.1f} GiB")
            return point
        tracked = _reset_peak_rss()
        rss_before = _status("VmHWM")  # = the resident set right after the reset
        readout = np.asarray(compiled(params, tokens))  # first run: its memory is tracked
        point["rss_peak_increase_bytes"] = int(_status("VmHWM") - rss_before) if tracked else None
        times = timed_calls(lambda: compiled(params, tokens), options.repeats)
    seconds = min(times)
    bound = case.model.error_bound(dtype, prompt_length=length)
    point.update(fits=True, seconds=seconds, prompts_per_second=batch / seconds,
                 flops_per_second=point["flops"] / seconds,
                 max_abs_error=_max_error(case, readout[..., : case.model.tasks.vocab_size]),
                 bound=bound.total if bound.holds else None)
    if ceiling:
        point["share_of_matmul_ceiling"] = point["flops_per_second"] / ceiling
    point["within_bound"] = point["bound"] is not None and point["max_abs_error"] <= point["bound"]
    return point


def measure_lens(options: BenchOptions, n_tasks: int, length: int, batch: int, seed: int = 0) -> dict:
    """Prompts per second of TransformerLens's ``HookedTransformer`` (CPU torch, float64) on the same
    weights and the same batch as ``measure_forward``; conversion excluded, one warm-up call."""
    import torch

    from superpose.verify.lens import hooked_readout, to_hooked_transformer

    case = _case(options, n_tasks, length, batch, seed)
    hooked = to_hooked_transformer(case.model)
    hooked_readout(hooked, case.tokens[:1, : 2 * (options.slots + 2)])   # warm up torch
    readout = None

    def call():
        nonlocal readout
        readout = hooked_readout(hooked, case.tokens)

    seconds = best_seconds(call, options.repeats, budget=30.0)
    return {"T": length, "K": n_tasks, "batch": batch, "torch_threads": torch.get_num_threads(),
            "seconds": seconds, "prompts_per_second": batch / seconds,
            "max_abs_error": _max_error(case, readout[..., : case.model.tasks.vocab_size])}


def measure_numpy(options: BenchOptions, n_tasks: int, length: int, seed: int = 0) -> dict:
    """Prompts per second of the NumPy reference executor (one prompt at a time)."""
    from superpose.verify.numpy_forward import forward as numpy_forward

    n = options.numpy_max_prompts
    case = _case(options, n_tasks, length, 1, seed)
    dtype = np.float64 if options.dtype == "float64" else np.float32
    numpy_forward(case.model.params, case.tokens[0, : 2 * (options.slots + 2)], dtype=dtype)  # warm up NumPy
    done, start = 0, time.perf_counter()
    while done < n:
        readout = numpy_forward(case.model.params, case.tokens[0], dtype=dtype)
        done += 1
        if time.perf_counter() - start > 20.0:  # long prompts: one or two are enough
            break
    seconds = (time.perf_counter() - start) / done
    return {"T": length, "K": n_tasks, "prompts_timed": done, "seconds_per_prompt": seconds,
            "prompts_per_second": 1.0 / seconds, "max_abs_error": _max_error(case, readout[None])}


def hypothesis_compiles(tests: str) -> dict:
    """Run every Hypothesis test (``pytest -m hypothesis``) in a subprocess; count the programs they ran."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "programs.json")
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", tests, "-q", "-m", "hypothesis", "-p",
                               "no:cacheprovider"], env={**os.environ, "SUPERPOSE_PROGRAM_REPORT": report},
                              capture_output=True, text=True)
        seconds = time.perf_counter() - start
        programs = json.load(open(report)) if os.path.exists(report) else None
    summary = [line for line in done.stdout.splitlines() if line.strip()]
    return {"suite": f"{tests} -m hypothesis", "exit_code": done.returncode, "seconds": seconds,
            "pytest_summary": summary[-1] if summary else "",
            "compiled_programs": None if programs is None else len(programs), "programs": programs}


# ---------------------------------------------------------------------------------------------
# The whole benchmark.

def _exponents(points: list[dict], x: str, threshold: int) -> dict:
    ran = [p for p in points if p["fits"]]
    large = [p for p in ran if p[x] >= threshold]
    return {
        "time_all": fit_exponent([p[x] for p in ran], [p["seconds"] for p in ran]),
        f"time_{x}_ge_{threshold}": fit_exponent([p[x] for p in large], [p["seconds"] for p in large]),
        f"xla_memory_{x}_ge_{threshold}": fit_exponent([p[x] for p in points if p[x] >= threshold],
                                                       [p["xla_peak_bytes"] for p in points if p[x] >= threshold]),
        f"rss_{x}_ge_{threshold}": fit_exponent([p[x] for p in large],
                                                [p.get("rss_peak_increase_bytes") for p in large]),
    }


def run_bench(options: BenchOptions, log: Callable[[str], None] = lambda s: None) -> dict:
    options = options.validate()
    from superpose.executor import use_all_cores

    use_all_cores()   # one JAX device per core, as TransformerLens (torch) and NumPy (BLAS) use every core
    memory_limit = options.memory_fraction * _meminfo("MemAvailable")
    result: dict[str, Any] = {"format": "superpose-bench/2", "options": {**options.__dict__},
                              "machine": machine_info(), "memory_limit_bytes": memory_limit}
    log(f"dense matmul {options.matmul_size}^3 ...")
    result["matmul"] = {dt: dense_matmul_flops(options.matmul_size, dt, options.repeats)
                        for dt in ("float32", "float64")}
    ceiling = result["matmul"][options.dtype]["flops_per_second"]

    throughput = []
    for T in options.throughput_lengths:
        K = options.throughput_tasks
        batch = max(1, min(16, 1 << int(math.log2(max(1.0, GiB / (K * T * T * 8))))))
        row: dict[str, Any] = {"T": T, "K": K, "batch": batch}
        log(f"throughput T={T}: JAX, batch {batch} ...")
        row["jax"] = measure_forward(options, K, T, batch, memory_limit, ceiling=ceiling)
        if row["jax"]["devices"] > 1:
            log(f"throughput T={T}: JAX on one device, batch {batch} ...")
            row["jax_one_device"] = measure_forward(options, K, T, batch, memory_limit, ceiling=ceiling,
                                                    one_device=True)
        if options.lens:
            log(f"throughput T={T}: TransformerLens, batch {batch} ...")
            row["lens"] = measure_lens(options, K, T, batch)
        log(f"throughput T={T}: NumPy reference ...")
        row["numpy"] = measure_numpy(options, K, T)
        fits = row["jax"]["fits"]
        row["ratio_numpy"] = row["jax"]["prompts_per_second"] / row["numpy"]["prompts_per_second"] if fits else None
        row["ratio_lens"] = (row["jax"]["prompts_per_second"] / row["lens"]["prompts_per_second"]
                             if fits and options.lens else None)
        throughput.append(row)
    result["throughput"] = throughput

    points = []
    for T in options.lengths:
        log(f"scaling with T: T={T} ...")
        points.append(measure_forward(options, options.length_tasks, T, 1, memory_limit, ceiling=ceiling))
        if not points[-1]["fits"]:
            break
    result["by_length"], result["length_exponents"] = points, _exponents(points, "T", 1024)
    # where the T^2 attention dominates the work that is linear in T (projections, MLPs)
    result["length_exponents"]["time_T_ge_4096"] = _exponents(points, "T", 4096)["time_T_ge_4096"]

    points = []
    for K in options.tasks:
        log(f"scaling with K: K={K} ...")
        points.append(measure_forward(options, K, options.tasks_length, 1, memory_limit, ceiling=ceiling))
        if not points[-1]["fits"]:
            break
    result["by_tasks"] = points
    result["tasks_exponents"] = {**_exponents(points, "K", 4),
                                 "n_params": fit_exponent([p["K"] for p in points], [p["n_params"] for p in points])}
    if options.hypothesis_suite:
        if os.path.exists(options.hypothesis_suite):
            log("Hypothesis tests (pytest -m hypothesis) ...")
            result["hypothesis"] = hypothesis_compiles(options.hypothesis_suite)
        else:
            result["hypothesis"] = {"suite": options.hypothesis_suite,
                                    "note": "not found (run from the repository root)"}
    result["load_average_end"] = list(os.getloadavg())
    result["targets"] = _targets(result)
    checked = [p for group in ("by_length", "by_tasks") for p in result[group] if p["fits"]]
    checked += [row["jax"] for row in throughput if row["jax"]["fits"]]
    result["all_within_bound"] = all(p["within_bound"] for p in checked)
    largest = max(checked, key=lambda p: (p["T"] * p["K"], p["T"]), default=None)
    result["largest_checked"] = largest and {k: largest[k] for k in ("T", "K", "batch", "d_model",
                                                                     "n_params", "max_abs_error", "bound")}
    return result


def _targets(result: dict) -> dict:
    """The issue's targets, measured: >= 10x NumPy and TransformerLens at T >= 1024, time ~ T^2 (+-0.1),
    XLA's memory plan ~ T (T >= 1024)."""
    long = [row for row in result["throughput"] if row["T"] >= 1024]
    out: dict[str, Any] = {}
    for peer in ("numpy", "lens"):
        ratios = [row[f"ratio_{peer}"] for row in long if row[f"ratio_{peer}"] is not None]
        out[f"min_ratio_{peer}_T_ge_1024"] = min(ratios) if ratios else None
        out[f"ratio_{peer}_target_met"] = bool(ratios) and min(ratios) >= 10
    e = result["length_exponents"]
    out["time_exponent_T_ge_1024"] = e["time_T_ge_1024"]
    out["time_exponent_target_met"] = e["time_T_ge_1024"] is not None and abs(e["time_T_ge_1024"] - 2) <= 0.1
    out["memory_exponent_T_ge_1024"] = e["xla_memory_T_ge_1024"]
    out["largest_T_run"] = max((p["T"] for p in result["by_length"] if p["fits"]), default=None)
    return out


# ---------------------------------------------------------------------------------------------
# Report.

def _g(x: float | None, spec: str = ".3g") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _mib(x: float | None) -> str:
    return "-" if x is None else f"{x / 2 ** 20:,.0f}"


def _scaling(title: str, points: list[dict]) -> list[str]:
    out = ["", title,
           f"{'T':>6} {'K':>3} {'d_model':>7} {'heads':>7} {'block':>5} {'seconds':>9} {'GFLOP/s':>8} {'% ceiling':>9} "
           f"{'compile s':>9} {'XLA peak MiB':>12} {'RSS peak MiB':>12} {'max error':>9} {'bound':>9}"]
    for p in points:
        if not p["fits"]:
            out.append(f"{p['T']:>6} {p['K']:>3} {p['d_model']:>7}  does not fit: {p['note']}")
            continue
        heads = f"{p['heads_computed']}/{p['heads_total']}"
        out.append(f"{p['T']:>6} {p['K']:>3} {p['d_model']:>7} {heads:>7} {p['block'] or 'dense':>5} {p['seconds']:>9.4f} "
                   f"{p['flops_per_second'] / 1e9:>8.2f} {100 * p.get('share_of_matmul_ceiling', math.nan):>8.1f}% "
                   f"{p['compile_seconds']:>9.2f} {_mib(p['xla_peak_bytes']):>12} "
                   f"{_mib(p.get('rss_peak_increase_bytes')):>12} {_g(p['max_abs_error'], '.1e'):>9} "
                   f"{_g(p['bound'], '.1e'):>9}")
    return out


def target_line(t: dict) -> str:
    """The targets, measured; one with no point measured for it says "not measured" (not MISSED)."""
    parts = []
    for peer, name in (("numpy", "NumPy"), ("lens", "TransformerLens")):
        ratio = t[f"min_ratio_{peer}_T_ge_1024"]
        parts.append(f"JAX/{name} at T >= 1024: not measured" if ratio is None else
                     f"JAX/{name} at T >= 1024 at least {_g(ratio)}x "
                     f"(target 10x: {'met' if t[f'ratio_{peer}_target_met'] else 'MISSED'})")
    exponent = t["time_exponent_T_ge_1024"]
    parts.append("time exponent for T >= 1024: not measured (fewer than two points)" if exponent is None else
                 f"time ~ T^{_g(exponent, '.2f')} for T >= 1024 (target 2.0 +- 0.1: "
                 f"{'met' if t['time_exponent_target_met'] else 'MISSED'})")
    memory = t["memory_exponent_T_ge_1024"]
    parts.append(f"XLA peak memory ~ T^{_g(memory, '.2f')} (target 1)")
    return (f"Targets: {'; '.join(parts)}; longest prompt run "
            f"{t['largest_T_run'] if t['largest_T_run'] is not None else 'none'} tokens")


def report(result: dict) -> str:
    """The benchmark as text tables."""
    m, o = result["machine"], result["options"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM; jax {m['jax']} on "
             f"{m['backend']} ({len(m['devices'])} device(s)); 1-minute load average "
             f"{m['load_average'][0]:.1f} at the start, {result.get('load_average_end', [math.nan])[0]:.1f} "
             f"at the end (other processes share the cores)",
             f"dtype {o['dtype']}; tasks read random tables, d = {o['vocab_size']}, s = {o['slots']}, "
             f"sharpness {o['sharpness']:g}; memory limit {result['memory_limit_bytes'] / GiB:.1f} GiB", ""]
    for dt, mm in result["matmul"].items():
        lines.append(f"Dense matmul {mm['n']}^3 {dt}: {mm['flops_per_second'] / 1e9:.1f} GFLOP/s")
    lines += ["", "Throughput, same weights and tokens: JAX = superpose.model (batched; the batch split over "
                  "the devices, live heads only beyond 256 tokens), JAX 1 dev = the same on one device, "
                  "TransformerLens = HookedTransformer (CPU torch, float64, batched, every head), "
                  "NumPy = the reference (one prompt at a time, every head)",
              f"{'T':>6} {'K':>3} {'batch':>5} {'heads':>7} {'dev':>3} {'JAX/s':>9} {'JAX 1dev/s':>10} {'TL/s':>9} "
              f"{'NumPy/s':>9} {'JAX/TL':>7} {'JAX/NumPy':>9} {'max error':>9}"]
    for t in result["throughput"]:
        j, n, lens, one = t["jax"], t["numpy"], t.get("lens"), t.get("jax_one_device")
        worst = max([j["max_abs_error"]] * j["fits"] + [n["max_abs_error"]] + ([lens["max_abs_error"]] if lens else [])
                    + ([one["max_abs_error"]] if one and one["fits"] else []))
        heads = f"{j['heads_computed']}/{j['heads_total']}"
        lines.append(f"{t['T']:>6} {t['K']:>3} {t['batch']:>5} {heads:>7} {j['devices']:>3} "
                     f"{_g(j.get('prompts_per_second')):>9} {_g(one and one.get('prompts_per_second')):>10} "
                     f"{_g(lens and lens['prompts_per_second']):>9} {_g(n['prompts_per_second']):>9} "
                     f"{_g(t['ratio_lens']):>7} {_g(t['ratio_numpy']):>9} {_g(worst, '.1e'):>9}")
    lines += _scaling(f"Scaling with prompt length (K = {o['length_tasks']}, batch 1)", result["by_length"])
    e = result["length_exponents"]
    lines.append(f"time ~ T^{_g(e['time_all'], '.2f')} (all), T^{_g(e['time_T_ge_1024'], '.2f')} "
                 f"(T >= 1024), T^{_g(e.get('time_T_ge_4096'), '.2f')} (T >= 4096); XLA peak memory ~ "
                 f"T^{_g(e['xla_memory_T_ge_1024'], '.2f')}; measured RSS ~ T^{_g(e['rss_T_ge_1024'], '.2f')} (T >= 1024)")
    lines += _scaling(f"Scaling with the number of tasks K (T = {o['tasks_length']}, batch 1)", result["by_tasks"])
    e = result["tasks_exponents"]
    lines.append(f"time ~ K^{_g(e['time_all'], '.2f')} (all), K^{_g(e['time_K_ge_4'], '.2f')} (K >= 4); "
                 f"XLA peak memory ~ K^{_g(e['xla_memory_K_ge_4'], '.2f')} (K >= 4); parameters ~ "
                 f"K^{_g(e['n_params'], '.2f')}")
    h = result.get("hypothesis")
    if h:
        lines.append("")
        if h.get("compiled_programs") is not None:
            lines.append(f"Hypothesis tests ({h['suite']}: {h['pytest_summary']}): "
                         f"{h['compiled_programs']} compiled programs")
        else:
            lines.append(f"Hypothesis tests: {h.get('note') or 'no report (exit code ' + str(h['exit_code']) + ')'}")
    lines += ["", target_line(result["targets"])]
    big = result.get("largest_checked")
    if big:
        lines.append(f"\nLargest checked: T = {big['T']}, K = {big['K']}, d_model {big['d_model']}, "
                     f"{big['n_params']:,} parameters: max error {big['max_abs_error']:.1e} <= bound "
                     f"{_g(big['bound'], '.1e')}")
    lines.append(f"Every measured point within its bound: {result['all_within_bound']}")
    return "\n".join(lines)


def write_json(result: dict, path: str, force: bool = True) -> None:
    """Write the result atomically (``superpose.files.atomic_write``; ``force=False`` refuses an existing file)."""
    from superpose.files import atomic_write

    with atomic_write(path, force=force) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, default=float)


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise BenchError(f"{flag}: expected comma-separated integers, got {text!r}") from None


def run_cli(args) -> int:
    """``superpose bench``: the parsed options (``superpose.verify.cli``) to a run, a report and a JSON file."""
    import sys
    from dataclasses import replace

    options = QUICK if args.quick else BenchOptions()
    changes = {"dtype": args.dtype, "memory_fraction": args.memory_fraction}
    if args.lengths:
        changes["lengths"] = _ints(args.lengths, "--lengths")
    if args.tasks:
        changes["tasks"] = _ints(args.tasks, "--tasks")
    if args.throughput_lengths:
        changes["throughput_lengths"] = _ints(args.throughput_lengths, "--throughput-lengths")
    if args.no_hypothesis:
        changes["hypothesis_suite"] = None
    if args.no_lens:
        changes["lens"] = False
    options = replace(options, **{k: v for k, v in changes.items() if v is not None})
    log = (lambda s: print(f"  {s}", file=sys.stderr, flush=True)) if not args.quiet else (lambda s: None)
    result = run_bench(options, log=log)
    print(report(result))
    if args.output:
        write_json(result, args.output, force=args.force)
        print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    import sys

    from superpose.cli import main

    sys.exit(main(["bench", *sys.argv[1:]]))
