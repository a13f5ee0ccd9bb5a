# %% [markdown]
# # Example 4 — task vectors: convex combinations of them reproduce superposition
#
# Xiong et al. observe in real LLMs that a convex combination of *task vectors* (hidden
# states extracted from single-task prompts) makes the model answer in superposition.
# In the constructed model this is exact, and we can name the task vector: it is the
# `mix` block of the residual stream after layer 5 at a prediction position.
#
# 1. Run three single-task prompts (all copy, all next digit, all to word) and take the
#    state at the query's ARROW after layer 5. The three states differ only in `mix`;
#    its value there is the task vector v_k.
# 2. Run a fresh, zero-shot query (no examples at all) through layers 1-5, overwrite its
#    `mix` block with sum_k a_k v_k for weights a on the simplex, and finish the run
#    (layers 6-7 and the readout).
# 3. The output is sum_k a_k [answer of task k] -- and it equals what a mixed prompt with
#    those proportions of examples produces.
#
# Run: `python examples/task_vectors.py` (figure in `figures/`, or `--out DIR`),
# or open this file as a notebook (jupytext); `make notebooks` writes an executed copy
# into `build/notebooks/`.

# %%
"""Example 4 -- task vectors: convex combinations of them reproduce superposition.

The prose is in the markdown cells (``# %% [markdown]``): open this file as a notebook
(jupytext) or read it here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from superpose import Prompt, build, tokenize
from superpose.demo import digit_tasks, mixed_prompt
from superpose.examples.common import DEFAULT_OUT, TASK_COLORS, fraction_text, plt, run_as_script, save_figure, trace
from superpose.examples.digits_in_superposition import splits
from superpose.model import apply_layers, embed, unembed
from superpose.verify.analytic import predict


# %% [markdown]
# ## The pieces

# %%
@dataclass
class TaskVectorResult:
    task_vectors: np.ndarray        # [K, K]: the mix block from each single-task prompt
    differing_blocks: list[str]     # residual blocks in which the single-task states differ
    query: int                      # the fresh query
    weights: np.ndarray             # [n, K] convex weights (multiples of 1/n_examples)
    patched: np.ndarray             # [n, d] output of the zero-shot query with the mixed task vector
    prompted: np.ndarray            # [n, d] output of a mixed prompt with those proportions
    max_patched_vs_prompted: float
    max_patched_vs_analytic: float  # against sum_k a_k [answer of task k]
    figures: list[Path] = field(default_factory=list)


def state_after_layer_5(model, prompt: Prompt) -> np.ndarray:
    """The residual vector at the query's ARROW (the last position) after layer 5."""
    _, _, cache = trace(model, prompt)
    return cache["layer_5"]["resid_post"][0, -1]


def run_with_mix(model, query: int, mixes: np.ndarray) -> np.ndarray:
    """Readout at the ARROW of the zero-shot prompt ``query ->``, its mix block replaced by each row of ``mixes``."""
    tokens = tokenize(model.tasks, Prompt([], [query]))
    resid = apply_layers(model, embed(model, np.repeat(tokens[None, :], len(mixes), axis=0)), 1, 5)
    resid[:, -1, model.layout["mix"].slice] = mixes   # the patch
    return unembed(model, apply_layers(model, resid, 6, 7))[:, -1]


# %% [markdown]
# ## The example: `main`

# %%
def main(out_dir: str | Path = DEFAULT_OUT, small: bool = False) -> TaskVectorResult:
    """Task vectors: patch convex combinations of single-task states into a fresh query."""
    tasks = digit_tasks()
    K, names = tasks.K, [t.name for t in tasks.tasks]
    n_examples = 4 if small else 10        # weights on the grid a = counts / n_examples
    source_query, query = 4, 6
    model = build(tasks, max_examples=n_examples)

    # 1. task vectors from single-task prompts of the same length (so only the task differs)
    single = [mixed_prompt(tasks, counts=tuple(n_examples * (j == k) for j in range(K)), query=source_query, seed=k)
              for k in range(K)]
    states = np.array([state_after_layer_5(model, p) for p in single])
    differing_blocks = [name for name in model.layout.blocks
                        if np.abs(model.layout.view(states - states[0], name)).max() > 1e-12]
    task_vectors = model.layout.view(states, "mix")

    print("Example 4: task vectors\n")
    print(f"Single-task prompts: {n_examples} examples of one task each, query {source_query}. "
          "State at the query's ARROW after layer 5:")
    print(f"  the three states differ only in the blocks {differing_blocks}; there they are one-hot:")
    for name, v in zip(names, task_vectors):
        print(f"    v[{name}] = mix = ({', '.join(fraction_text(x) for x in v)})")

    # 2. patch convex combinations into a zero-shot query; 3. compare with mixed prompts
    counts = np.array(splits(n_examples, K))
    weights = counts / n_examples
    patched = run_with_mix(model, query, weights @ task_vectors)
    prompts = [mixed_prompt(tasks, counts=tuple(int(c) for c in row), query=query, seed=i)
               for i, row in enumerate(counts)]
    prompted = np.array([out[-1] for out in model.run(prompts, dtype="float64")])
    answers = [task([query]) for task in tasks.tasks]
    expected = np.zeros_like(patched)
    for k, v in enumerate(answers):
        expected[:, v] += weights[:, k]
    max_vs_prompted = float(np.abs(patched - prompted).max())
    max_vs_analytic = float(np.abs(patched - expected).max())
    prompted_vs_analytic = max(float(np.abs(out - predict(tasks, p)[-1]).max()) for out, p in zip(prompted, prompts))

    unpatched = model.run(Prompt([], [query]), dtype="float64")[0]
    print(f"\nFresh zero-shot query {query} (no examples): on its own the model answers with the prior, "
          + ", ".join(f"{tasks.name_of(v)} {fraction_text(unpatched[0][v])}" for v in answers) + ".")
    print(f"Patched with sum_k a_k v_k for all {len(weights)} weights a on the grid of step 1/{n_examples}:")
    example_row = int(np.argmin(np.abs(weights - np.array([0.5, 0.3, 0.2])).sum(axis=1)))
    a = weights[example_row]
    print(f"  e.g. a = ({', '.join(fraction_text(x) for x in a)}): output "
          + ", ".join(f"{tasks.name_of(v)} {patched[example_row][v]:.9f}" for v in answers))
    print(f"        a mixed prompt with {tuple(int(c) for c in counts[example_row])} examples gives "
          + ", ".join(f"{tasks.name_of(v)} {prompted[example_row][v]:.9f}" for v in answers))
    print(f"  max |patched - sum_k a_k [answer of task k]| = {max_vs_analytic:.1e}")
    print(f"  max |patched - mixed prompt with the same proportions| = {max_vs_prompted:.1e}")
    print(f"  (and max |mixed prompt - analytic prediction| = {prompted_vs_analytic:.1e})")
    print("A convex combination of task vectors is exactly a superposition of the tasks.")

    figures = [save_figure(_figure(tasks, query, answers, weights, patched, prompted, example_row, counts),
                           out_dir, "task_vectors.png")]
    print(f"\nFigure: {figures[0]}")
    return TaskVectorResult(task_vectors, differing_blocks, query, weights, patched, prompted,
                            max_vs_prompted, max_vs_analytic, figures)


# %% [markdown]
# ## The figure

# %%
def _figure(tasks, query, answers, weights, patched, prompted, example_row, counts):
    fig, (ax_line, ax_bar) = plt.subplots(1, 2, figsize=(12, 4.2))
    # the edge copy -> next digit of the simplex: a = (1 - lam, lam, 0)
    edge = np.flatnonzero(weights[:, 2] == 0)
    edge = edge[np.argsort(weights[edge, 1])]
    lam = weights[edge, 1]
    for k in (0, 1):
        v = answers[k]
        ax_line.plot(lam, patched[edge, v], color=TASK_COLORS[k], label=f"p({tasks.name_of(v)}), patched task vector")
        ax_line.scatter(lam, prompted[edge, v], color=TASK_COLORS[k], marker="o", facecolor="none", s=60,
                        label=f"p({tasks.name_of(v)}), mixed prompt")
    ax_line.set(xlabel=r"$\lambda$  (task vector = $(1 - \lambda)$ v[copy] + $\lambda$ v[next digit])",
                ylabel="probability",
                title=f"Interpolating task vectors, zero-shot query {query}", ylim=(-0.02, 1.02))
    ax_line.legend(fontsize=8)

    width = 0.27
    x = np.arange(len(answers))
    a = weights[example_row]
    ax_bar.bar(x - width, a, width, color="lightgray", label="weights a")
    colors = [TASK_COLORS[k] for k in x]
    ax_bar.bar(x, patched[example_row, answers], width, color=colors, label="patched task vector")
    ax_bar.bar(x + width, prompted[example_row, answers], width, color=colors, alpha=0.5,
               hatch="//", label=f"mixed prompt {tuple(int(c) for c in counts[example_row])}")
    ax_bar.set_xticks(x, [f"{tasks.name_of(v)}\n({t.name})" for v, t in zip(answers, tasks.tasks)])
    ax_bar.set(ylabel="probability", ylim=(0, 1),
               title="a = (" + ", ".join(fraction_text(w) for w in a) + ")")
    ax_bar.legend(fontsize=8)
    fig.tight_layout()
    return fig


# %% [markdown]
# ## Run it
#
# As a script (`python examples/task_vectors.py [--out DIR] [--small]`, or
# `superpose examples task-vectors`) this reads the command line; in a notebook it runs `main`
# at full size, saves the figures into `figures/` beside the notebook and shows them
# below. `result` holds the numbers `main` returns.

# %%
if __name__ == "__main__":
    result = run_as_script(main)
