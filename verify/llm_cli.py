"""``superpose llm-eval``: the paper's measurement on a causal LM, the constructed or a trained model.

    superpose llm-eval --model PATH [--family NAME|FILE.json] [--tasks T ...] [--shares S ...]
                       [--examples M] [--prompts N] [--seed S] [--arrow ' ->'] [--answer-prefix ' ']
                       [--separator '\\n'] [--dtype float32|float16|bfloat16] [--device cpu|cuda]
                       [--plot FILE.png]
                       [--memory-limit SIZE] -o RESULTS.jsonl [--force]

Writes one JSON line per prompt (``superpose.verify.llm_eval.evaluate``) and a last line
``{"summary": ...}``; prints the summary.
"""

from __future__ import annotations

import json
import os

from superpose.commands import require_extra
from superpose.files import atomic_write, check_output
from superpose.resources import memory_limit

from .llm_eval import LLMEvalError, PromptFormat, evaluate, family_names, load_family, summarize


def _unescape(text: str) -> str:
    """``\\n`` and ``\\t`` typed on a command line as the characters they name."""
    return text.replace("\\n", "\n").replace("\\t", "\t")


def _cmd_llm_eval(args) -> int:
    from .llm_models import load_scorer, require_lens_extra

    check_output(args.output, args.force)
    if args.plot:
        check_output(args.plot, args.force, what="--plot")
        ext = os.path.splitext(args.plot)[1][1:].lower()
        if ext not in ("png", "pdf", "svg"):
            raise LLMEvalError(f"--plot: expected a .png, .pdf or .svg file, got {args.plot!r}")
        require_extra("matplotlib", "plot", "llm-eval --plot")
    require_lens_extra()
    fmt = PromptFormat(_unescape(args.arrow), _unescape(args.answer_prefix), _unescape(args.separator))
    family = load_family(args.family) if args.family else None  # bad family before loading a model
    loaded = load_scorer(args.model, fmt, args.dtype, memory_limit(args.memory_limit), args.device)
    if loaded.family is not None:
        if family is not None and family.token_tasks != loaded.family.token_tasks:
            raise LLMEvalError(f"--family: the {loaded.kind} model reads only its own tasks; leave --family out "
                               "(or give the TASKS.json it was built or trained for)")
        family = family or loaded.family
    elif family is None:
        family = load_family("countries")
    tasks = args.tasks or list(family.tasks)
    shares = args.shares or [1 / len(tasks)] * len(tasks)
    records = evaluate(loaded.scorer, family, tasks, shares, args.examples, args.prompts, args.seed,
                       model=f"{loaded.kind}:{args.model}")
    summary = {"model": f"{loaded.kind}:{args.model}", "family": family.name, "tasks": tasks,
               **summarize(records)}
    with atomic_write(args.output, args.force) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.write(json.dumps({"summary": summary}, ensure_ascii=False) + "\n")
    if args.plot:
        from .llm_eval import plot_probability_vs_share

        with atomic_write(args.plot, args.force, what="--plot") as tmp:
            plot_probability_vs_share(records, tmp, f"{loaded.kind}: {family.name}",
                                      os.path.splitext(args.plot)[1][1:].lower())
    print(f"wrote {args.output}: {summary['prompts']} prompts, family {family.name}, tasks {tasks}; "
          f"mean KL {summary['kl_mean']:.4g} nats, mean r {summary['r_mean']:.2f} of K = {summary['K']}, "
          f"mean off-task mass {summary['off_task_mass_mean']:.4g}")
    print("mean probability of each task's answer (share): " + ", ".join(
        f"{name} {q:.4f} ({summary['share_mean'][name]:.4f})" for name, q in summary["probability_mean"].items()))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("llm-eval", help="task superposition measured on a causal LM, the constructed or "
                                              "a trained model (KL, coverage r, off-task mass)")
    p.add_argument("--model", required=True,
                   help="a Hugging Face model directory (config.json), a `superpose export` or `export-trained` "
                        ".safetensors, or a `superpose train` checkpoint directory")
    p.add_argument("--family", help=f"bundled family ({', '.join(family_names())}), a family .json, or a "
                                    "TASKS.json as its token-level family (default: countries for a text model, "
                                    "a token-level model's own tasks)")
    p.add_argument("--tasks", nargs="+", help="the family's tasks to mix (default: all)")
    p.add_argument("--shares", nargs="+", type=float, help="each task's share of the examples (default: equal)")
    p.add_argument("--examples", type=int, default=6, help="in-context examples per prompt (default 6)")
    p.add_argument("--prompts", type=int, default=20, help="prompts to draw (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arrow", default=" ->", help="between input and answer (default ' ->')")
    p.add_argument("--answer-prefix", default=" ", help="before each answer (default one space)")
    p.add_argument("--separator", default="\\n",
                   help="after each answer, the end-of-answer boundary scored with it (default '\\n')")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                   help="weights of a Hugging Face model (default float32)")
    p.add_argument("--device", default="cpu", help="torch device for the model (default cpu; e.g. cuda)")
    p.add_argument("--plot", help="also draw probability vs share to this .png/.pdf/.svg")
    p.add_argument("--memory-limit", metavar="SIZE",
                   help="refuse a model estimated to need more memory (default $SUPERPOSE_MEMORY_LIMIT, else "
                        "80%% of the memory available)")
    p.add_argument("-o", "--output", required=True, help="the JSONL file to write")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.set_defaults(func=_cmd_llm_eval)
