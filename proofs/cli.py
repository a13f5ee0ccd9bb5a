"""``superpose prove [TASKS.json]``: run every symbolic check of ``proofs/theorem.md``, one verdict per lemma.

Without TASKS.json the model-dependent lemmas (D, P2, Q, E, L1-L7, S3, X) run on the
four built-in proof models; with it they run on the weights built for that task set
(``--max-examples``, default 3, keeps the exact-arithmetic run X small), X on seeded
random prompts of up to that many examples plus the empty prompt. The other lemmas
(gadgets, positional gap, softmax, bound) do not depend on a task set.

Exit status 0 when every lemma is proved, 1 when any check fails (2 for bad usage,
as for every ``superpose`` command).
"""

from __future__ import annotations

import inspect
import sys

from . import checks

PROVE_MAX_EXAMPLES = 3
PROVE_RANDOM_PROMPTS = 8
ONE_TOKEN_LEMMAS = {"D", "P2", "L1", "L2", "L3", "L4", "L5", "L6", "L7", "S3"}


def register(subparsers) -> None:
    """Add the ``prove`` subcommand (called by ``superpose.cli`` for each module in COMMAND_MODULES)."""
    parser = subparsers.add_parser(
        "prove", help="machine-check the theorem: run every sympy check and print one verdict per lemma")
    parser.add_argument("tasks", metavar="TASKS.json", nargs="?",
                        help="prove the model-dependent lemmas on the weights built for this task set")
    parser.add_argument("--max-examples", type=int, default=PROVE_MAX_EXAMPLES,
                        help=f"with TASKS.json: build for prompts of up to M examples (default {PROVE_MAX_EXAMPLES})")
    parser.add_argument("--sharpness", type=float, default=None, help="with TASKS.json: attention sharpness")
    parser.add_argument("--only", nargs="+", metavar="ID",
                        help="run only these lemmas, by id (e.g. G1 P1 L3 X)")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print what each check established")
    parser.set_defaults(func=_cmd_prove)


def _cmd_prove(args) -> int:
    selected = list(checks.ALL_CHECKS)
    if args.only:
        known = {checks.lemma_id(c): c for c in selected}
        unknown = [i for i in args.only if i not in known]
        if unknown:
            from superpose.setting import SuperposeError
            raise SuperposeError(f"--only: unknown lemma id(s) {', '.join(unknown)}; known: {', '.join(known)}")
        selected = [c for c in selected if checks.lemma_id(c) in set(args.only)]
    arguments = _arguments_for(args)
    model = arguments.get("model")
    if model is not None and model.tasks.answer_length > 1:
        skipped = [c for c in selected if checks.lemma_id(c) in ONE_TOKEN_LEMMAS]
        selected = [c for c in selected if c not in skipped]
        if skipped:
            print(f"answers of {model.tasks.answer_length} tokens: the layer lemmas "
                  f"({', '.join(checks.lemma_id(c) for c in skipped)}) state the one-token circuit; "
                  "the exact run X certifies these weights", flush=True)
    results = []
    for check in selected:
        result = check(**{name: value for name, value in arguments.items()
                          if name in inspect.signature(check).parameters})
        results.append(result)
        print(result.line(), flush=True)
        if args.verbose or not result.proved:
            print(f"                  {result.detail}  [{result.check}]", flush=True)
    failed = [r.name for r in results if not r.proved]
    seconds = sum(r.seconds for r in results)
    print(f"{len(results) - len(failed)} of {len(results)} lemmas proved in {seconds:.1f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    sys.stdout.flush()
    return 1 if failed else 0


def _arguments_for(args) -> dict:
    """Keyword arguments for the model-dependent checks: ``model`` and ``cases`` (X), or none."""
    if not args.tasks:
        return {}
    from superpose.construct.build import DEFAULT_SHARPNESS, build
    from superpose.setting import Prompt, TaskSet, load_json_file

    from .subjects import random_prompts

    tasks = TaskSet.from_json(load_json_file(args.tasks, "TASKS"))
    sharpness = DEFAULT_SHARPNESS if args.sharpness is None else args.sharpness
    model = build(tasks, max_examples=args.max_examples, sharpness=sharpness)
    prompts = [Prompt([], [0] * tasks.slots)] + random_prompts(tasks, model.max_examples, PROVE_RANDOM_PROMPTS, seed=0)
    prompts += [Prompt(p.examples, p.query, tasks.answer_of(tasks.tasks[0], p.query)[:j])
                for p in prompts[:3] for j in range(1, tasks.answer_length)]   # continuation sites
    print(f"Task set {args.tasks}: {model.summary()}", flush=True)
    return {"model": model, "cases": [(model, prompts)]}
