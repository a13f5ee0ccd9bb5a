# %% [markdown]
# # Example 2 — inside the seven layers: one small prompt traced through the model
#
# Every dimension of the residual stream has a name (`is_answer`, `match[copy]`,
# `mix[next digit]`, ...), so after each sublayer we can print exactly what it wrote:
# only the entries that changed, with their labels, position by position. Read top to
# bottom, the trace is the algorithm:
#
# 1. find the answer positions,  2. check each example against each task,
# 3. snap the checks and count the tasks each example fits,  4. cast votes,
# 5. tally the votes into the task mixture,  6. fetch the query's input tokens,
# 7. weight each task's answer by its share and sum.
#
# What each layer does is read from its spec (`superpose.construct.build.LAYER_SPECS`),
# the same object the builder, the proofs and the tests use.
#
# The attention patterns of the heads that are used are drawn as heatmaps: the
# look-back heads are a sharp off-diagonal line; the tally head spreads its weight
# evenly over the answers that fit some task.
#
# Run: `python examples/inside_the_seven_layers.py` (figure in `figures/`, or `--out DIR`),
# or open this file as a notebook (jupytext); `make notebooks` writes an executed copy
# into `build/notebooks/`.

# %%
"""Example 2 -- inside the seven layers: one small prompt traced through the model.

The prose is in the markdown cells (``# %% [markdown]``): open this file as a notebook
(jupytext) or read it here.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from superpose import Example, Prompt, build
from superpose.construct.build import LAYER_SPECS
from superpose.demo import digit_tasks
from superpose.examples.common import (DEFAULT_OUT, fraction_text, plt, residual_after, run_as_script,
                                       save_figure, trace)

# Soft attention leaks about e^(-2 beta) ~ 4e-44 (beta = 50) onto other positions;
# entries smaller than this are not "changes" worth printing.
TOLERANCE = 1e-9

# %% [markdown]
# ## The pieces

# %%
@dataclass
class LayerTrace:
    tokens: list[str]                          # token names, position by position
    # changes[layer]["attention" | "mlp"][position] = {residual label: value}
    changes: dict[int, dict[str, dict[int, dict[str, float]]]]
    patterns: dict[tuple[int, int], np.ndarray]  # (layer, head) -> attention pattern [query, key]
    readout: np.ndarray                        # model output at every position, [T, d]
    figures: list[Path] = field(default_factory=list)


def small_prompt() -> Prompt:
    """Two copy examples, one next-digit, one to-word; query 7 -> mixture 1/2, 1/4, 1/4."""
    return Prompt([Example([3], 3), Example([1], 1), Example([5], 6), Example([2], 12)], query=[7])


def readable(model, label: str) -> str:
    """A residual label with task and token names: ``vote[1]`` -> ``vote[next digit]``, ``slot[0,12]`` -> ``slot[0,six]``."""
    name, _, index = label.partition("[")
    if not index:
        return label
    tasks, parts = model.tasks, index.rstrip("]").split(",")
    by_task = {"match_raw", "match", "vote", "mix"}
    by_token = {"slot": 1, "out": 0, "token": 0}
    if name in by_task:
        parts[0] = tasks.tasks[int(parts[0])].name
    if name in by_token and parts[by_token[name]].isdigit():
        parts[by_token[name]] = tasks.name_of(int(parts[by_token[name]]))
    return f"{name}[{','.join(parts)}]"


def changed_entries(model, delta: np.ndarray) -> dict[int, dict[str, float]]:
    """Position -> {label: value} of the entries of ``delta [T, d_model]`` above TOLERANCE."""
    return {t: entries for t in range(len(delta)) if (entries := model.layout.nonzero(delta[t], TOLERANCE))}


# %% [markdown]
# ## The example: `main`

# %%
def main(out_dir: str | Path = DEFAULT_OUT, small: bool = False) -> LayerTrace:
    """Inside the seven layers: what each sublayer writes, and every head's attention pattern.

    The prompt is already small, so ``small`` changes nothing here.
    """
    tasks, prompt = digit_tasks(), small_prompt()
    model = build(tasks, max_examples=prompt.n_examples)
    tokens, readout, cache = trace(model, prompt)
    names = [tasks.name_of(int(x)) for x in tokens]

    print("Example 2: inside the seven layers\n")
    print(f"Tasks: {', '.join(t.name for t in tasks.tasks)}.  Prompt of {len(tokens)} tokens:")
    print("  " + "  ".join(f"{t}:{n}" for t, n in enumerate(names)))
    print(f"Residual stream: {model.config.d_model} named dimensions; below, each sublayer's "
          f"non-zero writes (|change| > {TOLERANCE:g}), as position: label = value.\n")

    changes: dict[int, dict[str, dict[int, dict[str, float]]]] = {}
    patterns: dict[tuple[int, int], np.ndarray] = {}
    for spec, layer in zip(LAYER_SPECS, model.layers):
        i = spec.number
        before = residual_after(cache, i - 1)
        middle = cache[f"layer_{i}"]["resid_mid"][0]
        after = residual_after(cache, i)
        changes[i] = {"attention": changed_entries(model, middle - before),
                      "mlp": changed_entries(model, after - middle)}
        for h, head in enumerate(layer.attention.heads):
            patterns[(i, h)] = cache[f"layer_{i}"]["pattern"][0, h]

        print(f"Layer {i} ({spec.title}): {spec.in_words}")
        for part, does in (("attention", spec.attention_does), ("mlp", spec.mlp_does)):
            print(f"  {'attention' if part == 'attention' else 'MLP'}: {does}")
            for t, entries in changes[i][part].items():
                written = "  ".join(f"{readable(model, k)}={fraction_text(v)}" for k, v in entries.items())
                print(f"    t={t:>2} {names[t]:>5}:  {written}")
        print()

    answer = ", ".join(f"{tasks.name_of(v)}: {fraction_text(p)}"
                       for v, p in enumerate(readout[-1]) if abs(p) > TOLERANCE)
    print(f"Readout at the query's ARROW: {answer}")

    figures = [save_figure(_figure(model, names, patterns), out_dir, "inside_the_seven_layers.png")]
    print(f"\nFigure: {figures[0]}")
    return LayerTrace(names, changes, patterns, readout, figures)


# %% [markdown]
# ## The figure

# %%
def _figure(model, names, patterns):
    columns = 4
    rows = -(-len(patterns) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4.1 * rows))
    for ax, ((layer, head), pattern) in zip(axes.flat, patterns.items()):
        ax.imshow(pattern, cmap="Blues", vmin=0, vmax=1)
        ticks = range(len(names))
        ax.set_xticks(ticks, names, rotation=90, fontsize=7)
        ax.set_yticks(ticks, names, fontsize=7)
        label = model.layers[layer - 1].attention.heads[head].label
        ax.set_title(textwrap.fill(f"layer {layer} head {head}: {label}", 44), fontsize=8)
        ax.set_xlabel("key (attended to)", fontsize=7)
        ax.set_ylabel("query position", fontsize=7)
    for ax in list(axes.flat)[len(patterns):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


# %% [markdown]
# ## Run it
#
# As a script (`python examples/inside_the_seven_layers.py [--out DIR] [--small]`, or
# `superpose examples layers`) this reads the command line; in a notebook it runs `main`
# at full size, saves the figures into `figures/` beside the notebook and shows them
# below. `result` holds the numbers `main` returns.

# %%
if __name__ == "__main__":
    result = run_as_script(main)
