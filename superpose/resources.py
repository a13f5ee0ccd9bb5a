"""Memory estimates and the memory limit: a job that would not fit is refused before it starts.

Every command that builds, loads or runs a model first estimates the memory the job
needs from the shapes alone (``superpose.construct.build.planned_config``: no weight is
built) and compares it with a limit:

* ``--memory-limit SIZE`` if given (``4G``, ``512M``, ``1.5GiB``, ``1000000`` bytes), else
* the environment variable ``SUPERPOSE_MEMORY_LIMIT`` (same syntax), else
* ``DEFAULT_FRACTION`` (80 %) of the memory available now (``MemAvailable`` in
  ``/proc/meminfo``, lowered to the cgroup's limit if there is one).

Over the limit, ``ResourceError`` (exit status 2 on the command line) says what was
asked, what it would take and how to proceed. The estimate counts

* the weights: every array of ``param_shapes(config)`` in float64 as built (twice when
  a file is loaded and checked against a rebuild), plus a copy in the run dtype on
  the device and the builder's per-unit bookkeeping;
* the activations of a forward pass over a prompt of ``T`` tokens (padded to the
  power-of-two bucket that ``superpose.model.run`` compiles), batch ``B``: the attention
  scores, their exponentials and XLA's temporaries, ``3 B H T^2`` values (``dense``:
  attention all at once, as ``superpose.model`` runs prompts of up to ``ATTENTION_BLOCK``
  tokens and captures activations; the measured peak RSS grows by 2.9 B H T^2 values)
  or ``6 B H block^2`` (``chunked``: block by block, as it runs longer prompts; the
  default ``standard`` picks one of the two by length as the executor does), plus twice ``B T (4 d_model + 3 H d_head + d_mlp + d)``
  for the residual stream, queries, keys, values and hidden units;
* the outputs (model and analytic prediction at every prediction position).

It is an estimate, meant to refuse what cannot fit at once (in well under a second,
whatever the size asked for) rather than to pack memory tightly.

>>> from superpose import Task, TaskSet
>>> tasks = TaskSet(vocab_size=4, slots=2, tasks=[Task("a", 0, [0, 1, 2, 3])])
>>> e = estimate_memory(tasks, 100_000, run_length=tasks.prompt_length(100_000))
>>> e.config.n_ctx, e.total < 2 ** 32   # 400,004 tokens, attention block by block: under 4 GiB
(400004, True)
>>> estimate_memory(tasks, 100_000, tasks.prompt_length(100_000), executor="dense").total > 2 ** 40   # T^2 scores
True
>>> parse_size("512M"), parse_size("1.5GiB"), parse_size("1000")
(536870912, 1610612736, 1000)
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from superpose.construct.build import planned_config
from superpose.executor import ATTENTION_BLOCK, ModelConfig, attention_block, param_shapes
from superpose.setting import SuperposeError, TaskSet

ENV_VAR = "SUPERPOSE_MEMORY_LIMIT"
DEFAULT_FRACTION = 0.8
FALLBACK_AVAILABLE = 4 * 2 ** 30  # when the platform tells us nothing
BUILDER_BYTES_PER_UNIT = 1024     # Python objects the builder keeps per hidden unit (generous)
OUTPUT_BYTES_PER_VALUE = 64       # a Python float in a list, model and prediction, JSON text
# [T, T] attention buffers per head alive at the peak of a standard forward pass: the peak RSS
# of `superpose run` on a 10,004-token prompt grew by 2.9 B H T^2 itemsize (K = 2 and 4,
# float32 and float64; 2-core reference machine)
ATTENTION_COPIES = 3
UNITS = {"": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40, "P": 2 ** 50}


class ResourceError(SuperposeError):
    """A job would need more memory than the limit allows (or the limit itself is malformed)."""


def parse_size(text: str, where: str = "--memory-limit") -> int:
    """Bytes in ``"4G"``, ``"512M"``, ``"1.5GiB"``, ``"64k"`` or ``"1000000"`` (binary units)."""
    match = re.fullmatch(r"\s*((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([kKmMgGtTpP]?)(?:i?[bB])?\s*",
                         str(text))
    if not match:
        raise ResourceError(f"{where}: expected a size such as 4G, 512M or a number of bytes, got {text!r}")
    value = float(match.group(1)) * UNITS[match.group(2).upper()]
    if not math.isfinite(value) or value < 1:
        raise ResourceError(f"{where}: must be at least 1 byte, got {text!r}")
    return int(min(value, 2 ** 62))


def format_size(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``; ``math.inf`` -> ``'unbounded'``."""
    if not math.isfinite(n):
        return "unbounded"
    for unit, scale in (("PiB", 2 ** 50), ("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
        return int(text) if text.isdigit() else None
    except (OSError, ValueError):
        return None


def available_memory() -> int:
    """Bytes of memory available to this process now (MemAvailable, or the cgroup's headroom if lower)."""
    candidates = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    candidates.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2 ** 60:
            candidates.append(max(limit - usage, 0))
    if not candidates:
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            candidates.append(FALLBACK_AVAILABLE)
    return max(min(candidates), 0)


@dataclass(frozen=True)
class MemoryLimit:
    bytes: int
    source: str  # how it was set, for messages

    def __str__(self) -> str:
        return f"{format_size(self.bytes)} ({self.source})"


def memory_limit(flag: str | None = None) -> MemoryLimit:
    """The limit from ``--memory-limit``, else ``SUPERPOSE_MEMORY_LIMIT``, else 80 % of what is available."""
    if flag is not None:
        return MemoryLimit(parse_size(flag, "--memory-limit"), "--memory-limit")
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip():
        return MemoryLimit(parse_size(env, ENV_VAR), ENV_VAR)
    available = available_memory()
    return MemoryLimit(int(DEFAULT_FRACTION * available),
                       f"{DEFAULT_FRACTION:.0%} of the {format_size(available)} available; "
                       f"set --memory-limit or {ENV_VAR}")


def n_params(config: ModelConfig) -> int:
    """Number of parameters of a model with ``config`` (from ``param_shapes``, no arrays made)."""
    def count(tree) -> int:
        if isinstance(tree, dict):
            return sum(count(v) for v in tree.values())
        return math.prod(tree)
    return count(param_shapes(config))


def _largest_array(config: ModelConfig) -> int:
    def sizes(tree):
        if isinstance(tree, dict):
            for v in tree.values():
                yield from sizes(v)
        else:
            yield math.prod(tree)
    return max(sizes(param_shapes(config)))


def _bucket(n: int, minimum: int = 16) -> int:
    return 1 << (max(n, minimum, 1) - 1).bit_length()


@dataclass(frozen=True)
class MemoryEstimate:
    """What a job needs, in bytes, by part."""

    config: ModelConfig
    n_params: int
    weights: int
    activations: int
    outputs: int

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.outputs

    def describe(self) -> str:
        parts = [f"weights {format_size(self.weights)}"]
        if self.activations:
            parts.append(f"activations {format_size(self.activations)}")
        if self.outputs:
            parts.append(f"outputs {format_size(self.outputs)}")
        return f"{format_size(self.total)} ({', '.join(parts)}; {self.n_params:,} parameters)"


def estimate_for_config(config: ModelConfig, run_length: int | None = None, batch: int = 1,
                        dtype: str = "float32", executor: str = "standard", block: int = 256,
                        loaded: bool = False) -> MemoryEstimate:
    """Estimate for a model of ``config``; with ``run_length`` (tokens), also for running it."""
    n = n_params(config)
    itemsize = 4 if str(dtype) == "float32" else 8
    # built in float64 (a loaded file is checked against a rebuild: two copies), the builder's
    # per-unit bookkeeping, and a transient copy of the largest array (digests, padding)
    weights = 8 * n * (2 if loaded else 1) + 8 * _largest_array(config)
    weights += BUILDER_BYTES_PER_UNIT * (config.n_layers * config.d_mlp + config.n_heads * config.n_layers)
    activations = outputs = 0
    if run_length is not None:
        weights += itemsize * n  # the device copy in the run dtype
        B, H, D, M = batch, config.n_heads, config.d_model, config.d_mlp
        per_position = 4 * D + 3 * H * config.d_head + M + config.d_out
        if executor == "standard":   # superpose.model: dense attention up to ATTENTION_BLOCK tokens, blocks beyond
            T = _bucket(run_length)
            executor, block = ("dense", block) if T <= ATTENTION_BLOCK else ("chunked", attention_block(T))
        if executor == "chunked":
            b = max(1, min(block, run_length))
            T = -(-run_length // b) * b
            elements = B * (6 * H * b * b + 2 * T * (per_position + H * config.d_head))
        else:
            T = min(_bucket(run_length), max(config.n_ctx, run_length))
            elements = B * (ATTENTION_COPIES * H * T * T + 2 * T * per_position)
        activations = itemsize * elements
        # model and analytic prediction at every prediction position, as Python floats and JSON text
        outputs = OUTPUT_BYTES_PER_VALUE * 2 * B * run_length * config.d_out
    return MemoryEstimate(config, n, int(weights), int(activations), int(outputs))


def estimate_memory(tasks: TaskSet, max_examples: int, run_length: int | None = None, batch: int = 1,
                    dtype: str = "float32", executor: str = "standard", block: int = 256) -> MemoryEstimate:
    """Estimate for ``build(tasks, max_examples)`` (and running a ``run_length``-token prompt on it)."""
    return estimate_for_config(planned_config(tasks, max_examples), run_length, batch, dtype, executor, block)


def check_memory(estimate: MemoryEstimate, limit: MemoryLimit, asked: str, hint: str) -> None:
    """Raise ``ResourceError`` (one line: what was asked, what it takes, how to proceed) if over ``limit``."""
    if estimate.total > limit.bytes:
        raise ResourceError(f"{asked} would need about {estimate.describe()}, over the memory limit {limit}; "
                            f"{hint}")


def largest_fitting(fits, low: int, high: int) -> int | None:
    """The largest ``m`` in ``low..high`` with ``fits(m)`` (``fits`` monotone decreasing), or ``None``."""
    if not fits(low):
        return None
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


def max_examples_within(tasks: TaskSet, limit: MemoryLimit, run: bool, dtype: str = "float32",
                        executor: str = "standard", block: int = 256, upper: int = 2 ** 40) -> int | None:
    """The largest ``max_examples`` whose estimate (built, and run on a full prompt if ``run``) fits ``limit``."""
    def fits(m: int) -> bool:
        length = tasks.prompt_length(m) if run else None
        return estimate_memory(tasks, m, length, 1, dtype, executor, block).total <= limit.bytes
    return largest_fitting(fits, 0, upper)


def check_input_file(path: str, limit: MemoryLimit, what: str, factor: int = 40) -> None:
    """Refuse a JSON input file whose parsed form (about ``factor`` times its size) would exceed ``limit``."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return  # the reader reports a missing or unreadable file itself
    if size * factor > limit.bytes:
        raise ResourceError(f"{what}: {path} is {format_size(size)}; reading it would need about "
                            f"{format_size(size * factor)}, over the memory limit {limit}; "
                            f"raise --memory-limit or {ENV_VAR}")


def require_fits(tasks: TaskSet, max_examples: int, limit: MemoryLimit, run_length: int | None = None,
                 prompt_examples: int = 0, dtype: str = "float32", executor: str = "standard",
                 block: int = 256) -> MemoryEstimate:
    """The estimate for building ``tasks`` for ``max_examples`` (and running a ``run_length``-token
    prompt of ``prompt_examples`` examples); ``ResourceError`` with what would fit if over ``limit``."""
    estimate = estimate_memory(tasks, max_examples, run_length, 1, dtype, executor, block)
    if estimate.total <= limit.bytes:
        return estimate
    K, d = tasks.K, tasks.vocab_size
    if run_length is None:
        asked = (f"building the model for K = {K} tasks over d = {d} tokens and prompts of up to {max_examples} "
                 f"examples ({tasks.prompt_length(max_examples)} tokens)")
    else:
        asked = (f"running a {run_length}-token prompt ({prompt_examples} examples) on the model for K = {K} tasks "
                 f"over d = {d} tokens and up to {max_examples} examples")
    hints = []
    if run_length is not None and executor == "standard" and \
            estimate_memory(tasks, max_examples, run_length, 1, dtype, "chunked", block).total <= limit.bytes:
        hints.append("use --executor chunked (block-wise attention, memory linear in the prompt length)")

    def fits(m: int) -> bool:
        return estimate_memory(tasks, m, run_length, 1, dtype, executor, block).total <= limit.bytes

    best = largest_fitting(fits, prompt_examples, max_examples) if prompt_examples <= max_examples else None
    if best is not None and best < max_examples:
        hints.append(f"use --max-examples {best} or less")
    elif best is None:
        hints.append(("use a shorter prompt, fewer tasks" if run_length is not None else f"use fewer than {K} tasks")
                     + " or a smaller vocabulary")
    hints.append(f"or raise --memory-limit / {ENV_VAR}")
    raise ResourceError(f"{asked} would need about {estimate.describe()}, over the memory limit {limit}; "
                        + ", ".join(hints))


__all__ = ["ResourceError", "MemoryEstimate", "MemoryLimit", "parse_size", "format_size", "available_memory",
           "memory_limit", "n_params", "estimate_for_config", "estimate_memory", "check_memory",
           "max_examples_within", "largest_fitting", "check_input_file", "require_fits", "ENV_VAR",
           "DEFAULT_FRACTION"]
