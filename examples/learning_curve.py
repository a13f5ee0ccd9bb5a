# %% [markdown]
# # Example 3 — the in-context learning curve, example by example
#
# The model makes a prediction at every ARROW, not only at the query's: the prediction
# at example i uses examples 0..i-1 only. Reading the task mixture (the `mix` block
# after layer 5) at each of those positions shows the model learning in context:
#
# * before any example it holds the uniform prior 1/K;
# * an example that fits one task moves weight to that task;
# * an *ambiguous* example, which fits two tasks, gives each of them half a vote;
# * a *noise* example, which fits no task, changes nothing.
#
# The tasks here are copy, next digit and double (x -> 2x mod 10): "1 -> 2" fits both
# next digit and double, and "4 -> 9" fits none of them.
#
# Run: `python examples/learning_curve.py` (figure in `figures/`, or `--out DIR`),
# or open this file as a notebook (jupytext); `make notebooks` writes an executed copy
# into `build/notebooks/`.

# %%
"""Example 3 -- the in-context learning curve, example by example.

The prose is in the markdown cells (``# %% [markdown]``): open this file as a notebook
(jupytext) or read it here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from superpose import Example, Prompt, Task, TaskSet, build, prediction_positions
from superpose.examples.common import (
    DEFAULT_OUT,
    TASK_COLORS,
    fraction_text,
    plt,
    residual_after,
    run_as_script,
    save_figure,
    trace,
)
from superpose.verify.analytic import consistent_tasks, predict, task_mixture


# %% [markdown]
# ## The pieces

# %%
@dataclass
class LearningCurve:
    examples: list[Example]
    fits: list[list[int]]           # the tasks each example is consistent with
    task_weights: np.ndarray        # [m+1, K]: mix after layer 5 at each prediction position
    outputs: np.ndarray             # [m+1, d]: the model's prediction at each prediction position
    next_answer_probability: np.ndarray  # [m]: probability given to example i's answer, before seeing it
    max_error: float                # max |model - analytic| over outputs and task weights
    bound: float
    figures: list[Path] = field(default_factory=list)


def copy_next_double() -> TaskSet:
    digits = range(10)
    return TaskSet(vocab_size=10, slots=1, tasks=[
        Task("copy", 0, list(digits)),
        Task("next digit", 0, [(x + 1) % 10 for x in digits]),
        Task("double", 0, [(2 * x) % 10 for x in digits]),
    ])


def curve_prompt() -> Prompt:
    pairs = [(3, 3), (5, 6), (7, 7),
             (1, 2),   # ambiguous: next digit (1+1) and double (2*1)
             (4, 9),   # noise: copy 4, next 5, double 8
             (6, 2), (2, 2), (8, 9)]
    return Prompt([Example([x], y) for x, y in pairs], query=[3])


def describe(tasks: TaskSet, fits: list[int]) -> str:
    if not fits:
        return "noise (fits no task)"
    names = " + ".join(tasks.tasks[k].name for k in fits)
    return names if len(fits) == 1 else f"ambiguous ({names})"


# %% [markdown]
# ## The example: `main`

# %%
def main(out_dir: str | Path = DEFAULT_OUT, small: bool = False) -> LearningCurve:
    """The in-context learning curve: the task mixture after every example.

    The prompt is already small, so ``small`` changes nothing here.
    """
    tasks, prompt = copy_next_double(), curve_prompt()
    m = prompt.n_examples
    model = build(tasks, max_examples=m)
    _, readout, cache = trace(model, prompt)
    positions = prediction_positions(tasks, m)
    task_weights = model.layout.view(residual_after(cache, 5)[positions], "mix")
    outputs = readout[positions]

    examples = list(prompt.examples)
    fits = [consistent_tasks(tasks, e) for e in examples]
    next_answer_probability = np.array([outputs[i][e.answer] for i, e in enumerate(examples)])
    analytic_weights = np.array([[float(p) for p in task_mixture(tasks, examples[:i])] for i in range(m + 1)])
    max_error = float(max(np.abs(outputs - predict(tasks, prompt)).max(),
                          np.abs(task_weights - analytic_weights).max()))
    bound = model.error_bound("float64", prompt_length=len(readout)).total

    print("Example 3: the in-context learning curve\n")
    print("Tasks: " + ", ".join(t.name for t in tasks.tasks) + " (double: x -> 2x mod 10).")
    print("At each ARROW the model predicts from the examples before it. Task weights = the mix block "
          "after layer 5.\n")
    header = "  ".join(f"{t.name:>10}" for t in tasks.tasks)
    print(f"  seen  {'next example':<13} {'it fits':<34} {header}   p(its answer)")
    print(f"  {'':<54} {'(task weights from the examples seen)':^{len(header)}}")
    for i in range(m + 1):
        weights = "  ".join(f"{w:10.6f}" for w in task_weights[i])
        if i < m:
            e = examples[i]
            shown = f"{e.inputs[0]} -> {e.answer}"
            fit = describe(tasks, fits[i])
            print(f"  {i:>4}  {shown:<13} {fit:<34} {weights}   {next_answer_probability[i]:.6f}")
        else:
            print(f"  {i:>4}  {'query ' + str(prompt.query[0]):<13} {'':<34} {weights}")
    final = ", ".join(f"{t.name} {fraction_text(w)}" for t, w in zip(tasks.tasks, task_weights[-1]))
    print(f"\nAfter all {m} examples: {final}.")
    print("The ambiguous example split its vote between next digit and double; "
          "the noise example left the weights unchanged.")
    print(f"Max |model - analytic| (task weights and predictions, float64): {max_error:.1e}; bound {bound:.1e}.")

    figures = [save_figure(_figure(tasks, examples, fits, task_weights, analytic_weights, next_answer_probability),
                           out_dir, "learning_curve.png")]
    print(f"\nFigure: {figures[0]}")
    return LearningCurve(examples, fits, task_weights, outputs, next_answer_probability, max_error, bound, figures)


# %% [markdown]
# ## The figure

# %%
def _figure(tasks, examples, fits, weights, analytic, next_probability):
    m = len(examples)
    fig, (ax, ax_next) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    seen = np.arange(m + 1)
    bottom = np.zeros(m + 1)
    for k, task in enumerate(tasks.tasks):
        ax.bar(seen, weights[:, k], bottom=bottom, color=TASK_COLORS[k], label=task.name, width=0.8)
        bottom += weights[:, k]
        ax.scatter(seen, analytic[:, :k + 1].sum(axis=1), marker="_", s=500, color="black", lw=1,
                   label="analytic" if k == 0 else None, zorder=3)
    ax.set(ylabel="task weight (mix)", ylim=(0, 1), title="Task mixture after each example (stacked)")
    ax.legend(loc="upper left", fontsize=8, bbox_to_anchor=(1.01, 1))

    # example i's answer was predicted just before it was added, i.e. at x = i + 1
    colors = ["tab:red" if not f else "tab:purple" if len(f) > 1 else "tab:gray" for f in fits]
    ax_next.bar(seen[1:], next_probability, color=colors, width=0.8)
    ax_next.scatter(seen[1:][next_probability < 0.01], np.full((next_probability < 0.01).sum(), 0.03),
                    marker="x", color="tab:red", zorder=3)
    ax_next.set(ylabel="p(its answer)", ylim=(0, 1), xlabel="examples seen",
                title="Probability the model gave each example's answer just before seeing it")
    kinds = ["" if len(f) == 1 else "\n(ambiguous)" if f else "\n(noise)" for f in fits]
    labels = ["0\n(prior)"] + [f"{i + 1}\n+ {e.inputs[0]}->{e.answer}{kind}"
                               for i, (e, kind) in enumerate(zip(examples, kinds))]
    ax_next.set_xticks(seen, labels, fontsize=8)
    fig.tight_layout()
    return fig


# %% [markdown]
# ## Run it
#
# As a script (`python examples/learning_curve.py [--out DIR] [--small]`, or
# `superpose examples curve`) this reads the command line; in a notebook it runs `main`
# at full size, saves the figures into `figures/` beside the notebook and shows them
# below. `result` holds the numbers `main` returns.

# %%
if __name__ == "__main__":
    result = run_as_script(main)
