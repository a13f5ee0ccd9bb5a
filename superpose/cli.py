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
What the subcommands share (options, reading inputs, the model for a job) is in
``superpose.commands``; nothing imports this module.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import math
import sys
import time
import warnings
from typing import Sequence

from superpose.commands import (add_force_option, add_memory_option, build_checked, limit_of, load_prompt,
                                load_tasks, model_for_prompt)
from superpose.construct.build import DEFAULT_MAX_EXAMPLES, DEFAULT_SHARPNESS, LAYER_SPECS, SuperposeModel, build
from superpose.demo import digit_tasks, mixed_prompt
from superpose.setting import Prompt, PromptError, SuperposeError, tokenize, validate_prompt
from superpose.verify.compare import run_report


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


def _report(model: SuperposeModel, prompt: Prompt, dtype: str, executor: str = "standard", block: int = 256,
            timing: bool = False, certify: bool = False) -> dict:
    """The ``--json`` object (``superpose.verify.compare.run_report``), run by ``executor``."""
    if executor != "chunked":
        return run_report(model, prompt, dtype, timing=timing, certify=certify)
    from superpose.model import run_tokens  # the one executor, attention in blocks of --block

    validate_prompt(model.tasks, prompt, model.max_examples)
    start = time.perf_counter()
    with warnings.catch_warnings():  # a sharpness beyond the dtype's range: reported, not warned about
        warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
        readout = run_tokens(model, tokenize(model.tasks, prompt)[None, :], dtype, block=block)[0]
    seconds = time.perf_counter() - start
    report = run_report(model, prompt, dtype, readout=readout, executor=executor, certify=certify)
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


def _check_block(args) -> None:
    block = getattr(args, "block", 256)
    if block < 1 or block & (block - 1):
        raise PromptError(f"--block: must be a power of two, got {block}")


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
    limit = limit_of(args)
    tasks = load_tasks(args.tasks, limit)
    prompt = load_prompt(args.prompt, limit)
    model = model_for_prompt(tasks, prompt, args, limit)
    report = _report(model, prompt, args.dtype, args.executor, args.block, timing=args.timing,
                     certify=args.certify)
    if args.json:
        _print_json(report)
    else:
        _print_table(model, prompt, report)
    return _exit_status(report)


def _cmd_build(args) -> int:
    from superpose.files import check_output
    from superpose.io import save

    check_output(args.output, args.force, [args.tasks])  # refuse at once, before building anything
    limit = limit_of(args)
    tasks = load_tasks(args.tasks, limit)
    model = build_checked(tasks, args, limit)
    save(model, args.output, force=args.force, inputs=[args.tasks])
    print(f"wrote {args.output}: {model.summary()}")
    return 0


def _cmd_layers(args) -> int:
    if args.markdown:
        from superpose.construct.spec import markdown_table

        print(markdown_table(LAYER_SPECS))
        return 0
    limit = limit_of(args)
    tasks = load_tasks(args.tasks, limit) if args.tasks else digit_tasks()
    model = build_checked(tasks, args, limit)
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


def _parser() -> _Parser:
    return _parser_for(COMMAND_MODULES)


@functools.lru_cache(maxsize=4)
def _parser_for(command_modules: tuple[str, ...]) -> _Parser:
    """The parser, built once per process and set of command modules (building imports every
    command's module and registers its options: about 10 ms, paid by every ``main`` call before)."""
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
                     help="kept for compatibility: both run the one executor (superpose.model), attention "
                          "block by block beyond 256 tokens; chunked uses blocks of --block")
    run.add_argument("--block", type=int, default=256, help="with --executor chunked: the attention block (default 256)")
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

    for name in command_modules:
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
