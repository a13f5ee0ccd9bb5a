"""The ``superpose`` command line.

    superpose demo   [--dtype float32|float64] [--json] [--timing]
    superpose run    TASKS.json PROMPT.json [--dtype ...] [--json] [--timing] [--weights FILE.npz]
                     [--max-examples M] [--sharpness B] [--executor standard|chunked] [--block B]
                     [--certify] [--memory-limit SIZE]
    superpose build  TASKS.json -o FILE.npz [--force] [--max-examples M] [--sharpness B] [--memory-limit SIZE]
    superpose layers [TASKS.json] [--max-examples M] [--memory-limit SIZE] [--markdown]
    superpose sweep / plot / bench / export ...              (verify/cli.py)
    superpose explain  [TASKS.json PROMPT.json] -o PAGE.html (verify/explain_cli.py)
    superpose prove    [TASKS.json] [--only ID ...] [-v]     (proofs/cli.py)
    superpose examples [NAME ...] [--out DIR] [--small]     (examples/cli.py)
    superpose train ... / superpose evaluate-mixtures ...   (train/cli.py)
    superpose generate TASKS.json PROMPT.json [--decoder ...] (verify/generate_cli.py)
    superpose export-trained CHECKPOINT -o FILE.safetensors  (train/inside_cli.py)
    superpose llm-eval --model PATH [--family NAME] -o RESULTS.jsonl (verify/llm_cli.py)

Exit status of ``run`` and ``demo``: 0 when the output is within the error bound, and also
0 when there is no bound (the reason is printed: ``no bound: ...``, with the measured
error); 1 when a bound exists and the output violates it (a bug); 2 for bad input of
any kind, a job over the memory limit, or an output file that exists (without
``--force``) or is an input. Status 2 always comes with one line on stderr and no
traceback. Commands that write files write them atomically (``superpose.files``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
import warnings
from typing import Sequence

import numpy as np

from superpose.construct.bound import ErrorBound
from superpose.construct.build import DEFAULT_MAX_EXAMPLES, DEFAULT_SHARPNESS, LAYER_SPECS, SuperposeModel, build
from superpose.demo import digit_tasks, mixed_prompt
from superpose.resources import MemoryLimit, check_input_file, estimate_for_config, memory_limit, require_fits
from superpose.setting import (
    Prompt,
    PromptError,
    SuperposeError,
    TaskSet,
    load_json_file,
    prediction_positions,
    prediction_sites,
    tokenize,
    validate_prompt,
)


# Sub-packages that add subcommands: each module defines register(subparsers), which adds
# its parsers with set_defaults(func=...) returning an exit code.
COMMAND_MODULES: tuple[str, ...] = (
    "superpose.verify.cli", "superpose.verify.explain_cli", "superpose.proofs.cli", "superpose.examples.cli",
    "superpose.train.cli", "superpose.verify.generate_cli",
    "superpose.train.inside_cli",  # export-trained (issue 14)
    "superpose.verify.llm_cli")    # llm-eval (issue 16)


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line on stderr, exit 2 (argparse prints usage too)
        raise _UsageError(f"{self.prog}: {message}")


def no_bound_reason(bound: ErrorBound, K: int, T: int, sharpness: float, dtype: str) -> str:
    """Why ``error_bound`` gives no bound (``bound.holds`` is false), in words, with what to change."""
    wider = " or use --dtype float64" if dtype == "float32" else ""
    largest = float(np.finfo(dtype).max)
    if bound.why == "overflow" or 2 * sharpness > largest:
        return (f"sharpness {sharpness:g} overflows {dtype} (look-back scores reach about 2 L x sharpness; the "
                f"largest {dtype} is {largest:.3g}): lower --sharpness{wider}")
    if not math.isfinite(bound.leak):
        return (f"sharpness {sharpness:g} is too low for K = {K} and {T} tokens: soft attention leaks more "
                f"than 1/4 into the snapped values even in exact arithmetic (raise --sharpness)")
    return (f"{dtype} rounding is too large for the snaps at sharpness {sharpness:g}, K = {K}, T = {T}: their "
            f"inputs may err by {bound.snap_input_error:.2g} > 1/4 (use a shorter prompt{wider})")


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _report(model: SuperposeModel, prompt: Prompt, dtype: str, executor: str = "standard", block: int = 256,
            timing: bool = False, certify: bool = False) -> dict:
    """Model vs analytic prediction at every prediction position (the ``--json`` object).

    Deterministic: the same input gives byte-identical JSON. Run times are added under
    ``"timing"`` only when ``timing`` is true.
    """
    from superpose.verify.analytic import predict, separable

    start = time.perf_counter()
    with warnings.catch_warnings():  # a sharpness beyond the dtype's range: reported below, not warned about
        warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
        if executor == "chunked":
            from superpose.verify.chunked import run_chunked

            validate_prompt(model.tasks, prompt, model.max_examples)
            readout = run_chunked(model, tokenize(model.tasks, prompt)[None, :], dtype, block=block)[0]
            outputs = readout[prediction_positions(model.tasks, prompt.n_examples, len(prompt.query_prefix))]
        else:
            outputs = model.run([prompt], dtype=dtype)[0]
    seconds = time.perf_counter() - start
    tasks = model.tasks
    expected = predict(tasks, prompt, mode="conditioned" if model.conditioned else "marginal")
    T = tasks.prompt_length(prompt.n_examples, len(prompt.query_prefix))
    bound = model.error_bound(dtype, prompt_length=T)
    # answers of several tokens: the conditioned model is exact where the mixture is separable
    claims = separable(tasks, prompt) if model.conditioned else [(True, "")] * len(expected)
    errors = np.abs(outputs - expected).max(axis=1)
    exact = np.array([ok for ok, _ in claims])
    claimed = errors[exact]
    worst = float(claimed.max()) if claimed.size and np.isfinite(claimed).all() else (0.0 if not claimed.size
                                                                                          else math.inf)
    predictions = []
    sites = prediction_sites(tasks, prompt.n_examples, len(prompt.query_prefix))
    for (i, j), out, ana, err, (ok, why) in zip(sites, outputs, expected, errors, claims):
        entry = {"example": i}
        if tasks.answer_length > 1:
            entry["answer_token"] = j
        entry.update({
            "model": [_finite(x) for x in out],
            "analytic": [float(x) for x in ana],
            "max_abs_error": _finite(err),
            "bound": bound.total if bound.holds and ok else None,
        })
        if tasks.answer_length > 1:
            entry["exact"] = bool(ok)
            if not ok:
                entry["reason"] = why
        predictions.append(entry)
    if not bound.holds:
        status, reason = "no_bound", no_bound_reason(bound, model.tasks.K, T, model.sharpness, dtype)
    else:
        status, reason = ("within_bound" if worst <= bound.total else "bound_violated"), None
    c = model.config
    report = {
        "model": {"layers": c.n_layers, "heads": c.n_heads, "d_model": c.d_model, "params": model.n_params},
        "dtype": dtype,
        "sharpness": model.sharpness,
        "executor": executor,
        "bound": bound.to_json() if bound.holds else
        {"leak": _finite(bound.leak), "rounding": None, "total": None,
         "snap_input_error": _finite(bound.snap_input_error), "holds": False},
        "status": status,
        "max_abs_error": _finite(worst),
        "predictions": predictions,
    }
    if reason is not None:
        report["no_bound_reason"] = reason
    if certify:  # a posteriori: every flag bit-exact in this run, then the tight bound for this prompt
        from superpose.construct.bound import certify as certify_run

        report["certificate"] = certify_run(model, prompt, dtype)
        if report["certificate"]["certified"] and not worst <= report["certificate"]["bound"]:
            report["status"] = "bound_violated"
    if timing:
        report["timing"] = {"run_seconds": seconds}
    return report


def _exit_status(report: dict) -> int:
    return 1 if report["status"] == "bound_violated" else 0


def _print_json(report: dict) -> None:
    print(json.dumps(report, allow_nan=False))


def _print_table(model: SuperposeModel, prompt: Prompt, report: dict) -> None:
    tasks = model.tasks
    c = model.config
    print(f"Task set: d = {tasks.vocab_size} content tokens, s = {tasks.slots} input slot(s), K = {tasks.K} tasks")
    for k, t in enumerate(tasks.tasks):
        print(f"  task {k}: {t.name!r} reads slot{'s' if t.arity > 1 else ''} {', '.join(map(str, t.slots))}")
    print(f"Prompt: {prompt.n_examples} examples, query {[tasks.name_of(x) for x in prompt.query]}")
    from superpose.verify.analytic import consistent_tasks, task_mixture

    fits = [0.0] * tasks.K
    for e in prompt.examples:
        f = consistent_tasks(tasks, e)
        for k in f:
            fits[k] += 1 / len(f)
    print("  votes per task: " + ", ".join(f"{t.name} {v:g}" for t, v in zip(tasks.tasks, fits))
          + f"  -> mixture {[str(p) for p in task_mixture(tasks, prompt.examples)]}")
    last = report["predictions"][-1]
    print("\nQuery answer distribution (last prediction position):")
    print(f"  {'token':>8}  {'model':>12}  {'analytic':>12}  {'|error|':>10}")
    for v in range(tasks.vocab_size):
        m, a = last["model"][v], last["analytic"][v]
        m = math.nan if m is None else m
        if not abs(m) <= 1e-9 or a != 0:
            print(f"  {tasks.name_of(v):>8}  {m:12.9f}  {a:12.9f}  {abs(m - a):10.2e}")
    worst = report["max_abs_error"]
    worst_text = f"{worst:.3e}" if worst is not None else "not finite (the model's output overflowed)"
    bound = report["bound"]
    print(f"\nMax |model - analytic| over all {len(report['predictions'])} prediction positions "
          f"({report['dtype']}): {worst_text}")
    print(f"Error bound (sharpness {model.sharpness:g}): "
          + (f"{bound['total']:.3e} = leak {bound['leak']:.1e} + rounding {bound['rounding']:.1e}"
             if report["status"] != "no_bound" else f"no bound: {report['no_bound_reason']}"))
    print(f"Model: {c.n_layers} layers, {c.n_heads} head{'s' if c.n_heads > 1 else ''} per attention layer "
          f"(one per input slot read), d_model {c.d_model}, "
          f"{model.n_params:,} parameters, context {c.n_ctx} tokens")
    if "certificate" in report:
        c = report["certificate"]
        print(f"Certified bound (this run: every flag bit-exact, {c['consistent_examples']} consistent examples): "
              f"{c['bound']:.3e}" if c["certified"] else f"Not certified: {c['reason']}")
    if report["status"] == "within_bound":
        print("Result: the model's output is within the bound of the analytic prediction.")
    elif report["status"] == "no_bound":
        print(f"Result: no bound to check against (see above); measured error {worst_text}.")
    else:
        print(f"Result: the model's output is NOT within the bound of the analytic prediction "
              f"({worst_text} > {bound['total']:.3e}).")


def _limit(args) -> MemoryLimit:
    return memory_limit(getattr(args, "memory_limit", None))


def _load_tasks(path: str, limit: MemoryLimit | None = None) -> TaskSet:
    check_input_file(path, limit or memory_limit(), "TASKS")
    return TaskSet.from_json(load_json_file(path, "TASKS"))


def _load_prompt(path: str, limit: MemoryLimit | None = None) -> Prompt:
    check_input_file(path, limit or memory_limit(), "PROMPT")
    return Prompt.from_json(load_json_file(path, "PROMPT"))


def _check_block(args) -> None:
    block = getattr(args, "block", 256)
    if block < 1 or block & (block - 1):
        raise PromptError(f"--block: must be a power of two, got {block}")


def _model_for(tasks: TaskSet, prompt: Prompt, args, limit: MemoryLimit) -> SuperposeModel:
    """The model to run ``prompt`` on (loaded or built), after checking that the job fits ``limit``."""
    T = tasks.prompt_length(prompt.n_examples)
    if args.weights:
        from superpose.io import load, read_header
        from superpose.resources import check_memory

        header = read_header(args.weights, limit)
        if header.tasks != tasks:
            from superpose.setting import WeightsFileError

            raise WeightsFileError(f"{args.weights}: built for a different task set than the one given")
        validate_prompt(tasks, prompt, header.max_examples)
        check_memory(estimate_for_config(header.config, T, 1, args.dtype, args.executor, args.block, loaded=True),
                     limit, f"running a {T}-token prompt on {args.weights}",
                     "use --executor chunked, a shorter prompt, or raise --memory-limit / SUPERPOSE_MEMORY_LIMIT")
        return load(args.weights, expect_tasks=tasks, limit=limit)
    m = args.max_examples if args.max_examples is not None else prompt.n_examples
    if m < 0:
        raise PromptError(f"--max-examples: must be >= 0, got {m}")
    if m >= prompt.n_examples:  # (a prompt too long for m is reported by validate_prompt, naming both)
        require_fits(tasks, m, limit, run_length=T, prompt_examples=prompt.n_examples, dtype=args.dtype,
                     executor=args.executor, block=args.block)
    validate_prompt(tasks, prompt, m)
    return build(tasks, max_examples=m, sharpness=args.sharpness)


def _cmd_demo(args) -> int:
    tasks = digit_tasks()
    prompt = mixed_prompt(tasks)
    model = build(tasks, max_examples=DEFAULT_MAX_EXAMPLES, sharpness=args.sharpness)
    report = _report(model, prompt, args.dtype, timing=args.timing)
    if args.json:
        _print_json(report)
    else:
        print("superpose demo: three digit tasks in superposition (copy, next digit, to word)\n")
        _print_table(model, prompt, report)
    return _exit_status(report)


def _cmd_run(args) -> int:
    _check_block(args)
    limit = _limit(args)
    tasks = _load_tasks(args.tasks, limit)
    prompt = _load_prompt(args.prompt, limit)
    model = _model_for(tasks, prompt, args, limit)
    report = _report(model, prompt, args.dtype, args.executor, args.block, timing=args.timing,
                     certify=args.certify)
    if args.json:
        _print_json(report)
    else:
        _print_table(model, prompt, report)
    return _exit_status(report)


def _build_checked(tasks: TaskSet, args, limit: MemoryLimit) -> SuperposeModel:
    m = args.max_examples if args.max_examples is not None else DEFAULT_MAX_EXAMPLES
    if m < 0:
        from superpose.setting import BuildError

        raise BuildError(f"--max-examples: must be >= 0, got {m}")
    require_fits(tasks, m, limit)
    return build(tasks, max_examples=m, sharpness=args.sharpness)


def _cmd_build(args) -> int:
    from superpose.files import check_output
    from superpose.io import save

    check_output(args.output, args.force, [args.tasks])  # refuse at once, before building anything
    limit = _limit(args)
    tasks = _load_tasks(args.tasks, limit)
    model = _build_checked(tasks, args, limit)
    save(model, args.output, force=args.force, inputs=[args.tasks])
    print(f"wrote {args.output}: {model.summary()}")
    return 0


def _cmd_layers(args) -> int:
    if args.markdown:
        from superpose.construct.spec import markdown_table

        print(markdown_table(LAYER_SPECS))
        return 0
    limit = _limit(args)
    tasks = _load_tasks(args.tasks, limit) if args.tasks else digit_tasks()
    model = _build_checked(tasks, args, limit)
    print(model.summary())
    print(f"Heads used per layer: {', '.join(str(spec.n_heads(tasks)) for spec in LAYER_SPECS)} "
          f"(of {model.config.n_heads} = S, the distinct input slots read: {list(tasks.slots_read)})\n")
    for spec, layer in zip(LAYER_SPECS, model.layers):
        print(f"Layer {spec.number}: {spec.title}")
        print(f"  attention ({spec.n_heads(tasks)} heads): {spec.attention_does}")
        for h, head in enumerate(layer.attention.heads):
            print(f"    head {h}: {head.label}")
        print(f"  MLP ({spec.n_units(tasks)} units): {spec.mlp_does}")
        print(f"  reads {', '.join(spec.reads)}; writes {', '.join(spec.writes)}")
    print("\nResidual stream:\n" + model.layout.describe())
    return 0


def add_force_option(p) -> None:
    """``--force``: overwrite existing output files (never a file that is also an input)."""
    p.add_argument("--force", action="store_true",
                   help="overwrite an existing output file (never one of the command's inputs)")


def add_memory_option(p) -> None:
    """``--memory-limit SIZE``: refuse jobs estimated to need more (default: SUPERPOSE_MEMORY_LIMIT or 80 %
    of the available memory; ``superpose.resources``)."""
    p.add_argument("--memory-limit", metavar="SIZE",
                   help="refuse a job estimated to need more memory than SIZE (4G, 512M, bytes); default "
                        "$SUPERPOSE_MEMORY_LIMIT, else 80%% of the memory available")


def _parser() -> _Parser:
    parser = _Parser(prog="superpose", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add_build_options(p, max_examples_help):
        p.add_argument("--max-examples", type=int, default=None, help=max_examples_help)
        p.add_argument("--sharpness", type=float, default=DEFAULT_SHARPNESS,
                       help=f"attention inverse temperature beta (default {DEFAULT_SHARPNESS:g})")

    def add_output_options(p):
        p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
        p.add_argument("--json", action="store_true", help="print one JSON object (deterministic: no run times)")
        p.add_argument("--timing", action="store_true", help="also report the run time (under \"timing\")")

    demo = sub.add_parser("demo", help="the main job on the embedded digit tasks")
    add_output_options(demo)
    demo.add_argument("--sharpness", type=float, default=DEFAULT_SHARPNESS)
    demo.set_defaults(func=_cmd_demo)

    run = sub.add_parser("run", help="build for TASKS.json, run PROMPT.json, compare with the prediction")
    run.add_argument("tasks", metavar="TASKS.json")
    run.add_argument("prompt", metavar="PROMPT.json")
    add_output_options(run)
    run.add_argument("--weights", help="run a model saved by `superpose build` instead of building one")
    add_build_options(run, "build for up to M examples (default: the prompt's)")
    run.add_argument("--executor", choices=["standard", "chunked"], default="standard",
                     help="standard: superpose.model; chunked: block-wise attention (superpose.verify.chunked), "
                          "memory linear in the prompt length")
    run.add_argument("--block", type=int, default=256, help="block size of the chunked executor (default 256)")
    run.add_argument("--certify", action="store_true",
                     help="check in this run that every flag is bit-exact and report the bound certified for this prompt")
    add_memory_option(run)
    run.set_defaults(func=_cmd_run)

    bld = sub.add_parser("build", help="build the weights for TASKS.json and save them")
    bld.add_argument("tasks", metavar="TASKS.json")
    bld.add_argument("-o", "--output", required=True, metavar="FILE.npz")
    add_build_options(bld, f"longest prompt, in examples (default {DEFAULT_MAX_EXAMPLES})")
    add_force_option(bld)
    add_memory_option(bld)
    bld.set_defaults(func=_cmd_build)

    layers = sub.add_parser("layers", help="print what each of the seven layers does, and the residual layout")
    layers.add_argument("tasks", metavar="TASKS.json", nargs="?")
    layers.add_argument("--markdown", action="store_true",
                        help="print the README's table of the seven layers (from the layer specs) and stop")
    add_build_options(layers, f"longest prompt, in examples (default {DEFAULT_MAX_EXAMPLES})")
    add_memory_option(layers)
    layers.set_defaults(func=_cmd_layers)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        return args.func(args)
    except (_UsageError, SuperposeError) as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except MemoryError:  # the estimates are estimates: still one line, not a traceback
        print("error: out of memory; lower the job's size or --memory-limit (see `superpose run --help`)",
              file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


def _one_line(message: str) -> str:
    """Messages quote user input (names, keys, paths): keep the report on one line."""
    return " ".join(message.split()) if "\n" in message or "\r" in message else message


if __name__ == "__main__":
    sys.exit(main())
