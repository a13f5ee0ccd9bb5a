"""What the ``superpose`` subcommands share: common options, reading TASKS/PROMPT files, and
the model for a job, built or loaded only once it fits the memory limit.

``superpose.cli`` (the application edge) and the subcommand modules of the sub-packages
(``verify/cli.py``, ``verify/explain_cli.py``, ...) import these; nothing imports
``superpose.cli``. Every failure is a ``SuperposeError`` subclass naming what is wrong.
"""

from __future__ import annotations

from superpose.construct.build import DEFAULT_MAX_EXAMPLES, SuperposeModel, build
from superpose.resources import MemoryLimit, check_input_file, estimate_for_config, memory_limit, require_fits
from superpose.setting import (BuildError, Prompt, PromptError, SuperposeError, TaskSet, load_json_file,
                               validate_prompt)


class MissingExtraError(SuperposeError):
    """A subcommand needs an optional extra (matplotlib, torch, ...) that is not installed."""


def require_extra(module: str, extra: str, what: str):
    """Import ``module`` for ``what``, or raise ``MissingExtraError`` naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(f"{what} needs the {extra} extra ({module} is not installed): "
                                f"pip install 'superpose[{extra}]'") from None


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


def limit_of(args) -> MemoryLimit:
    """The memory limit a command's ``--memory-limit`` (if it has one) asks for."""
    return memory_limit(getattr(args, "memory_limit", None))


def load_tasks(path: str, limit: MemoryLimit | None = None) -> TaskSet:
    """A TASKS.json file, refused before reading when too large for ``limit``."""
    check_input_file(path, limit or memory_limit(), "TASKS")
    return TaskSet.from_json(load_json_file(path, "TASKS"))


def load_prompt(path: str, limit: MemoryLimit | None = None) -> Prompt:
    """A PROMPT.json file, refused before reading when too large for ``limit``."""
    check_input_file(path, limit or memory_limit(), "PROMPT")
    return Prompt.from_json(load_json_file(path, "PROMPT"))


def model_for_prompt(tasks: TaskSet, prompt: Prompt, args, limit: MemoryLimit) -> SuperposeModel:
    """The model to run ``prompt`` on (``args.weights`` loaded, or built for ``args.max_examples``
    or the prompt's examples), after checking that the job fits ``limit``."""
    T = tasks.prompt_length(prompt.n_examples)
    if args.weights:
        from superpose.io import load, read_header
        from superpose.resources import check_memory
        from superpose.setting import WeightsFileError

        header = read_header(args.weights, limit)
        if header.tasks != tasks:
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


def build_checked(tasks: TaskSet, args, limit: MemoryLimit) -> SuperposeModel:
    """The model for ``tasks`` and ``args.max_examples`` (default ``DEFAULT_MAX_EXAMPLES``), built once it
    fits ``limit``."""
    m = args.max_examples if args.max_examples is not None else DEFAULT_MAX_EXAMPLES
    if m < 0:
        raise BuildError(f"--max-examples: must be >= 0, got {m}")
    require_fits(tasks, m, limit)
    return build(tasks, max_examples=m, sharpness=args.sharpness)


__all__ = ["MissingExtraError", "require_extra", "add_force_option", "add_memory_option", "limit_of", "load_tasks",
           "load_prompt", "model_for_prompt", "build_checked"]
