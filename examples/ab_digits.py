# %% [markdown]
# # Example 6 — the paper's AB family on digits: copy A, copy B and A+B, in superposition
#
# Every example has two digit inputs A and B (two input slots, d = 10 tokens). Three
# tasks read them:
#
# * `copy A`: A                 (one slot, slot 0)
# * `copy B`: B                 (one slot, slot 1)
# * `A+B`:    (A + B) mod 10    (two slots [0, 1], a table nested two deep: `table[A][B]`)
#
# A prompt mixes 6 copy-A, 4 copy-B and 2 A+B examples whose inputs are drawn from
# 1..9 with A != B, so the three answers differ and every example fits exactly one task.
# Asked about a fresh (A, B), the model answers A, B and A+B at once, with probabilities
# equal to the tasks' shares 1/2 : 1/3 : 1/6. Two variants show the edge cases:
#
# * an *ambiguous example* `4 0 -> 4` fits copy A and A+B, so it gives each half a vote;
# * an *ambiguous query* `7 0` has copy A and A+B both answering 7, so their
#   probabilities add on that one token.
#
# A sweep over every split of the examples among the three tasks puts every point on the
# diagonal probability = share.
#
# Run: `python examples/ab_digits.py` (figure in `figures/`, or `--out DIR`),
# or open this file as a notebook (jupytext); `make notebooks` writes an executed copy
# into `build/notebooks/`.

# %%
"""Example 6 -- the paper's AB family on digits: copy A, copy B and A+B, in superposition.

The prose is in the markdown cells (``# %% [markdown]``): open this file as a notebook
(jupytext) or read it here.
"""

from __future__ import annotations

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

QUERY = (3, 5)                     # copy A -> 3, copy B -> 5, A+B -> 8
AMBIGUOUS_EXAMPLE = Example([4, 0], 4)  # copy A: 4, A+B: 4 + 0 = 4, copy B: 0
AMBIGUOUS_QUERY = (7, 0)           # copy A -> 7, copy B -> 0, A+B -> 7


# %% [markdown]
# ## The pieces

# %%
def ab_tasks() -> TaskSet:
    """copy A, copy B and A+B mod 10 over the digits, on examples with two inputs."""
    digits = range(10)
    return TaskSet(vocab_size=10, slots=2, tasks=[
        Task("copy A", 0, list(digits)),
        Task("copy B", 1, list(digits)),
        Task("A+B", slots=[0, 1], table=[[(a + b) % 10 for b in digits] for a in digits]),
    ])


def draw_distinct(rng, k: int) -> list[int]:
    """A, B from 1..9 with A != B: then A, B and (A + B) mod 10 are three different digits."""
    return rng.sample(range(1, 10), 2)


def ab_prompt(tasks: TaskSet, counts: tuple[int, ...], query=QUERY, seed: int = 0) -> Prompt:
    return Prompt(mixed_examples(tasks, counts, draw_distinct, seed), query=list(query))


# %% [markdown]
# ## The example: `main`

# %%
def main(out_dir: str | Path = DEFAULT_OUT, small: bool = False) -> FamilyResult:
    """The AB family on digits: copy A, copy B and A+B answered in superposition."""
    tasks = ab_tasks()
    counts = (3, 2, 1) if small else (6, 4, 2)
    n_sweep = 6 if small else 12
    model = build(tasks, max_examples=16)

    mixed = ab_prompt(tasks, counts)
    prompts = {
        "mixed": mixed,
        "ambiguous example": Prompt([*mixed.examples, AMBIGUOUS_EXAMPLE], query=list(QUERY)),
        "ambiguous query": Prompt(mixed.examples, query=list(AMBIGUOUS_QUERY)),
    }
    sweep_counts = splits(n_sweep, tasks.K)
    queries = [(a, b) for a in range(1, 10) for b in range(1, 10) if a != b]
    sweep = [ab_prompt(tasks, c, query=queries[(7 * i) % len(queries)], seed=i) for i, c in enumerate(sweep_counts)]
    result = run_family(model, prompts, sweep)
    m = mixed.n_examples

    print("Example 6: the AB family on digits\n")
    print("Inputs A, B (two slots, digits 0..9). Tasks: copy A -> A (slot 0), copy B -> B (slot 1), "
          "A+B -> (A + B) mod 10\n(slots [0, 1]: a two-slot table, table[A][B]).")
    print(f"Prompt: {m} examples ({', '.join(f'{c} {t.name}' for c, t in zip(counts, tasks.tasks))}), "
          "A, B from 1..9 with A != B so every example fits one task only, shuffled:")
    print("  " + ", ".join(f"{e.inputs[0]} {e.inputs[1]} -> {e.answer}" for e in mixed.examples)
          + f", {QUERY[0]} {QUERY[1]} -> ?")
    print(f"\nQuery (A, B) = {QUERY}: the model's answer distribution (float64) next to the task shares:")
    print_query(tasks, mixed, result.query_distribution("mixed"), result.shares["mixed"])

    ambiguous = prompts["ambiguous example"]
    shares = ", ".join(f"{t.name} {fraction_text(p)}" for t, p in zip(tasks.tasks, result.shares["ambiguous example"]))
    print(f"\nAdd an ambiguous example {AMBIGUOUS_EXAMPLE.inputs[0]} {AMBIGUOUS_EXAMPLE.inputs[1]} -> "
          f"{AMBIGUOUS_EXAMPLE.answer} (fits copy A and A+B: half a vote each), {ambiguous.n_examples} examples; "
          f"shares {shares}:")
    print_query(tasks, ambiguous, result.query_distribution("ambiguous example"), result.shares["ambiguous example"])
    print(f"\nThe mixed prompt with an ambiguous query {AMBIGUOUS_QUERY} (copy A and A+B both answer "
          f"{AMBIGUOUS_QUERY[0]}): their probabilities add.")
    print_query(tasks, prompts["ambiguous query"], result.query_distribution("ambiguous query"),
                result.shares["ambiguous query"])

    gap = float(abs(result.sweep_probabilities - result.sweep_shares).max())
    print(f"\nSweep: {len(sweep)} prompts, one for every split of {n_sweep} examples among the three tasks "
          f"(queries with three different answers):\n  probability on each task's answer vs its share: "
          f"max |difference| = {gap:.1e}")
    print(f"Max |model - analytic| over every prediction position of all {len(prompts) + len(sweep)} prompts "
          f"(float64): {result.max_error:.1e}; bound {result.bound:.1e}.")

    fig = superposition_figure(tasks, mixed, result.query_distribution("mixed"), result.shares["mixed"],
                               f"(A, B) = {QUERY}", result.sweep_shares, result.sweep_probabilities)
    result.figures.append(save_figure(fig, out_dir, "ab_digits.png"))
    print(f"\nFigure: {result.figures[0]}")
    return result


# %% [markdown]
# ## Run it
#
# As a script (`python examples/ab_digits.py [--out DIR] [--small]`, or
# `superpose examples ab`) this reads the command line; in a notebook it runs `main`
# at full size, saves the figures into `figures/` beside the notebook and shows them
# below. `result` holds the numbers `main` returns.

# %%
if __name__ == "__main__":
    result = run_as_script(main)
