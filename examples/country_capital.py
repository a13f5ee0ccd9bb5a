# %% [markdown]
# # Example 8 — country -> capital or continent, in superposition
#
# The data file `examples/data/countries.json` (installed with the package, read with
# `importlib.resources`) lists 24 countries, each with its capital and continent. Every
# name is one token, so the vocabulary is the countries, then the capitals, then the
# continents (d = 24 + 24 + 6 = 54), with the names as token names. One input slot and
# two tasks:
#
# * `capital`:   a country -> its capital;
# * `continent`: a country -> its continent.
#
# A task's table needs an answer for every token. On a token that is not a country (a
# capital or a continent) both tables answer the token itself; prompts in the family
# only ask about countries.
#
# A prompt of 9 capital and 3 continent examples makes the model answer a fresh country
# with its capital (probability 3/4) and its continent (1/4) at once. Two variants: an
# example outside the family, `Paris -> Paris`, fits both tasks through the identity
# fallback and splits its vote; a wrong example, `Japan -> Europe`, fits neither and is
# ignored.
#
# Run: `python examples/country_capital.py` (figure in `figures/`, or `--out DIR`),
# or open this file as a notebook (jupytext); `make notebooks` writes an executed copy
# into `build/notebooks/`.

# %%
"""Example 8 -- country -> capital or continent, in superposition.

The prose is in the markdown cells (``# %% [markdown]``): open this file as a notebook
(jupytext) or read it here.
"""

from __future__ import annotations

import json
import random
from importlib import resources
from pathlib import Path

from superpose import Example, Prompt, Task, TaskSet, build
from superpose.examples.common import (
    DEFAULT_OUT,
    FamilyResult,
    fraction_text,
    mixed_examples,
    print_query,
    run_as_script,
    run_family,
    save_figure,
    superposition_figure,
)
from superpose.examples.digits_in_superposition import splits

DATA = "data/countries.json"  # inside the package superpose.examples
QUERY = "Japan"


# %% [markdown]
# ## The pieces

# %%
def load_countries() -> list[dict[str, str]]:
    """The rows ``{"country", "capital", "continent"}`` of the bundled data file."""
    text = resources.files("superpose.examples").joinpath(DATA).read_text(encoding="utf-8")
    return json.loads(text)["countries"]


def country_tasks(rows: list[dict[str, str]] | None = None) -> TaskSet:
    """Tokens: countries, then capitals, then continents (in order of first appearance)."""
    rows = load_countries() if rows is None else rows
    continents = list(dict.fromkeys(row["continent"] for row in rows))
    names = [row["country"] for row in rows] + [row["capital"] for row in rows] + continents
    if len(set(names)) != len(names):
        raise ValueError("countries.json: country, capital and continent names must all be distinct")
    token = {name: i for i, name in enumerate(names)}
    capital, continent = list(range(len(names))), list(range(len(names)))  # non-countries map to themselves
    for row in rows:
        capital[token[row["country"]]] = token[row["capital"]]
        continent[token[row["country"]]] = token[row["continent"]]
    return TaskSet(vocab_size=len(names), slots=1, token_names=names,
                   tasks=[Task("capital", 0, capital), Task("continent", 0, continent)])


# %% [markdown]
# ## The example: `main`

# %%
def main(out_dir: str | Path = DEFAULT_OUT, small: bool = False) -> FamilyResult:
    """Country -> capital or continent: both answered at once, in proportion to the examples."""
    rows = load_countries()
    tasks = country_tasks(rows)
    token = {name: i for i, name in enumerate(tasks.token_names)}
    n_countries = len(rows)
    counts = (3, 1) if small else (9, 3)
    n_sweep = 6 if small else 12
    model = build(tasks, max_examples=16)

    def draw_country(rng, k: int) -> list[int]:
        return [rng.randrange(n_countries)]  # countries are tokens 0 .. n_countries - 1

    def draw_other_country(rng, k: int) -> list[int]:  # the mixed prompt never shows the query's country
        return [rng.choice([c for c in range(n_countries) if c != token[QUERY]])]

    mixed = Prompt(mixed_examples(tasks, counts, draw_other_country, seed=3), query=[token[QUERY]])
    outside = Example([token["Paris"]], token["Paris"])   # both tables map a capital to itself
    wrong = Example([token["Japan"]], token["Europe"])    # fits neither task
    prompts = {
        "mixed": mixed,
        "example outside the family": Prompt([*mixed.examples, outside], query=[token[QUERY]]),
        "wrong example": Prompt([*mixed.examples, wrong], query=[token[QUERY]]),
    }
    rng = random.Random(4)
    sweep = [Prompt(mixed_examples(tasks, c, draw_country, seed=200 + i), query=draw_country(rng, 0))
             for i, c in enumerate(splits(n_sweep, tasks.K))]
    result = run_family(model, prompts, sweep)
    m = mixed.n_examples

    def show(example: Example) -> str:
        return f"{tasks.name_of(example.inputs[0])} -> {tasks.name_of(example.answer)}"

    print("Example 8: country -> capital or continent\n")
    print(f"Data: {n_countries} countries from superpose.examples/{DATA}; tokens = {n_countries} countries, "
          f"{n_countries} capitals, {tasks.vocab_size - 2 * n_countries} continents (d = {tasks.vocab_size}).")
    print("Tasks (one slot): capital, continent; on a token that is not a country both answer the token itself.")
    print(f"Prompt: {m} examples ({', '.join(f'{c} {t.name}' for c, t in zip(counts, tasks.tasks))}), shuffled:")
    print("  " + ", ".join(show(e) for e in mixed.examples) + f", {QUERY} -> ?")
    print(f"\nQuery {QUERY}: the model's answer distribution (float64) next to the task shares:")
    print_query(tasks, mixed, result.query_distribution("mixed"), result.shares["mixed"])

    for label, extra, why in [("example outside the family", outside,
                               "a capital maps to itself in both tables: it fits both, half a vote each"),
                              ("wrong example", wrong, "fits neither task: ignored")]:
        shares = ", ".join(f"{t.name} {fraction_text(p)}" for t, p in zip(tasks.tasks, result.shares[label]))
        print(f"\nAdd the {label} {show(extra)} ({why}); shares {shares}:")
        print_query(tasks, prompts[label], result.query_distribution(label), result.shares[label])

    gap = float(abs(result.sweep_probabilities - result.sweep_shares).max())
    print(f"\nSweep: {len(sweep)} prompts, one for every split of {n_sweep} examples between the two tasks:"
          f"\n  probability on each task's answer vs its share: max |difference| = {gap:.1e}")
    print(f"Max |model - analytic| over every prediction position of all {len(prompts) + len(sweep)} prompts "
          f"(float64): {result.max_error:.1e}; bound {result.bound:.1e}.")

    fig = superposition_figure(tasks, mixed, result.query_distribution("mixed"), result.shares["mixed"],
                               QUERY, result.sweep_shares, result.sweep_probabilities)
    result.figures.append(save_figure(fig, out_dir, "country_capital.png"))
    print(f"\nFigure: {result.figures[0]}")
    return result


# %% [markdown]
# ## Run it
#
# As a script (`python examples/country_capital.py [--out DIR] [--small]`, or
# `superpose examples countries`) this reads the command line; in a notebook it runs `main`
# at full size, saves the figures into `figures/` beside the notebook and shows them
# below. `result` holds the numbers `main` returns.

# %%
if __name__ == "__main__":
    result = run_as_script(main)
