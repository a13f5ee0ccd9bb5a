"""``superpose examples [NAME ...] [--out DIR] [--small] [--notebooks DIR [--force]]``: run the worked examples.

Each example prints what it shows and saves its figures (PNG) into ``--out`` (default
``figures/`` in the current directory; ``make examples`` asks for ``examples/figures``, the
figures the README shows). With no
NAME every example runs, in order. A NAME is the short name (``digits``) or the module
name (``digits_in_superposition``).

The examples are also notebooks: their ``# %%`` / ``# %% [markdown]`` cell markers are
jupytext's "percent" format, so ``jupytext --to notebook examples/NAME.py`` (or opening
the file in Jupyter with jupytext installed) gives a notebook with the prose as markdown
cells. ``--notebooks DIR`` converts each example (jupytext), executes it in a fresh
kernel (nbclient; the working directory is DIR, so the figures land in ``DIR/figures``
and are shown inline) and writes ``DIR/NAME.ipynb`` atomically, refusing existing files
without ``--force``. It needs the ``notebook`` extra (``pip install 'superpose[notebook]'``);
``make notebooks`` runs it for every example into ``build/notebooks``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import time

from superpose.examples import DEFAULT_OUT
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
    "inside": "inside_a_trained_model",
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


def source_of(module: str) -> str:
    """The path of an example's source file (the installed module, editable or not)."""
    return importlib.util.find_spec(f"superpose.examples.{module}").origin


def notebook_of(module: str):
    """The example ``module`` as an (unexecuted) notebook: jupytext reads its percent-format cells."""
    import jupytext

    notebook = jupytext.read(source_of(module), fmt="py:percent")
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def execute_notebook(notebook, directory: str, timeout: int = 900):
    """Run every cell of ``notebook`` in a fresh Python kernel whose working directory is ``directory``."""
    from nbclient import NotebookClient

    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": directory}}).execute()
    return notebook


def run_notebooks(args) -> int:
    """``--notebooks DIR``: write ``DIR/<module>.ipynb``, executed, for each example asked for."""
    from superpose.commands import require_extra
    from superpose.files import atomic_write, check_outputs, make_directory

    modules = resolve(args.names)
    directory = args.notebooks
    check_outputs(directory, [f"{m}.ipynb" for m in modules], args.force, what="--notebooks")
    for module in ("jupytext", "nbclient", "nbformat"):
        require_extra(module, "notebook", "--notebooks")
    import nbclient
    import nbformat

    make_directory(directory, what="--notebooks")
    for module in modules:
        start = time.perf_counter()
        notebook = notebook_of(module)
        try:
            execute_notebook(notebook, directory)
        except nbclient.exceptions.CellExecutionError as e:
            name, value = getattr(e, "ename", type(e).__name__), getattr(e, "evalue", "")
            print(f"error: notebook {module} failed: {name}: {value}", file=sys.stderr)
            return 1
        path = os.path.join(directory, f"{module}.ipynb")
        with atomic_write(path, force=args.force, what="--notebooks") as tmp:
            nbformat.write(notebook, tmp)
        print(f"wrote {path} (executed in {time.perf_counter() - start:.1f} s)")
    print(f"figures in {os.path.join(directory, 'figures')}")
    return 0


def run_examples(args) -> int:
    if args.notebooks:
        return run_notebooks(args)
    from superpose.commands import require_extra

    modules = resolve(args.names)
    require_extra("matplotlib", "plot", "superpose examples")
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
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"folder for the PNG figures (default {DEFAULT_OUT}/ in the current directory)")
    parser.add_argument("--small", action="store_true", help="smaller sizes, as under test")
    parser.add_argument("--notebooks", metavar="DIR",
                        help="instead: write each example as an executed notebook DIR/NAME.ipynb (jupytext + "
                             "nbclient; needs the notebook extra); its figures go into DIR/figures")
    parser.add_argument("--force", action="store_true", help="with --notebooks: overwrite existing notebooks")
    parser.set_defaults(func=run_examples)
