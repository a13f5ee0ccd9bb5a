"""The ``superpose`` command line.

    superpose demo   [--dtype float32|float64] [--json]
    superpose run    TASKS.json PROMPT.json [--dtype ...] [--json] [--weights FILE.npz]
                     [--max-examples M] [--sharpness B]
    superpose build  TASKS.json -o FILE.npz [--max-examples M] [--sharpness B]
    superpose layers [TASKS.json] [--max-examples M] [--markdown]
    superpose sweep / plot / bench / export ...              (verify/cli.py)
    superpose prove    [TASKS.json] [--only ID ...] [-v]     (proofs/cli.py)
    superpose examples [NAME ...] [--out DIR] [--small]     (examples/cli.py)
    superpose train ... / superpose evaluate-mixtures ...   (train/cli.py)

Bad input of any kind exits with status 2 and one line on stderr (no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
from typing import Sequence

import numpy as np

from superpose.construct.build import DEFAULT_MAX_EXAMPLES, DEFAULT_SHARPNESS, LAYER_SPECS, SuperposeModel, build
from superpose.demo import digit_tasks, mixed_prompt
from superpose.setting import (
    InputFileError,
    Prompt,
    SuperposeError,
    TaskSet,
    load_json_file,
    validate_prompt,
)


# Sub-packages that add subcommands: each module defines register(subparsers), which adds
# its parsers with set_defaults(func=...) returning an exit code.
COMMAND_MODULES: tuple[str, ...] = (
    "superpose.verify.cli", "superpose.proofs.cli", "superpose.examples.cli", "superpose.train.cli")


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line on stderr, exit 2 (argparse prints usage too)
        raise _UsageError(f"{self.prog}: {message}")


def _report(model: SuperposeModel, prompt: Prompt, dtype: str) -> dict:
    """Model vs analytic prediction at every prediction position (the ``--json`` object)."""
    from superpose.verify.analytic import predict

    start = time.perf_counter()
    outputs = model.run([prompt], dtype=dtype)[0]
    seconds = time.perf_counter() - start
    expected = predict(model.tasks, prompt)
    bound = model.error_bound(dtype, prompt_length=model.tasks.prompt_length(prompt.n_examples))
    predictions = []
    for i, (out, ana) in enumerate(zip(outputs, expected)):
        predictions.append({
            "example": i,
            "model": [float(x) for x in out],
            "analytic": [float(x) for x in ana],
            "max_abs_error": float(np.abs(out - ana).max()),
            "bound": bound.total if math.isfinite(bound.total) else None,
        })
    c = model.config
    return {
        "model": {"layers": c.n_layers, "heads": c.n_heads, "d_model": c.d_model, "params": model.n_params},
        "dtype": dtype,
        "sharpness": model.sharpness,
        "bound": bound.to_json() if bound.holds else {**bound.to_json(), "total": None, "rounding": None},
        "seconds": seconds,
        "predictions": predictions,
    }


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
        if abs(m) > 1e-9 or a != 0:
            print(f"  {tasks.name_of(v):>8}  {m:12.9f}  {a:12.9f}  {abs(m - a):10.2e}")
    worst = max(p["max_abs_error"] for p in report["predictions"])
    bound = report["bound"]["total"]
    print(f"\nMax |model - analytic| over all {len(report['predictions'])} prediction positions "
          f"({report['dtype']}): {worst:.3e}")
    print(f"Error bound (sharpness {model.sharpness:g}): "
          + (f"{bound:.3e} = leak {report['bound']['leak']:.1e} + rounding {report['bound']['rounding']:.1e}"
             if bound is not None else "none: sharpness too low for the snaps (hypothesis H fails)"))
    print(f"Model: {c.n_layers} layers, {c.n_heads} head{'s' if c.n_heads > 1 else ''} per attention layer "
          f"(one per input slot read), d_model {c.d_model}, "
          f"{model.n_params:,} parameters, context {c.n_ctx} tokens")
    status = "within" if bound is not None and worst <= bound else "NOT within"
    print(f"Result: the model's output is {status} the bound of the analytic prediction.")


def _load_tasks(path: str) -> TaskSet:
    return TaskSet.from_json(load_json_file(path, "TASKS"))


def _load_prompt(path: str) -> Prompt:
    return Prompt.from_json(load_json_file(path, "PROMPT"))


def _model_for(tasks: TaskSet, prompt: Prompt, args) -> SuperposeModel:
    if args.weights:
        from superpose.io import load

        model = load(args.weights, expect_tasks=tasks)
        validate_prompt(tasks, prompt, model.max_examples)
        return model
    validate_prompt(tasks, prompt)
    m = args.max_examples if args.max_examples is not None else prompt.n_examples
    validate_prompt(tasks, prompt, m)
    return build(tasks, max_examples=m, sharpness=args.sharpness)


def _cmd_demo(args) -> int:
    tasks = digit_tasks()
    prompt = mixed_prompt(tasks)
    model = build(tasks, max_examples=DEFAULT_MAX_EXAMPLES, sharpness=args.sharpness)
    report = _report(model, prompt, args.dtype)
    if args.json:
        print(json.dumps(report))
    else:
        print("superpose demo: three digit tasks in superposition (copy, next digit, to word)\n")
        _print_table(model, prompt, report)
    return 0


def _cmd_run(args) -> int:
    tasks = _load_tasks(args.tasks)
    prompt = _load_prompt(args.prompt)
    model = _model_for(tasks, prompt, args)
    report = _report(model, prompt, args.dtype)
    if args.json:
        print(json.dumps(report))
    else:
        _print_table(model, prompt, report)
    return 0


def _cmd_build(args) -> int:
    from superpose.io import save

    tasks = _load_tasks(args.tasks)
    m = args.max_examples if args.max_examples is not None else DEFAULT_MAX_EXAMPLES
    model = build(tasks, max_examples=m, sharpness=args.sharpness)
    try:
        save(model, args.output)
    except OSError as e:
        raise InputFileError(f"--output: cannot write {args.output}: {e}") from None
    print(f"wrote {args.output}: {model.summary()}")
    return 0


def _cmd_layers(args) -> int:
    if args.markdown:
        from superpose.construct.spec import markdown_table

        print(markdown_table(LAYER_SPECS))
        return 0
    tasks = _load_tasks(args.tasks) if args.tasks else digit_tasks()
    m = args.max_examples if args.max_examples is not None else DEFAULT_MAX_EXAMPLES
    model = build(tasks, max_examples=m, sharpness=args.sharpness)
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
    parser = _Parser(prog="superpose", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add_build_options(p, max_examples_help):
        p.add_argument("--max-examples", type=int, default=None, help=max_examples_help)
        p.add_argument("--sharpness", type=float, default=DEFAULT_SHARPNESS,
                       help=f"attention inverse temperature beta (default {DEFAULT_SHARPNESS:g})")

    def add_output_options(p):
        p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
        p.add_argument("--json", action="store_true", help="print one JSON object")

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
    run.set_defaults(func=_cmd_run)

    bld = sub.add_parser("build", help="build the weights for TASKS.json and save them")
    bld.add_argument("tasks", metavar="TASKS.json")
    bld.add_argument("-o", "--output", required=True, metavar="FILE.npz")
    add_build_options(bld, f"longest prompt, in examples (default {DEFAULT_MAX_EXAMPLES})")
    bld.set_defaults(func=_cmd_build)

    layers = sub.add_parser("layers", help="print what each of the seven layers does, and the residual layout")
    layers.add_argument("tasks", metavar="TASKS.json", nargs="?")
    layers.add_argument("--markdown", action="store_true",
                        help="print the README's table of the seven layers (from the layer specs) and stop")
    add_build_options(layers, f"longest prompt, in examples (default {DEFAULT_MAX_EXAMPLES})")
    layers.set_defaults(func=_cmd_layers)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        return args.func(args)
    except (_UsageError, SuperposeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
