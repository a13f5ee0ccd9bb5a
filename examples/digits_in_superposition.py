# %% [markdown]
# # Example 1 — digits in superposition (the paper's Figure 1, made exact)
#
# Three tasks on a digit x: copy it, give the next digit, or write it as a word.
# A prompt mixes examples of all three; asked about a fresh digit, the constructed
# transformer does not pick one task: it answers with every task at once, each with
# probability equal to that task's share of the examples. We then vary the shares over
# every possible split of the examples and plot probability-on-task-answer against
# share-of-examples: every point lies on the diagonal (up to float64 rounding).
#
# Run: `python examples/digits_in_superposition.py` (figure in `figures/`, or `--out DIR`),
# or open this file as a notebook (jupytext); `make notebooks` writes an executed copy
# into `build/notebooks/`.

# %%
"""Example 1 -- digits in superposition (the paper's Figure 1, made exact).

The prose is in the markdown cells (``# %% [markdown]``): open this file as a notebook
(jupytext) or read it here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from superpose import build
from superpose.demo import digit_tasks, mixed_prompt
from superpose.examples.common import DEFAULT_OUT, TASK_COLORS, fraction_text, plt, run_as_script, save_figure
from superpose.verify.analytic import predict


# %% [markdown]
# ## The pieces

# %%
@dataclass
class DigitsResult:
    query: int
    counts: tuple[int, ...]                 # examples per task in the mixed prompt
    query_distribution: np.ndarray          # model output on the query, [d]
    sweep_counts: np.ndarray                # [n_prompts, K] examples per task
    sweep_queries: np.ndarray               # [n_prompts]
    sweep_probabilities: np.ndarray         # [n_prompts, K] probability on task k's answer
    max_error: float                        # max |model - analytic prediction| over all prompts
    bound: float                            # the model's rigorous error bound for these prompts
    figures: list[Path] = field(default_factory=list)


def splits(total: int, parts: int) -> list[tuple[int, ...]]:
    """Every way to write ``total`` as an ordered sum of ``parts`` non-negative integers.

    >>> splits(2, 3)
    [(0, 0, 2), (0, 1, 1), (0, 2, 0), (1, 0, 1), (1, 1, 0), (2, 0, 0)]
    """
    if parts == 1:
        return [(total,)]
    return [(first, *rest) for first in range(total + 1) for rest in splits(total - first, parts - 1)]


# %% [markdown]
# ## The example: `main`

# %%
def main(out_dir: str | Path = DEFAULT_OUT, small: bool = False) -> DigitsResult:
    """Digits in superposition: output distribution vs task shares, and the diagonal."""
    tasks = digit_tasks()
    K = tasks.K
    counts, query = ((3, 2, 1) if small else (6, 4, 2)), 7
    n_sweep = 6 if small else 12
    model = build(tasks, max_examples=max(sum(counts), n_sweep))

    prompt = mixed_prompt(tasks, counts=counts, query=query)
    prediction = model.run(prompt, dtype="float64")[0]  # the readout at every ARROW
    out = prediction[-1]                                 # ... and at the query's
    answers = [task([query]) for task in tasks.tasks]
    m = prompt.n_examples

    print("Example 1: digits in superposition\n")
    print("Tasks on a digit x: copy (x -> x), next digit (x -> x+1 mod 10), to word (x -> its word).")
    print(f"Prompt: {m} examples ({', '.join(f'{c} {t.name}' for c, t in zip(counts, tasks.tasks))}), "
          f"shuffled, then the query {query}:")
    print("  " + ", ".join(f"{tasks.name_of(e.inputs[0])} -> {tasks.name_of(e.answer)}" for e in prompt.examples)
          + f", {query} -> ?")
    print("\nModel output on the query (float64) next to each task's share of the examples:")
    for k, task in enumerate(tasks.tasks):
        print(f"  {tasks.name_of(answers[k]):>6}  {out[answers[k]]:.9f}   <- {task.name}'s answer; "
              f"share {counts[k]}/{m} = {fraction_text(counts[k] / m)}")
    others = np.delete(out, answers)
    print(f"  every other token: largest |probability| = {np.abs(others).max():.1e}")

    # The sweep: every split of n_sweep examples among the three tasks, queries 0..9 in turn.
    sweep_counts = np.array(splits(n_sweep, K))
    sweep_queries = np.arange(len(sweep_counts)) % 10
    prompts = [mixed_prompt(tasks, counts=tuple(c), query=int(q), seed=i)
               for i, (c, q) in enumerate(zip(sweep_counts, sweep_queries))]
    outputs = model.run(prompts, dtype="float64")
    sweep_probabilities = np.array([[o[-1][task([int(q)])] for task in tasks.tasks]
                                    for o, q in zip(outputs, sweep_queries)])
    # every prediction position of every prompt, against the analytic prediction
    max_error = max(float(np.abs(o - predict(tasks, p)).max())
                    for o, p in zip([prediction, *outputs], [prompt, *prompts]))
    bound = model.error_bound("float64", prompt_length=tasks.prompt_length(max(m, n_sweep))).total
    distance_from_diagonal = float(np.abs(sweep_probabilities - sweep_counts / n_sweep).max())
    print(f"\nSweep: {len(prompts)} prompts of {n_sweep} examples, one for every split (a, b, c) with "
          f"a + b + c = {n_sweep}, queries 0..9 in turn.")
    print(f"  probability on each task's answer vs its share of the examples: "
          f"max |difference| = {distance_from_diagonal:.1e}")
    print(f"  max |model - analytic prediction| over every prediction position: {max_error:.1e} "
          f"(the model's proven bound: {bound:.1e})")
    print("  So every point lies on the diagonal: the model answers each task in proportion to its examples.")

    figures = [save_figure(_figure(tasks, counts, query, out, n_sweep, sweep_counts / n_sweep, sweep_probabilities),
                           out_dir, "digits_in_superposition.png")]
    print(f"\nFigure: {figures[0]}")
    return DigitsResult(query, counts, out, sweep_counts, sweep_queries, sweep_probabilities,
                        max_error, bound, figures)


# %% [markdown]
# ## The figure

# %%
def _figure(tasks, counts, query, out, n_sweep, shares, probabilities):
    fig, (ax_share, ax_out, ax_diag) = plt.subplots(1, 3, figsize=(15, 4),
                                                    gridspec_kw={"width_ratios": [1, 2.2, 1.3]})
    names = [t.name for t in tasks.tasks]
    colors = TASK_COLORS[:tasks.K]
    ax_share.bar(names, np.array(counts) / sum(counts), color=colors)
    ax_share.set(title=f"Share of the {sum(counts)} examples", ylabel="share", ylim=(0, 1))

    answer_color = {task([query]): colors[k] for k, task in enumerate(tasks.tasks)}
    tokens = range(tasks.vocab_size)
    ax_out.bar([tasks.name_of(v) for v in tokens], out, color=[answer_color.get(v, "lightgray") for v in tokens])
    ax_out.set(title=f"Model output on the query {query}", ylabel="probability", ylim=(0, 1))
    ax_out.tick_params(axis="x", rotation=60)

    for k, name in enumerate(names):  # shrinking markers, so points that coincide stay visible
        ax_diag.scatter(shares[:, k], probabilities[:, k], color=colors[k], label=name, s=90 / (k + 1) ** 1.5,
                        zorder=3 + k)
    ax_diag.plot([0, 1], [0, 1], color="black", lw=0.8, ls="--")
    ax_diag.set(title=f"All {len(shares)} splits of {n_sweep} examples", xlabel="share of the examples",
                ylabel="probability on the task's answer", xlim=(-0.05, 1.05), ylim=(-0.05, 1.05), aspect="equal")
    ax_diag.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


# %% [markdown]
# ## Run it
#
# As a script (`python examples/digits_in_superposition.py [--out DIR] [--small]`, or
# `superpose examples digits`) this reads the command line; in a notebook it runs `main`
# at full size, saves the figures into `figures/` beside the notebook and shows them
# below. `result` holds the numbers `main` returns.

# %%
if __name__ == "__main__":
    result = run_as_script(main)
