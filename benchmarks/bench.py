"""``superpose bench``: speed, FLOP/s, compile time and memory of the forward pass on this machine.

Every measurement is taken in one run, on one machine, and written to JSON:

* **machine**: CPU model, cores, memory, JAX backend and devices;
* **dense matmul**: FLOP/s of a jitted ``n x n`` matrix product (the machine's ceiling
  for this dtype as XLA reaches it);
* **throughput**: prompts per second of the jitted, batched JAX forward pass
  (``superpose.model.forward``) against the NumPy reference executor
  (``superpose.verify.numpy_forward``, one prompt at a time) on the same weights, and
  their ratio, at several prompt lengths;
* **scaling with T** (prompt length 256 up to the largest that fits, aiming at 16384)
  and **with K** (tasks = heads, up to 32): seconds per forward pass, achieved FLOP/s
  and its share of the dense-matmul ceiling, compile seconds, XLA's planned peak
  memory (``compiled.memory_analysis()``: arguments + outputs + temporaries), the
  process's measured resident-memory high-water mark during the call, the kernel's
  share of the CPU time and the memory paged in afresh per call (minor page faults),
  the max-abs error against the analytic prediction and the bound; then growth
  exponents fitted by least squares on log-log axes;
* **where the time goes**: at one length, the seconds of the attention core alone
  (``q k^T``, mask, ``exp``, sums, ``(exp) v`` for all 7 layers) and of ``exp`` alone;
* **compiled shapes** of the Hypothesis property suite (``tests/test_properties.py``,
  run in-process; ``superpose.model.COMPILED_SIGNATURES`` counts one per compile).

A point is run only if XLA's planned peak memory is below ``memory_fraction`` of the
memory available when the benchmark starts; larger points are reported as not fitting,
with the memory they would need. FLOPs are those of the matrix products as executed:
the attention scores are computed for all T x T pairs (the causal mask is applied
afterwards), ``2 * T^2 * d_head`` per head for ``q k^T`` and again for the weighted sum.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import platform
import resource
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from superpose.construct.build import ModelConfig, build
from superpose.setting import SuperposeError, prediction_positions, tokenize
from superpose.verify.sampling import mixture_shares, random_task_set, sample_prompt

GiB = 2.0 ** 30
BREAKDOWN_MAX_LENGTH = 4096  # the attention breakdown materialises [T, T] inputs of its own: keep it moderate


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
    block: int = 256
    repeats: int = 3
    numpy_max_prompts: int = 4
    hypothesis_suite: str | None = "tests/test_properties.py"

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
                     matmul_size=512, repeats=1, numpy_max_prompts=2, hypothesis_suite=None, block=64)


# ---------------------------------------------------------------------------------------------
# Machine and memory.

def _meminfo(key: str) -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return float(line.split()[1]) * 1024
    return math.nan


def _status(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return float(line.split()[1]) * 1024
    return math.nan


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


def forward_flops(config: ModelConfig, batch: int, length: int) -> int:
    """FLOPs of the matrix products of one forward pass as executed (full T x T attention)."""
    T, D, H, dh, M = length, config.d_model, config.n_heads, config.d_head, config.d_mlp
    per_layer = (3 * 2 * T * D * H * dh      # q, k, v projections
                 + 2 * 2 * H * T * T * dh    # q k^T and (exp) v
                 + 2 * T * H * dh * D        # output projection
                 + 2 * 2 * T * D * M)        # MLP in and out
    return batch * (config.n_layers * per_layer + 2 * T * D * config.d_out)


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
    from superpose.verify.analytic import predict

    tasks = case.model.tasks
    worst = 0.0
    for p, prompt in enumerate(case.prompts):
        got = readout[p][prediction_positions(tasks, prompt.n_examples)]
        worst = max(worst, float(np.abs(got - predict(tasks, prompt)).max()))
    return worst


def chunked_flops(config: ModelConfig, batch: int, length: int, block: int) -> int:
    """FLOPs of the matrix products of ``superpose.verify.chunked``: visible blocks only, ``q k^T`` twice."""
    T, D, H, dh, M = length, config.d_model, config.n_heads, config.d_head, config.d_mlp
    n = -(-T // block)
    pairs = n * (n + 1) // 2 * block * block   # (query, key) pairs in the visible blocks
    per_layer = (3 * 2 * T * D * H * dh + 3 * 2 * H * pairs * dh + 2 * T * H * dh * D + 2 * 2 * T * D * M)
    return batch * (config.n_layers * per_layer + 2 * T * D * config.d_out)


def measure_forward(options: BenchOptions, n_tasks: int, length: int, batch: int, memory_limit: float,
                    seed: int = 0, ceiling: float | None = None, executor: str = "standard") -> dict:
    """Compile, check the memory plan against ``memory_limit``, then time and check one forward pass.

    ``executor``: ``standard`` (``superpose.model.forward``, the Flax model) or ``chunked``
    (``superpose.verify.chunked``, attention in blocks of ``options.block``).
    """
    import jax
    import jax.numpy as jnp

    from superpose.model import device_params, forward
    from superpose.verify import chunked

    case = _case(options, n_tasks, length, batch, seed)
    config, dtype = case.model.config, options.dtype
    point: dict[str, Any] = {"executor": executor, "T": length, "K": n_tasks, "batch": batch,
                             "d_model": config.d_model, "d_head": config.d_head, "d_mlp": config.d_mlp,
                             "n_params": case.model.n_params}
    with jax.enable_x64(dtype == "float64"):
        jax.clear_caches()  # time a real compile, not a cache hit
        if executor == "standard":
            params = device_params(case.model, dtype)
            tokens = jnp.asarray(case.tokens)
            start = time.perf_counter()
            compiled = forward.lower(config, params, tokens).compile()
            point["flops"] = forward_flops(config, batch, length)
        else:
            block = min(options.block, length)
            padded = chunked.padded_length(length, block)
            params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=dtype),
                                            chunked.context_params(case.model, padded))
            tokens_np = np.full((batch, padded), case.model.tasks.bos, dtype=np.int32)
            tokens_np[:, :length] = case.tokens
            tokens = jnp.asarray(tokens_np)
            start = time.perf_counter()
            compiled = chunked.lowered(config, params, tokens, block).compile()
            point.update(block=block, flops=chunked_flops(config, batch, padded, block))
        point["compile_seconds"] = time.perf_counter() - start
        stats = compiled.memory_analysis()
        planned = (stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
                   - stats.alias_size_in_bytes)
        point["xla_peak_bytes"] = int(planned)
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        point["xla_flops"] = float(cost["flops"]) if cost and "flops" in cost else None
        if planned > memory_limit:
            point.update(fits=False, note=f"needs {planned / GiB:.1f} GiB > limit {memory_limit / GiB:.1f} GiB")
            return point
        tracked = _reset_peak_rss()
        rss_before = _status("VmHWM")  # = the resident set right after the reset
        readout = np.asarray(compiled(params, tokens))[:, :length]  # first run: its memory is tracked
        point["rss_peak_increase_bytes"] = int(_status("VmHWM") - rss_before) if tracked else None
        usage = resource.getrusage(resource.RUSAGE_SELF)
        times = timed_calls(lambda: compiled(params, tokens), options.repeats)
        after = resource.getrusage(resource.RUSAGE_SELF)
        seconds = min(times)
        user, system = after.ru_utime - usage.ru_utime, after.ru_stime - usage.ru_stime
        # kernel time among all CPU time, and the pages the kernel had to map afresh per call
        # (minor page faults: buffers allocated, first touched and released on every call)
        point["system_cpu_share"] = system / (user + system) if user + system > 0 else None
        point["fresh_bytes_per_call"] = (after.ru_minflt - usage.ru_minflt) * resource.getpagesize() / len(times)
    bound = case.model.error_bound(dtype, prompt_length=length)
    point.update(fits=True, seconds=seconds, prompts_per_second=batch / seconds,
                 flops_per_second=point["flops"] / seconds,
                 max_abs_error=_max_error(case, readout[..., : case.model.tasks.vocab_size]),
                 bound=bound.total if bound.holds else None)
    if ceiling:
        point["share_of_matmul_ceiling"] = point["flops_per_second"] / ceiling
    point["within_bound"] = point["bound"] is not None and point["max_abs_error"] <= point["bound"]
    return point


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


def attention_breakdown(options: BenchOptions, config: ModelConfig, batch: int, length: int, repeats: int) -> dict:
    """Seconds of the attention core (scores, mask, exp, sums, weighted sum) and of exp alone, 7 layers."""
    import jax
    import jax.numpy as jnp

    H, dh, T = config.n_heads, config.d_head, length
    with jax.enable_x64(options.dtype == "float64"):
        rng = np.random.default_rng(1)
        q, k, v = (jnp.asarray(rng.standard_normal((batch, H, T, dh)), dtype=options.dtype) for _ in range(3))
        hi = jax.lax.Precision.HIGHEST

        @jax.jit
        def core(q, k, v):
            out = v
            causal = jnp.tril(jnp.ones((T, T), dtype=bool))
            for _ in range(config.n_layers):
                s = jnp.where(causal, jnp.einsum("bhte,bhue->bhtu", q, k, precision=hi), -jnp.inf)
                e = jnp.exp(s - s.max(axis=-1, keepdims=True))
                out = jnp.einsum("bhtu,bhue->bhte", e, out, precision=hi) / e.sum(axis=-1, keepdims=True)
            return out

        scores = jnp.asarray(rng.standard_normal((batch, H, T, T)) * 0.1, dtype=options.dtype)

        @jax.jit
        def exp_only(s):
            total = jnp.zeros((), s.dtype)
            for i in range(config.n_layers):
                total = total + jnp.exp(s + i).sum()
            return total

        core(q, k, v).block_until_ready()
        exp_only(scores).block_until_ready()
        return {"attention_core_seconds": best_seconds(lambda: core(q, k, v), repeats),
                "exp_seconds": best_seconds(lambda: exp_only(scores), repeats)}


def hypothesis_compiles(suite: str) -> dict:
    """Run the Hypothesis property suite in-process and count the programs it compiled."""
    import pytest

    from superpose import model as executor

    before = set(executor.COMPILED_SIGNATURES)
    start = time.perf_counter()
    output = io.StringIO()
    with contextlib.redirect_stdout(output):  # keep pytest's report out of the benchmark's tables
        code = pytest.main([suite, "-q", "-p", "no:cacheprovider", "-k", "not 4096"])
    new = executor.COMPILED_SIGNATURES - before
    summary = [line for line in output.getvalue().splitlines() if line.strip()]
    return {"suite": suite, "exit_code": int(code), "seconds": time.perf_counter() - start,
            "pytest_summary": summary[-1] if summary else "",
            "compiled_signatures": len(new),
            "signatures": sorted(f"T={sig[1][1]} batch={sig[1][0]} {sig[2]} d_model={sig[0].d_model}"
                                 for sig in new)}


# ---------------------------------------------------------------------------------------------
# The whole benchmark.

EXECUTORS = ("standard", "chunked")


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
    memory_limit = options.memory_fraction * _meminfo("MemAvailable")
    result: dict[str, Any] = {"format": "superpose-bench/1", "options": {**options.__dict__},
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
        for executor in EXECUTORS:
            log(f"throughput T={T}: JAX {executor}, batch {batch} ...")
            row[executor] = measure_forward(options, K, T, batch, memory_limit, ceiling=ceiling, executor=executor)
        log(f"throughput T={T}: NumPy reference ...")
        row["numpy"] = measure_numpy(options, K, T)
        for executor in EXECUTORS:
            row[f"ratio_{executor}"] = (row[executor]["prompts_per_second"] / row["numpy"]["prompts_per_second"]
                                        if row[executor]["fits"] else None)
        throughput.append(row)
    result["throughput"] = throughput

    result["by_length"], result["length_exponents"] = {}, {}
    for executor in EXECUTORS:
        points = []
        for T in options.lengths:
            log(f"scaling with T: {executor}, T={T} ...")
            points.append(measure_forward(options, options.length_tasks, T, 1, memory_limit, ceiling=ceiling,
                                          executor=executor))
            if not points[-1]["fits"]:
                break
        result["by_length"][executor] = points
        result["length_exponents"][executor] = _exponents(points, "T", 1024)

    fitted = [p for p in result["by_length"]["standard"] if p["fits"] and p["T"] <= BREAKDOWN_MAX_LENGTH]
    if fitted:
        last = fitted[-1]
        log(f"attention breakdown at T={last['T']} ...")
        tasks = random_task_set(np.random.default_rng(0), options.vocab_size, options.length_tasks, options.slots)
        shape = build(tasks, max_examples=last["T"] // (options.slots + 2) - 1).config
        breakdown = attention_breakdown(options, shape, 1, last["T"], options.repeats)
        breakdown.update(T=last["T"], forward_seconds=last["seconds"],
                         attention_core_share=breakdown["attention_core_seconds"] / last["seconds"],
                         exp_share=breakdown["exp_seconds"] / last["seconds"])
        result["breakdown"] = breakdown

    result["by_tasks"], result["tasks_exponents"] = {}, {}
    for executor in EXECUTORS:
        points = []
        for K in options.tasks:
            log(f"scaling with K: {executor}, K={K} ...")
            points.append(measure_forward(options, K, options.tasks_length, 1, memory_limit, ceiling=ceiling,
                                          executor=executor))
            if not points[-1]["fits"]:
                break
        result["by_tasks"][executor] = points
        result["tasks_exponents"][executor] = {
            **_exponents(points, "K", 4),
            "n_params": fit_exponent([p["K"] for p in points], [p["n_params"] for p in points]),
        }
    if options.hypothesis_suite:
        if os.path.exists(options.hypothesis_suite):
            log("Hypothesis suite ...")
            result["hypothesis"] = hypothesis_compiles(options.hypothesis_suite)
        else:
            result["hypothesis"] = {"suite": options.hypothesis_suite,
                                    "note": "not found (run from the repository root)"}
    result["load_average_end"] = list(os.getloadavg())
    result["targets"] = _targets(result)
    checked = [p for group in ("by_length", "by_tasks") for pts in result[group].values() for p in pts if p["fits"]]
    checked += [row[e] for row in throughput for e in EXECUTORS if row[e]["fits"]]
    result["all_within_bound"] = all(p["within_bound"] for p in checked)
    largest = max(checked, key=lambda p: (p["T"] * p["K"], p["T"]), default=None)
    result["largest_checked"] = largest and {k: largest[k] for k in ("executor", "T", "K", "batch", "d_model",
                                                                     "n_params", "max_abs_error", "bound")}
    return result


def _targets(result: dict) -> dict:
    """The issue's targets, measured: JAX >= 10x NumPy at T >= 1024, time growing no faster than T^2."""
    long = [row for row in result["throughput"] if row["T"] >= 1024]
    out: dict[str, Any] = {}
    for executor in EXECUTORS:
        ratios = [row[f"ratio_{executor}"] for row in long if row[f"ratio_{executor}"] is not None]
        exponent = result["length_exponents"][executor]["time_T_ge_1024"]
        out[executor] = {"min_ratio_T_ge_1024": min(ratios) if ratios else None,
                         "ratio_target_met": bool(ratios) and min(ratios) >= 10,
                         "time_exponent_T_ge_1024": exponent,
                         "largest_T_run": max((p["T"] for p in result["by_length"][executor] if p["fits"]),
                                              default=None)}
    return out


# ---------------------------------------------------------------------------------------------
# Report.

def _g(x: float | None, spec: str = ".3g") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _mib(x: float | None) -> str:
    return "-" if x is None else f"{x / 2 ** 20:,.0f}"


def _scaling(title: str, points: list[dict]) -> list[str]:
    out = ["", title,
           f"{'executor':<9} {'T':>6} {'K':>3} {'d_model':>7} {'seconds':>9} {'GFLOP/s':>8} {'% ceiling':>9} "
           f"{'compile s':>9} {'XLA peak MiB':>12} {'RSS peak MiB':>12} {'max error':>9} {'bound':>9}"]
    for p in points:
        if not p["fits"]:
            out.append(f"{p['executor']:<9} {p['T']:>6} {p['K']:>3} {p['d_model']:>7}  does not fit: {p['note']}")
            continue
        out.append(f"{p['executor']:<9} {p['T']:>6} {p['K']:>3} {p['d_model']:>7} {p['seconds']:>9.4f} "
                   f"{p['flops_per_second'] / 1e9:>8.2f} {100 * p.get('share_of_matmul_ceiling', math.nan):>8.1f}% "
                   f"{p['compile_seconds']:>9.2f} {_mib(p['xla_peak_bytes']):>12} "
                   f"{_mib(p.get('rss_peak_increase_bytes')):>12} {_g(p['max_abs_error'], '.1e'):>9} "
                   f"{_g(p['bound'], '.1e'):>9}")
    return out


def target_line(executor: str, t: dict) -> str:
    """One executor's targets; a target with no point measured for it says "not measured" (not MISSED)."""
    ratio = t["min_ratio_T_ge_1024"]
    exponent = t["time_exponent_T_ge_1024"]
    ratio_text = ("JAX/NumPy at T >= 1024: not measured (no point with T >= 1024)" if ratio is None else
                  f"JAX/NumPy at T >= 1024 at least {_g(ratio)}x "
                  f"(target 10x: {'met' if t['ratio_target_met'] else 'MISSED'})")
    exponent_text = ("time exponent for T >= 1024: not measured (fewer than two points)" if exponent is None else
                     f"time ~ T^{_g(exponent, '.2f')} for T >= 1024 (target <= 2)")
    return (f"Targets, {executor}: {ratio_text}; {exponent_text}; longest prompt run "
            f"{t['largest_T_run'] if t['largest_T_run'] is not None else 'none'} tokens")


def report(result: dict) -> str:
    """The benchmark as text tables."""
    m, o = result["machine"], result["options"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM; jax {m['jax']} on "
             f"{m['backend']} ({len(m['devices'])} device(s)); 1-minute load average "
             f"{m['load_average'][0]:.1f} at the start, {result.get('load_average_end', [math.nan])[0]:.1f} "
             f"at the end (other processes share the cores)",
             f"dtype {o['dtype']}; tasks read random tables, d = {o['vocab_size']}, s = {o['slots']}, "
             f"sharpness {o['sharpness']:g}; chunked block {o['block']}; memory limit "
             f"{result['memory_limit_bytes'] / GiB:.1f} GiB", ""]
    for dt, mm in result["matmul"].items():
        lines.append(f"Dense matmul {mm['n']}^3 {dt}: {mm['flops_per_second'] / 1e9:.1f} GFLOP/s")
    lines += ["", "Throughput: batched JAX (standard = superpose.model, chunked = superpose.verify.chunked) "
                  "vs the NumPy reference, same weights",
              f"{'T':>6} {'K':>3} {'batch':>5} {'standard/s':>11} {'chunked/s':>10} {'NumPy/s':>9} "
              f"{'std/NumPy':>9} {'chunk/NumPy':>11} {'max error':>9}"]
    for t in result["throughput"]:
        s, c, n = t["standard"], t["chunked"], t["numpy"]
        worst = max([p["max_abs_error"] for p in (s, c) if p["fits"]] + [n["max_abs_error"]])
        lines.append(f"{t['T']:>6} {t['K']:>3} {t['batch']:>5} {_g(s.get('prompts_per_second')):>11} "
                     f"{_g(c.get('prompts_per_second')):>10} {_g(n['prompts_per_second']):>9} "
                     f"{_g(t['ratio_standard']):>9} {_g(t['ratio_chunked']):>11} {_g(worst, '.1e'):>9}")
    lines += _scaling(f"Scaling with prompt length (K = {o['length_tasks']}, batch 1)",
                      [p for pts in result["by_length"].values() for p in pts])
    for executor, e in result["length_exponents"].items():
        lines.append(f"{executor}: time ~ T^{_g(e['time_all'], '.2f')} (all), T^{_g(e['time_T_ge_1024'], '.2f')} "
                     f"(T >= 1024); XLA peak memory ~ T^{_g(e['xla_memory_T_ge_1024'], '.2f')}; measured RSS ~ "
                     f"T^{_g(e['rss_T_ge_1024'], '.2f')} (T >= 1024)")
    if "breakdown" in result:
        b = result["breakdown"]
        lines.append(f"where the standard forward's time goes at T = {b['T']}: attention core (q k^T, mask, exp, "
                     f"sums, weighted sum) {100 * b['attention_core_share']:.0f}%, "
                     f"exp alone {100 * b['exp_share']:.0f}%")
    for executor, pts in result["by_length"].items():
        ran = [p for p in pts if p["fits"] and p.get("system_cpu_share") is not None]
        if ran:
            lines.append(f"kernel share of the CPU time / memory freshly paged in per call, {executor}: "
                         + ", ".join(
                f"T={p['T']}: {100 * p['system_cpu_share']:.0f}% / {p['fresh_bytes_per_call'] / GiB:.2g} GiB"
                for p in ran if p["T"] >= 1024))
    lines += _scaling(f"Scaling with the number of tasks K (T = {o['tasks_length']}, batch 1)",
                      [p for pts in result["by_tasks"].values() for p in pts])
    for executor, e in result["tasks_exponents"].items():
        lines.append(f"{executor}: time ~ K^{_g(e['time_all'], '.2f')} (all), "
                     f"K^{_g(e['time_K_ge_4'], '.2f')} (K >= 4); "
                     f"XLA peak memory ~ K^{_g(e['xla_memory_K_ge_4'], '.2f')} (K >= 4); parameters ~ "
                     f"K^{_g(e['n_params'], '.2f')}")
    h = result.get("hypothesis")
    if h:
        lines.append("")
        if "compiled_signatures" in h:
            lines.append(f"Hypothesis property suite ({h['suite']}: {h['pytest_summary']}): "
                         f"{h['compiled_signatures']} compiled signatures: {', '.join(h['signatures'])}")
        else:
            lines.append(f"Hypothesis property suite: {h['note']}")
    lines.append("")
    for executor, t in result["targets"].items():
        lines.append(target_line(executor, t))
    big = result.get("largest_checked")
    if big:
        lines.append(f"\nLargest checked: {big['executor']} executor, T = {big['T']}, K = {big['K']}, d_model "
                     f"{big['d_model']}, {big['n_params']:,} parameters: "
                     f"max error {big['max_abs_error']:.1e} <= bound "
                     f"{_g(big['bound'], '.1e')}")
    lines.append(f"Every measured point within its bound: {result['all_within_bound']}")
    return "\n".join(lines)


def write_json(result: dict, path: str, force: bool = True) -> None:
    """Write the result atomically (``superpose.files.atomic_write``; ``force=False`` refuses an existing file)."""
    from superpose.files import atomic_write

    with atomic_write(path, force=force) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, default=float)
