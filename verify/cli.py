"""Subcommands ``sweep``, ``plot``, ``bench`` and ``export`` of the ``superpose`` command line.

    superpose sweep  -o SWEEP.jsonl [--force] [--preset NAME | --vocab 4,8 --tasks 1,2,3 --slots 1,2 --examples 0,4,16
                     --sharpness 50 --dtype float64 --mixture dirichlet --ambiguous 0,0.25 --noise 0,0.2]
                     [--random N] [--prompts P] [--seed S] [--devices N] [--attention-budget E]
                     [--executor standard|chunked] [--block B] [--perturb EPS] [--progress | --no-progress]
    superpose plot   SWEEP.jsonl -o DIR [--force] [--format png,svg] [--only NAME,...]
    superpose bench  [-o BENCH.json] [--force] [--quick] [--dtype float64] [--lengths 256,...] [--tasks 1,2,...]
                     [--throughput-lengths 256,1024,4096]
                     [--memory-fraction F] [--no-hypothesis] [--no-lens]   (benchmarks/bench.py of a checkout)
    superpose export TASKS.json -o MODEL.safetensors [--force] [--max-examples M] [--sharpness B]
                     [--memory-limit SIZE] [--check-transformer-lens N]

``register(subparsers)`` adds them; each ``func(args)`` returns the exit code. ``sweep``
exits 1 (after a loud report on stderr) when any bound is violated. Bad input raises a
``SuperposeError`` subclass (the main command line turns it into exit status 2 and one
line on stderr). Every output file is written atomically and an existing one is refused
without ``--force`` (``superpose.files``), before any work is done.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable

from superpose.setting import InputFileError


def _list(kind: Callable, flag: str) -> Callable[[str], list]:
    def parse(text: str) -> list:
        from superpose.verify.sweep import SweepError

        try:
            values = [kind(part.strip()) for part in text.split(",") if part.strip()]
        except ValueError:
            raise SweepError(f"{flag}: expected comma-separated {kind.__name__} values, got {text!r}") from None
        if not values:
            raise SweepError(f"{flag}: expected at least one value")
        return values
    return parse


SWEEP_FLAGS = {  # flag -> (sweep parameter, type, what the values are)
    "--vocab": ("vocab_size", int, "vocabulary sizes d"),
    "--tasks": ("n_tasks", int, "numbers of tasks K"),
    "--slots": ("slots", int, "input slots s per example"),
    "--arity": ("max_arity", int, "most slots r a task reads (each task draws 1..r; default 1)"),
    "--examples": ("n_examples", int, "examples m per prompt (prompt length (m+1)(s+2))"),
    "--sharpness": ("sharpness", float, "attention sharpness beta"),
    "--dtype": ("dtype", str, "float32 and/or float64"),
    "--mixture": ("mixture", str, "how task proportions are drawn: uniform, dirichlet, skewed"),
    "--ambiguous": ("ambiguous_share", float, "shares of the task examples that fit two or more tasks"),
    "--noise": ("noise_share", float, "shares of the examples that fit no task"),
}


def _cmd_sweep(args) -> int:
    import jax
    from tqdm import tqdm

    from superpose.files import check_output
    from superpose.verify import sweep as sw
    from superpose.verify.batched import ShardedRunner, device_mesh, shapes_compiled

    check_output(args.output, args.force)

    values = {}
    for flag, (name, kind, _) in SWEEP_FLAGS.items():
        raw = getattr(args, name)
        if raw is not None:
            values[name] = _list(kind, flag)(raw)
    if args.prompts < 1:
        raise sw.SweepError(f"--prompts: must be >= 1, got {args.prompts}")
    if args.preset:
        if values or args.random is not None:
            raise sw.SweepError("--preset: cannot be combined with value lists or --random")
        configs = sw.preset(args.preset, seed=args.seed)
    elif args.random is not None:
        configs = sw.random_configs(values, args.random, n_prompts=args.prompts, seed=args.seed)
    else:
        configs = sw.grid(values, n_prompts=args.prompts, seed=args.seed)
    devices = jax.devices()
    if args.devices is not None:
        if not 1 <= args.devices <= len(devices):
            raise sw.SweepError(f"--devices: must lie in 1..{len(devices)}, got {args.devices}")
        devices = devices[: args.devices]
    if args.attention_budget < 1:
        raise sw.SweepError(f"--attention-budget: must be >= 1, got {args.attention_budget}")
    if args.block < 1 or args.block & (args.block - 1):
        raise sw.SweepError(f"--block: must be a power of two, got {args.block}")
    runner = ShardedRunner(device_mesh(devices), attention_budget=args.attention_budget, executor=args.executor,
                           block=args.block)
    shown = args.progress if args.progress is not None else sys.stderr.isatty()
    start = time.perf_counter()
    with tqdm(total=len(configs), desc="sweep", unit="config", disable=not shown, file=sys.stderr) as bar:
        records = list(sw.write_records(
            sw.run_sweep(configs, runner, perturb=args.perturb, on_progress=lambda done, _: bar.update(done - bar.n)),
            args.output, force=args.force))
    seconds = time.perf_counter() - start
    records.sort(key=lambda r: r["index"])
    print(sw.summary_table(records))
    compiled = shapes_compiled(runner)
    print(f"\n{len(records)} configurations -> {args.output}; {len(compiled)} compiled programs "
          f"({sum(c['compile_seconds'] for c in compiled):.1f} s compiling); {runner.n_devices} device(s) "
          f"({jax.default_backend()}); {seconds:.1f} s in all")
    loud = sw.violation_report(records)
    if loud:
        print(loud, file=sys.stderr)
        return 1
    return 0


def _cmd_plot(args) -> int:
    from superpose.commands import require_extra
    from superpose.files import check_outputs
    from superpose.verify.plots import figure_files, save_all
    from superpose.verify.sweep import read_records

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in ("png", "svg", "pdf")]
    if bad or not formats:
        raise InputFileError(f"--format: choose from png, svg, pdf; got {args.format!r}")
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    check_outputs(args.output, figure_files(only, formats), args.force, [args.sweep], what="--output")
    require_extra("matplotlib", "plot", "superpose plot")
    records = read_records(args.sweep)
    for path in save_all(records, args.output, formats, only, force=args.force, inputs=[args.sweep]):
        print(f"wrote {path}")
    return 0


BENCH_PROGRAM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "bench.py")


def load_bench_program(path: str | None = None):
    """The benchmark program (``benchmarks/bench.py`` of a source checkout) as a module."""
    import importlib.util

    path = path or BENCH_PROGRAM
    if not os.path.exists(path):
        raise InputFileError(f"superpose bench runs benchmarks/bench.py from a source checkout of superpose; "
                             f"not found at {path} (clone the repository and run `make bench`)")
    spec = importlib.util.spec_from_file_location("superpose_bench_program", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _cmd_bench(args) -> int:
    from superpose.files import check_output

    if args.output:
        check_output(args.output, args.force)
    return load_bench_program().run_cli(args)


def _cmd_export(args) -> int:
    from superpose.commands import build_checked, limit_of, load_tasks, require_extra
    from superpose.files import check_output
    from superpose.verify.export import save_safetensors

    check_output(args.output, args.force, [args.tasks])  # refuse at once, before building anything
    if args.check_transformer_lens:
        require_lens()
    require_extra("safetensors", "export", "superpose export")
    limit = limit_of(args)
    model = build_checked(load_tasks(args.tasks, limit), args, limit)
    save_safetensors(model, args.output, force=args.force, inputs=[args.tasks])
    print(f"wrote {args.output}: {model.summary()}")
    if args.check_transformer_lens:
        worst = check_transformer_lens(model, args.check_transformer_lens, seed=0)
        print(f"TransformerLens forward vs ours on {args.check_transformer_lens} random prompts (float64): "
              f"max |difference| {worst:.2e}")
        if not worst <= 1e-9:
            print(f"error: TransformerLens disagrees with our forward pass by {worst:.2e} > 1e-9", file=sys.stderr)
            return 1
    return 0


def require_lens() -> None:
    from superpose.commands import require_extra

    for module in ("torch", "transformer_lens"):
        require_extra(module, "lens", "--check-transformer-lens")


def check_transformer_lens(model, n_prompts: int, seed: int = 0) -> float:
    """Max |TransformerLens readout - our JAX readout| over random prompts of random lengths (float64)."""
    import numpy as np

    from superpose.model import run_tokens
    from superpose.setting import tokenize
    from superpose.verify.lens import hooked_readout, to_hooked_transformer
    from superpose.verify.sampling import mixture_shares, sample_prompt

    require_lens()
    hooked = to_hooked_transformer(model)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n_prompts):
        m = int(rng.integers(0, model.max_examples + 1))
        sample = sample_prompt(rng, model.tasks, m, mixture_shares("dirichlet", model.tasks.K, rng), 0.25, 0.1)
        tokens = tokenize(model.tasks, sample.prompt)[None, :]
        # ours: padded at the end to the full context (one compiled program); causal attention
        # keeps the padding from reaching the real positions
        padded = np.full((1, model.config.n_ctx), model.tasks.bos, dtype=np.int32)
        padded[0, : tokens.shape[1]] = tokens[0]
        ours = run_tokens(model, padded, dtype="float64")[:, : tokens.shape[1]]
        worst = max(worst, float(np.abs(hooked_readout(hooked, tokens) - ours).max()))
    return worst


def register(subparsers) -> None:
    from superpose.commands import add_force_option, add_memory_option
    from superpose.construct.build import DEFAULT_SHARPNESS
    from superpose.verify.sweep import AXES

    sweep = subparsers.add_parser("sweep", help="run the construction over many configurations; JSON Lines out")
    sweep.add_argument("-o", "--output", required=True, metavar="SWEEP.jsonl")
    add_force_option(sweep)
    sweep.add_argument("--preset", help="a named sweep: smoke, figures (the README figures), scale (100,368 prompts)")
    for flag, (name, kind, meaning) in SWEEP_FLAGS.items():
        default = ",".join(str(v) for v in AXES[name][1])
        sweep.add_argument(flag, dest=name, metavar="LIST", help=f"{meaning}, comma-separated (default {default})")
    sweep.add_argument("--random", type=int, metavar="N",
                       help="sample N configurations from the lists (default: the full grid)")
    sweep.add_argument("--prompts", type=int, default=4, help="prompts per configuration (default 4)")
    sweep.add_argument("--seed", type=int, default=0, help="seed of configuration i is SEED + i (default 0)")
    sweep.add_argument("--devices", type=int, help="shard over the first N devices (default: all)")
    sweep.add_argument("--attention-budget", type=int, default=2 ** 25, metavar="E",
                       help="attention-score elements per device per call (default 2^25)")
    sweep.add_argument("--executor", choices=["standard", "chunked"], default="standard",
                       help="kept for compatibility: both run the one executor (superpose.model), attention "
                            "block by block beyond 256 tokens; chunked uses blocks of --block")
    sweep.add_argument("--block", type=int, default=256, help="with --executor chunked: the attention block (default 256)")
    sweep.add_argument("--perturb", type=float, default=0.0, metavar="EPS",
                       help="add Gaussian noise of size EPS to every weight (to see the checks fail)")
    sweep.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bar on stderr (default: when stderr is a terminal)")
    sweep.set_defaults(func=_cmd_sweep)

    plot = subparsers.add_parser("plot",
                                 help="figures from a sweep file (error vs sharpness/length, d_model, calibration)")
    plot.add_argument("sweep", metavar="SWEEP.jsonl")
    plot.add_argument("-o", "--output", required=True, metavar="DIR")
    add_force_option(plot)
    plot.add_argument("--format", default="png,svg", help="comma-separated: png, svg, pdf (default png,svg)")
    plot.add_argument("--only", help="comma-separated figure names (default: all the records support)")
    plot.set_defaults(func=_cmd_plot)

    bench = subparsers.add_parser("bench", help="speed, FLOP/s, compile time and memory of the forward pass "
                                                "(runs benchmarks/bench.py of a source checkout)")
    bench.add_argument("-o", "--output", metavar="BENCH.json")
    add_force_option(bench)
    bench.add_argument("--quick", action="store_true", help="small sizes (seconds, for a smoke test)")
    bench.add_argument("--dtype", choices=["float32", "float64"])
    bench.add_argument("--lengths", metavar="LIST", help="prompt lengths for the T scaling (multiples of 4)")
    bench.add_argument("--tasks", metavar="LIST", help="task counts K for the K scaling")
    bench.add_argument("--throughput-lengths", metavar="LIST",
                       help="prompt lengths for JAX vs TransformerLens and NumPy (multiples of 4)")
    bench.add_argument("--memory-fraction", type=float, help="run a point only if XLA plans below this share "
                                                             "of the available memory (default 0.5)")
    bench.add_argument("--no-hypothesis", action="store_true", help="skip counting the Hypothesis tests' programs")
    bench.add_argument("--no-lens", action="store_true", help="skip TransformerLens (the lens extra)")
    bench.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    bench.set_defaults(func=_cmd_bench)

    export = subparsers.add_parser("export",
                                   help="build for TASKS.json and write safetensors (config and labels inside)")
    export.add_argument("tasks", metavar="TASKS.json")
    export.add_argument("-o", "--output", required=True, metavar="MODEL.safetensors")
    add_force_option(export)
    export.add_argument("--max-examples", type=int, default=None)
    export.add_argument("--sharpness", type=float, default=DEFAULT_SHARPNESS)
    add_memory_option(export)
    export.add_argument("--check-transformer-lens", type=int, default=0, metavar="N",
                        help="also run N random prompts through TransformerLens and compare (needs the lens extra)")
    export.set_defaults(func=_cmd_export)


__all__ = ["register", "check_transformer_lens"]
