"""``superpose generate``: decode the query's answer token by token, and score the decode.

    superpose generate TASKS.json PROMPT.json [--decoder greedy|sample|beam|superposed] [--samples N]
                       [--seed S] [--beam-width W] [--threshold T] [--mode conditioned|marginal]
                       [--model constructed|analytic] [--dtype float32|float64] [--max-examples M]
                       [--sharpness B] [--memory-limit SIZE] [--json]

Decoding starts after the query's ``query_prefix`` (if any) and produces the rest of an answer
of ``answer_length`` tokens. ``--model constructed`` (the default) builds the transformer
(``superpose.build``; ``build(..., conditioned=False)`` for ``--mode marginal``) and decodes from
its readout (exact up to the bound on the separable class, ``verify.analytic.separable``; what its
specs state elsewhere); ``--model analytic`` decodes from the analytic prediction
(``superpose.verify.analytic``, exact fractions). ``--json`` prints::

    {"decoder": ..., "answers": [{"tokens": [A ints], "probability": p}, ...], "forward_passes": n,
     "metrics": {"kl": ..., "coverage": ..., "chimera_mass": ..., "collapse_point": j}}

answers sorted by decreasing probability (ties: smaller tokens first); ``kl`` is ``null`` when
infinite (a task's answer was not produced), ``coverage`` ``null`` when no task survives the
query's prefix. It writes no file. Bad input exits 2 with one line on stderr.
"""

from __future__ import annotations

import json
import math

from superpose.setting import BuildError, TaskSet, validate_prompt

from .generation import DECODERS, DEFAULT_THRESHOLD, GenerationError, analytic_step, decode, metrics, model_step


def _build(tasks: TaskSet, prompt, args):
    """The constructed model for ``tasks`` (marginal readout when ``--mode marginal``), after the memory check."""
    from superpose.construct.build import build
    from superpose.resources import memory_limit, require_fits

    m = args.max_examples if args.max_examples is not None else prompt.n_examples
    if m < 0:
        raise BuildError(f"--max-examples: must be >= 0, got {m}")
    validate_prompt(tasks, prompt, m)
    require_fits(tasks, m, memory_limit(args.memory_limit), run_length=tasks.max_prompt_length(prompt.n_examples),
                 prompt_examples=prompt.n_examples, dtype=args.dtype)
    return build(tasks, max_examples=m, sharpness=args.sharpness, conditioned=args.mode == "conditioned")


def _check_options(args) -> None:
    if args.samples < 1:
        raise GenerationError(f"--samples: must be >= 1, got {args.samples}")
    if args.seed < 0:
        raise GenerationError(f"--seed: must be >= 0, got {args.seed}")
    if args.beam_width < 1:
        raise GenerationError(f"--beam-width: must be >= 1, got {args.beam_width}")
    if not 0 <= args.threshold < 1:
        raise GenerationError(f"--threshold: must lie in [0, 1), got {args.threshold}")


def _print_text(tasks: TaskSet, prompt, report: dict) -> None:
    from .analytic import task_mixture

    def word(tokens):
        return " ".join(tasks.name_of(v) for v in tokens)

    shares = task_mixture(tasks, prompt.examples)
    owners: dict[tuple, list[str]] = {}
    for p, task in zip(shares, tasks.tasks):
        if p:
            owners.setdefault(tasks.answer_of(task, prompt.query), []).append(f"{task.name} {p}")
    prefix = f" after the prefix [{word(prompt.query_prefix)}]" if prompt.query_prefix else ""
    print(f"Query {[tasks.name_of(x) for x in prompt.query]}{prefix}: {report['decoder']} decoding, "
          f"{report['forward_passes']} forward passes")
    print(f"  {'answer':>20}  {'probability':>12}   answer of (task share)")
    for answer in report["answers"]:
        tokens = tuple(answer["tokens"])
        print(f"  {word(tokens):>20}  {answer['probability']:12.9f}   "
              f"{' + '.join(owners.get(tokens, [])) or 'chimera (no present task answers it)'}")
    if not report["answers"]:
        print("  (no complete answer)")
    m = report["metrics"]
    kl = "inf nats (a task's answer is missing)" if m["kl"] is None else f"{m['kl']:.3g} nats"
    coverage = "-" if m["coverage"] is None else f"{m['coverage']:.3g}"
    print(f"Against the analytic sequence mixture: KL {kl}, coverage {coverage}, "
          f"chimera mass {m['chimera_mass']:.3g}, collapse point {m['collapse_point']}")


def _cmd_generate(args) -> int:
    from superpose.commands import load_prompt, load_tasks
    from superpose.resources import memory_limit

    _check_options(args)
    limit = memory_limit(args.memory_limit)
    tasks = load_tasks(args.tasks, limit)
    prompt = load_prompt(args.prompt, limit)
    validate_prompt(tasks, prompt)
    if args.model == "analytic":
        step = analytic_step(tasks, prompt, args.mode, exact=True)
    else:
        step = model_step(_build(tasks, prompt, args), prompt, args.dtype)
    decoded = decode(step, args.decoder, samples=args.samples, seed=args.seed, beam_width=args.beam_width,
                     threshold=args.threshold)
    report = decoded.to_json()
    report["metrics"] = metrics(tasks, prompt, decoded.answers).to_json()
    if args.json:
        print(json.dumps(report, allow_nan=False))
    else:
        _print_text(tasks, prompt, report)
    return 0


def number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise GenerationError(f"expected a number, got {text[:60]!r}") from None
    if not math.isfinite(value):
        raise GenerationError(f"expected a finite number, got {text[:60]!r}")
    return value


def register(subparsers) -> None:
    from superpose.commands import add_memory_option
    from superpose.construct.build import DEFAULT_SHARPNESS

    g = subparsers.add_parser(
        "generate", help="decode the query's answer token by token (greedy, sample, beam, superposed) and score it",
        description="Decode the rest of the query's answer with one decoder and report, against the analytic "
                    "sequence-level mixture, the KL, coverage, chimera mass and collapse point.")
    g.add_argument("tasks", metavar="TASKS.json")
    g.add_argument("prompt", metavar="PROMPT.json")
    g.add_argument("--decoder", choices=DECODERS, default="superposed")
    g.add_argument("--samples", type=int, default=1, help="sample: how many answers to draw (default 1)")
    g.add_argument("--seed", type=int, default=0, help="sample: the random seed (default 0)")
    g.add_argument("--beam-width", type=int, default=2, help="beam: prefixes kept per position (default 2)")
    g.add_argument("--threshold", type=number, default=DEFAULT_THRESHOLD,
                   help=f"superposed: branch on tokens above this probability (default {DEFAULT_THRESHOLD:g})")
    g.add_argument("--mode", choices=["conditioned", "marginal"], default="conditioned",
                   help="conditioned: each token given the ones generated (Bayes); marginal: per-position "
                        "marginals, no conditioning")
    g.add_argument("--model", choices=["constructed", "analytic"], default="constructed",
                   help="decode from the constructed transformer (default) or the analytic prediction")
    g.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                   help="constructed model: the dtype it runs in (default float64)")
    g.add_argument("--max-examples", type=int, default=None, help="constructed model: build for M examples")
    g.add_argument("--sharpness", type=float, default=DEFAULT_SHARPNESS,
                   help=f"constructed model: attention sharpness beta (default {DEFAULT_SHARPNESS:g})")
    add_memory_option(g)
    g.add_argument("--json", action="store_true", help="print one JSON object")
    g.set_defaults(func=_cmd_generate)


__all__ = ["register"]
