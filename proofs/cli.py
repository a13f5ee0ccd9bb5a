"""``superpose prove``: run every symbolic check of ``proofs/theorem.md``, one verdict line per lemma.

Exit status 0 when every lemma is proved, 1 when any check fails (2 for bad usage,
as for every ``superpose`` command).
"""

from __future__ import annotations

import sys

from . import checks


def register(subparsers) -> None:
    """Add the ``prove`` subcommand (called by ``superpose.cli`` for each module in COMMAND_MODULES)."""
    parser = subparsers.add_parser(
        "prove", help="machine-check the theorem: run every sympy check and print one verdict per lemma")
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
    results = []
    for check in selected:
        result = check()
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
