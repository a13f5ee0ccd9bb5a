"""``superpose explain [TASKS.json PROMPT.json] -o PAGE.html``: the explain page (``superpose.verify.explain``).

    superpose explain TASKS.json PROMPT.json -o trace.html [--force] [--dtype float32|float64]
                      [--max-examples M] [--sharpness B] [--memory-limit SIZE]
    superpose explain -o demo.html          (no files: the demo's digit tasks and mixed prompt)

Writes one self-contained HTML file (scripts, style and data inline; it opens from disk
with no network) showing one prompt flowing through the seven layers. The model is built
as ``superpose run`` builds it, and the page's output numbers are those ``superpose run
--json`` prints for the same files and ``--dtype``. The dtype defaults to float64 here
(``run`` defaults to float32): the page is for reading values, and in float64 they come
out as the exact fractions the construction computes. An existing output file is refused
without ``--force`` and an input is never overwritten (``superpose.files``); bad input
exits 2 with one line.
"""

from __future__ import annotations

import os

from superpose.setting import SuperposeError


class ExplainError(SuperposeError):
    """Bad arguments to ``superpose explain``."""


def _command_text(args) -> str:
    """The command, with file names only (a page is often shared: no local paths in it)."""
    words = ["superpose explain"]
    if args.tasks:
        words += [os.path.basename(args.tasks), os.path.basename(args.prompt)]
    words.append(f"--dtype {args.dtype}")
    if args.max_examples is not None:
        words.append(f"--max-examples {args.max_examples}")
    from superpose.construct.build import DEFAULT_SHARPNESS

    if args.sharpness != DEFAULT_SHARPNESS:
        words.append(f"--sharpness {args.sharpness:g}")
    return " ".join(words)


def _cmd_explain(args) -> int:
    from superpose.commands import limit_of, load_prompt, load_tasks, model_for_prompt
    from superpose.construct.build import planned_config
    from superpose.demo import digit_tasks, mixed_prompt
    from superpose.files import check_output
    from superpose.resources import check_memory, estimate_for_config
    from superpose.verify.explain import page_data, render, with_capture, write_page

    if (args.tasks is None) != (args.prompt is None):
        raise ExplainError("explain: give both TASKS.json and PROMPT.json, or neither (the demo)")
    inputs = [args.tasks, args.prompt]
    check_output(args.output, args.force, inputs)  # refuse at once, before any work
    limit = limit_of(args)
    if args.tasks:
        tasks, prompt = load_tasks(args.tasks, limit), load_prompt(args.prompt, limit)
    else:
        tasks = digit_tasks()
        prompt = mixed_prompt(tasks)
    # the activation capture keeps every layer's attention pattern: check it fits before building
    m = args.max_examples if args.max_examples is not None else prompt.n_examples
    if 0 <= prompt.n_examples <= m:
        config = planned_config(tasks, m)
        T = tasks.prompt_length(prompt.n_examples, len(prompt.query_prefix))
        check_memory(with_capture(estimate_for_config(config, T, 1, args.dtype), config, T, args.dtype), limit,
                     f"explaining a {T}-token prompt (every layer's attention captured)",
                     "use a shorter prompt or raise --memory-limit / SUPERPOSE_MEMORY_LIMIT")
    args.weights, args.executor, args.block = None, "standard", 256
    model = model_for_prompt(tasks, prompt, args, limit)
    data = page_data(model, prompt, args.dtype, command=_command_text(args))
    size = write_page(args.output, render(data), force=args.force, inputs=inputs)
    out = data["outputs"]
    q = out["query"]
    if any(p is None for p in q["model"]):
        answer = "not finite (the model's output overflowed)"
    else:
        answer = ", ".join(f"{q['token_names'][v]} {p:.6g}" for v, p in enumerate(q["model"])
                           if abs(p) > data["tolerance"])
    shown = "" if data["hidden"] is None else \
        f"; summarised: {len(data['shown'])} of {data['T']} positions shown (readable up to {data['readable_tokens']})"
    print(f"wrote {args.output} ({size / 1024:.0f} KiB): {data['T']} tokens, 7 layers, "
          f"{sum(len(layer['heads']) for layer in data['layers'])} heads drawn{shown}")
    print(f"query answer: {answer}; max |model - analytic| {out['max_abs_error']:.3g} ({out['status']})"
          if out["max_abs_error"] is not None else f"query answer: {answer} ({out['status']})")
    return 0


def register(subparsers) -> None:
    from superpose.commands import add_force_option, add_memory_option
    from superpose.construct.build import DEFAULT_SHARPNESS

    p = subparsers.add_parser(
        "explain", help="write one self-contained HTML page showing a prompt flowing through the seven layers",
        description="Run one prompt with activation capture and write a self-contained HTML page (no network "
                    "needed): the tokens, every head's attention pattern, the named residual entries each "
                    "sublayer writes, and the output next to the analytic prediction with the error bound. "
                    "With no TASKS.json and PROMPT.json: the demo's digit tasks and mixed prompt.")
    p.add_argument("tasks", metavar="TASKS.json", nargs="?")
    p.add_argument("prompt", metavar="PROMPT.json", nargs="?")
    p.add_argument("-o", "--output", required=True, metavar="PAGE.html")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                   help="run dtype (default float64: values read as exact fractions)")
    p.add_argument("--max-examples", type=int, default=None, help="build for up to M examples (default: the prompt's)")
    p.add_argument("--sharpness", type=float, default=DEFAULT_SHARPNESS,
                   help=f"attention inverse temperature beta (default {DEFAULT_SHARPNESS:g})")
    add_force_option(p)
    add_memory_option(p)
    p.set_defaults(func=_cmd_explain)
