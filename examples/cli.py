"""``superpose examples [NAME ...] [--out DIR] [--small]``: run the worked examples.

Each example prints what it shows and saves its figures (PNG) into ``--out``. With no
NAME every example runs, in order. A NAME is the short name (``digits``) or the module
name (``digits_in_superposition``).
"""

from __future__ import annotations

import importlib
import time

from superpose.examples.common import DEFAULT_OUT
from superpose.setting import SuperposeError

# short name -> module in superpose.examples, in teaching order
EXAMPLES: dict[str, str] = {
    "digits": "digits_in_superposition",
    "layers": "inside_the_seven_layers",
    "curve": "learning_curve",
    "task-vectors": "task_vectors",
    "breaking": "breaking_it",
    "ab": "ab_digits",
    "add-translate": "add_and_translate",
    "countries": "country_capital",
    "generation": "generation_collapse",
}


class UnknownExampleError(SuperposeError):
    """A name given to ``superpose examples`` is not an example."""


def resolve(names: list[str]) -> list[str]:
    """Module names for the given short or module names (all examples when none)."""
    if not names:
        return list(EXAMPLES.values())
    modules = []
    for name in names:
        module = EXAMPLES.get(name, name.replace("-", "_"))
        if module not in EXAMPLES.values():
            raise UnknownExampleError(f"examples: unknown example {name!r}; choose from {', '.join(EXAMPLES)}")
        modules.append(module)
    return modules


def run_examples(args) -> int:
    modules = resolve(args.names)
    timings = []
    for module in modules:
        example = importlib.import_module(f"superpose.examples.{module}")
        start = time.perf_counter()
        example.main(out_dir=args.out, small=args.small)
        timings.append((module, time.perf_counter() - start))
        print("\n" + "=" * 78 + "\n")
    print("Ran " + ", ".join(f"{module} ({seconds:.1f} s)" for module, seconds in timings)
          + f"; figures in {args.out}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "examples", help="run the worked examples and save their figures",
        description="Run the worked examples (all, or the NAMEs given): each prints what it shows "
                    "and saves its figures as PNG into --out.")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"examples to run (default: all): {', '.join(EXAMPLES)}")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"folder for the PNG figures (default {DEFAULT_OUT})")
    parser.add_argument("--small", action="store_true", help="smaller sizes, as under test")
    parser.set_defaults(func=run_examples)
