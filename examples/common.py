"""Small helpers shared by the examples: figures, command-line flags, formatting, tracing.

Every example is a module with ``main(out_dir=..., small=False)`` that prints what it
shows, saves its figures as PNG into ``out_dir`` and returns its key numbers.

The task-family examples (``ab_digits``, ``add_and_translate``, ``country_capital``)
share one shape, kept here: a mixed prompt and a few variants of it, a sweep over
task splits, the query's answer printed next to the task shares, and one figure.

>>> fraction_text(1 / 3), fraction_text(0.5), fraction_text(0.123456789)
('1/3', '1/2', '0.123457')
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window: the examples also run headless under test
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from superpose import Example, Prompt, TaskSet, tokenize  # noqa: E402
from superpose.model import run_tokens  # noqa: E402
from superpose.examples import DEFAULT_OUT  # noqa: E402
from superpose.verify.analytic import consistent_tasks, predict, task_mixture  # noqa: E402
from superpose.verify.compare import compare  # noqa: E402

DPI = 100  # committed figures stay small
TASK_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")

__all__ = ["DEFAULT_OUT", "TASK_COLORS", "FamilyResult", "fraction_text", "in_notebook",
           "mixed_examples", "plt", "print_query", "residual_after", "run_as_script", "run_family", "save_figure",
           "superposition_figure", "trace"]


def save_figure(fig, out_dir: str | Path, name: str) -> Path:
    """Save ``fig`` as ``out_dir/name`` (PNG) and close it; returns the path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def fraction_text(x: float, max_denominator: int = 60) -> str:
    """``x`` as a short fraction when it is one (to 1e-9), else as a decimal."""
    f = Fraction(float(x)).limit_denominator(max_denominator)
    return str(f) if abs(float(f) - x) < 1e-9 else f"{x:.6g}"


def trace(model, prompt, dtype: str = "float64"):
    """Token ids ``[T]``, the readout ``[T, d]`` and the activation cache of one prompt (batch of 1)."""
    tokens = tokenize(model.tasks, prompt)
    readout, cache = run_tokens(model, tokens[None, :], dtype=dtype, capture=True)
    return tokens, readout[0], cache


def residual_after(cache, layer: int) -> np.ndarray:
    """The residual stream ``[T, d_model]`` after ``layer`` (0 = the embedding)."""
    return cache["resid_pre"][0] if layer == 0 else cache[f"layer_{layer}"]["resid_post"][0]


def in_notebook() -> bool:
    """True inside a Jupyter kernel (an example opened as a notebook), False in a plain Python run."""
    if "IPython" not in sys.modules:   # never imported: certainly not a kernel
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def run_as_script(main: Callable[..., object]) -> object:
    """``python examples/<name>.py [--out DIR] [--small]`` calls ``main(out_dir, small)``; returns its result.

    In a notebook (the example opened through jupytext, or run by ``superpose examples
    --notebooks``) there is no command line: ``main`` runs at full size, saves its figures
    into ``DEFAULT_OUT`` (``figures/`` in the notebook's directory) and they are shown inline.
    """
    if in_notebook():
        from IPython.display import Image, display

        result = main(out_dir=DEFAULT_OUT)
        for path in getattr(result, "figures", []):
            display(Image(filename=str(path)))
        return result
    parser = argparse.ArgumentParser(description=(main.__doc__ or "").strip().split("\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"folder for the figures (default {DEFAULT_OUT})")
    parser.add_argument("--small", action="store_true", help="smaller sizes (used by the tests)")
    args = parser.parse_args()
    return main(out_dir=args.out, small=args.small)


# --- the task-family examples ---------------------------------------------------------------

@dataclass
class FamilyResult:
    """What a task-family example returns (every array in float64, from ``model.run``)."""

    tasks: TaskSet
    prompts: dict[str, Prompt]              # label -> prompt; the mixed prompt first, then its variants
    shares: dict[str, np.ndarray]           # label -> [K] task shares p_k (votes / consistent examples)
    outputs: dict[str, np.ndarray]          # label -> [m+1, d] model readout at every prediction position
    sweep_prompts: list[Prompt]             # one prompt per split of the sweep
    sweep_shares: np.ndarray                # [n, K] task shares of each sweep prompt
    sweep_probabilities: np.ndarray         # [n, K] model probability on task k's answer to its query
    sweep_outputs: list[np.ndarray]         # [m+1, d] per sweep prompt
    max_error: float                        # max |model - analytic| over every prediction position of every prompt
    bound: float                            # the model's float64 error bound for the longest prompt
    figures: list[Path] = field(default_factory=list)

    def query_distribution(self, label: str | None = None) -> np.ndarray:
        """The model's answer distribution ``[d]`` at the query of a prompt (the mixed one by default)."""
        return self.outputs[label or next(iter(self.outputs))][-1]


def mixed_examples(tasks: TaskSet, counts: Sequence[int], draw_inputs: Callable[[random.Random, int], list[int]],
                   seed: int = 0) -> list[Example]:
    """``counts[k]`` examples of task k in shuffled order; ``draw_inputs(rng, k)`` draws their inputs.

    Each example must fit its own task only (an unambiguous example), else ``ValueError``.
    """
    rng = random.Random(seed)
    examples = []
    for k, count in enumerate(counts):
        for _ in range(count):
            x = list(draw_inputs(rng, k))
            example = Example(x, tasks.tasks[k](x))
            if consistent_tasks(tasks, example) != [k]:
                raise ValueError(f"draw_inputs gave {x} for {tasks.tasks[k].name!r}, which fits "
                                 f"{consistent_tasks(tasks, example)}: not an unambiguous example")
            examples.append(example)
    rng.shuffle(examples)
    return examples


def run_family(model, prompts: dict[str, Prompt], sweep_prompts: list[Prompt]) -> FamilyResult:
    """Run every prompt in float64 and compare every prediction position with the analytic prediction.

    ``sweep_prompts`` must have queries on which the K tasks give K different answers.
    """
    tasks = model.tasks
    everything = [*prompts.values(), *sweep_prompts]
    comparisons = compare(model, everything, "float64")
    outputs = [c.outputs for c in comparisons]
    max_error = max(c.max_error for c in comparisons)
    bound = max(c.bound.total for c in comparisons)   # the longest prompt's

    def shares_of(prompt):
        return np.array([float(p) for p in task_mixture(tasks, prompt.examples)])

    sweep_outputs = outputs[len(prompts):]
    sweep_probabilities = []
    for prompt, out in zip(sweep_prompts, sweep_outputs):
        answers = [task(prompt.query) for task in tasks.tasks]
        if len(set(answers)) != tasks.K:
            raise ValueError(f"sweep query {list(prompt.query)}: tasks share an answer ({answers})")
        sweep_probabilities.append(out[-1][answers])
    return FamilyResult(
        tasks, dict(prompts), {label: shares_of(p) for label, p in prompts.items()},
        dict(zip(prompts, outputs[:len(prompts)])), list(sweep_prompts),
        np.array([shares_of(p) for p in sweep_prompts]), np.array(sweep_probabilities), sweep_outputs,
        max_error, bound)


def print_query(tasks: TaskSet, prompt: Prompt, out: np.ndarray, shares: np.ndarray, indent: str = "  ") -> None:
    """Print the query's answer distribution (model and analytic), each answer next to its tasks' shares."""
    expected = predict(tasks, prompt)[-1]
    answers = [task(prompt.query) for task in tasks.tasks]
    shown = sorted({*answers, *np.flatnonzero(np.abs(out) > 1e-9).tolist()}, key=lambda v: (-expected[v], v))
    width = max(8, *(len(tasks.name_of(v)) for v in shown))
    print(f"{indent}{'token':>{width}}  {'model':>11}  {'analytic':>11}  {'|error|':>8}   answer of (task share)")
    for v in shown:
        of = [f"{t.name} ({fraction_text(shares[k])})" for k, t in enumerate(tasks.tasks) if answers[k] == v]
        print(f"{indent}{tasks.name_of(v):>{width}}  {out[v]:11.9f}  {expected[v]:11.9f}  "
              f"{abs(out[v] - expected[v]):8.1e}   {' + '.join(of) or '-'}")
    rest = np.delete(out, shown)
    if rest.size:
        print(f"{indent}every other token ({rest.size}): largest |probability| = {np.abs(rest).max():.1e}")


def superposition_figure(tasks: TaskSet, prompt: Prompt, out: np.ndarray, shares: np.ndarray, query_text: str,
                         sweep_shares: np.ndarray, sweep_probabilities: np.ndarray, max_bars: int = 16):
    """Task shares, the query's answer distribution, and probability-on-answer vs share over a sweep."""
    fig, (ax_share, ax_out, ax_diag) = plt.subplots(1, 3, figsize=(15, 4.2),
                                                    gridspec_kw={"width_ratios": [1, 1.8, 1.3]})
    names = [t.name for t in tasks.tasks]
    colors = [TASK_COLORS[k % len(TASK_COLORS)] for k in range(tasks.K)]
    ax_share.bar(names, shares, color=colors)
    ax_share.set(title=f"Task shares of the {prompt.n_examples} examples", ylabel="share", ylim=(0, 1))
    ax_share.tick_params(axis="x", rotation=20)

    answers = [task(prompt.query) for task in tasks.tasks]
    if tasks.vocab_size <= max_bars:
        tokens = list(range(tasks.vocab_size))
        title = f"Model output on the query {query_text}"
    else:  # the tasks' answers and whatever else the model puts mass on
        tokens = sorted({*answers, *np.flatnonzero(np.abs(out) > 1e-6).tolist()})
        title = f"Model output on the query {query_text}\n(the other {tasks.vocab_size - len(tokens)} tokens: < 1e-6)"
    answer_color = {}
    for k in reversed(range(tasks.K)):  # a token several tasks answer takes the first task's colour
        answer_color[answers[k]] = colors[k]
    ax_out.bar([tasks.name_of(v) for v in tokens], out[tokens],
               color=[answer_color.get(v, "lightgray") for v in tokens])
    ax_out.set(title=title, ylabel="probability", ylim=(0, 1))
    long_names = len(tokens) > 4 and max(len(tasks.name_of(v)) for v in tokens) > 2
    ax_out.tick_params(axis="x", rotation=60 if long_names else 0)

    for k, name in enumerate(names):  # shrinking markers, so points that coincide stay visible
        ax_diag.scatter(sweep_shares[:, k], sweep_probabilities[:, k], color=colors[k], label=name,
                        s=90 / (k + 1) ** 1.5, zorder=3 + k)
    ax_diag.plot([0, 1], [0, 1], color="black", lw=0.8, ls="--")
    ax_diag.set(title=f"{len(sweep_shares)} splits of the examples", xlabel="task share of the examples",
                ylabel="probability on the task's answer", xlim=(-0.05, 1.05), ylim=(-0.05, 1.05), aspect="equal")
    ax_diag.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
