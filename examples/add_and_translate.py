# %% [markdown]
# # Example 7 — add and translate: A+B written as a word, in English or in Spanish
#
# Every example has two digit inputs A and B, and its answer is the sum A + B (0..18)
# written as a word in one of two languages. The vocabulary has d = 48 tokens:
#
# * tokens 0..9:   the digits `0` .. `9` (the inputs);
# * tokens 10..28: the English words `zero` .. `eighteen`;
# * tokens 29..47: the Spanish words `cero` .. `dieciocho`.
#
# Two tasks, each reading both slots through a table nested two deep over the whole
# vocabulary (`table[A][B]`, 48 x 48 entries, so 2304 conjunction units per task):
#
# * `A+B in English`: the English word for A + B;
# * `A+B in Spanish`: the Spanish word for A + B.
#
# The tables must give an answer for every pair of tokens, words included. When A or B
# is not a digit (a word token) both tables answer the digit `0`: a fixed token that is
# never the answer of a well-formed example. Prompts in the family only feed digits in.
#
# A prompt of 8 English and 4 Spanish examples makes the model answer a fresh query in
# both languages at once, 2/3 English and 1/3 Spanish. Two variants: a *noise* example
# (a wrong sum) fits neither task and changes nothing; an example outside the family,
# `ten 3 -> 0`, fits both tasks through the fallback above and splits its vote.
#
# Run: `python examples/add_and_translate.py` (figure in `figures/`, or `--out DIR`),
# or open this file as a notebook (jupytext); `make notebooks` writes an executed copy
# into `build/notebooks/`.

# %%
"""Example 7 -- add and translate: A+B written as a word, in English or in Spanish.

The prose is in the markdown cells (``# %% [markdown]``): open this file as a notebook
(jupytext) or read it here.
"""

from __future__ import annotations

import random
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

ENGLISH = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
           "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen")
SPANISH = ("cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve", "diez", "once",
           "doce", "trece", "catorce", "quince", "dieciséis", "diecisiete", "dieciocho")
LANGUAGES = {"English": ENGLISH, "Spanish": SPANISH}
FALLBACK = 0  # the answer of both tables when A or B is not a digit: the digit 0
QUERY = (7, 8)  # 15: fifteen / quince


# %% [markdown]
# ## The pieces

# %%
def word_token(language: int, total: int) -> int:
    """Token of the word for ``total`` (0..18) in language 0 (English) or 1 (Spanish)."""
    return 10 + 19 * language + total


def add_and_translate_tasks() -> TaskSet:
    d = 10 + 19 * len(LANGUAGES)
    names = [str(x) for x in range(10)] + [word for words in LANGUAGES.values() for word in words]

    def table(language: int):
        return [[word_token(language, a + b) if a < 10 and b < 10 else FALLBACK for b in range(d)] for a in range(d)]

    tasks = [Task(f"A+B in {name}", slots=[0, 1], table=table(i)) for i, name in enumerate(LANGUAGES)]
    return TaskSet(vocab_size=d, slots=2, tasks=tasks, token_names=names)


def draw_digits(rng, k: int) -> list[int]:
    return [rng.randrange(10), rng.randrange(10)]


# %% [markdown]
# ## The example: `main`

# %%
def main(out_dir: str | Path = DEFAULT_OUT, small: bool = False) -> FamilyResult:
    """Add and translate: A+B as an English and a Spanish word, in superposition."""
    tasks = add_and_translate_tasks()
    counts = (4, 2) if small else (8, 4)
    n_sweep = 6 if small else 12
    model = build(tasks, max_examples=16)

    mixed = Prompt(mixed_examples(tasks, counts, draw_digits, seed=1), query=list(QUERY))
    noise = Example([3, 4], word_token(0, 8))                           # 3 4 -> eight: a wrong sum
    outside = Example([word_token(0, 10), 3], FALLBACK)                  # ten 3 -> 0: both tables' fallback
    prompts = {
        "mixed": mixed,
        "noise example": Prompt([*mixed.examples, noise], query=list(QUERY)),
        "example outside the family": Prompt([*mixed.examples, outside], query=list(QUERY)),
    }
    rng = random.Random(2)
    sweep = [Prompt(mixed_examples(tasks, c, draw_digits, seed=100 + i), query=draw_digits(rng, 0))
             for i, c in enumerate(splits(n_sweep, tasks.K))]
    result = run_family(model, prompts, sweep)
    m = mixed.n_examples

    def show(example: Example) -> str:
        a, b = (tasks.name_of(x) for x in example.inputs)
        return f"{a} {b} -> {tasks.name_of(example.answer)}"

    print("Example 7: add and translate\n")
    print(f"Inputs A, B (two slots); d = {tasks.vocab_size} tokens: digits 0..9, English words zero..eighteen, "
          "Spanish words cero..dieciocho.")
    print("Tasks (each a two-slot table over the whole vocabulary, table[A][B]): A+B in English, A+B in Spanish;")
    print(f"when A or B is a word, not a digit, both tables answer the digit {FALLBACK} (a fixed fallback token).")
    print(f"Prompt: {m} examples ({', '.join(f'{c} {t.name}' for c, t in zip(counts, tasks.tasks))}), shuffled:")
    print("  " + ", ".join(show(e) for e in mixed.examples) + f", {QUERY[0]} {QUERY[1]} -> ?")
    print(f"\nQuery (A, B) = {QUERY}: the model's answer distribution (float64) next to the task shares:")
    print_query(tasks, mixed, result.query_distribution("mixed"), result.shares["mixed"])

    for label, extra, why in [("noise example", noise, "fits neither task: ignored"),
                              ("example outside the family", outside,
                               f"both tables answer {FALLBACK} on a word input: it fits both, half a vote each")]:
        shares = ", ".join(f"{t.name} {fraction_text(p)}" for t, p in zip(tasks.tasks, result.shares[label]))
        print(f"\nAdd the {label} {show(extra)} ({why}); shares {shares}:")
        print_query(tasks, prompts[label], result.query_distribution(label), result.shares[label])

    gap = float(abs(result.sweep_probabilities - result.sweep_shares).max())
    print(f"\nSweep: {len(sweep)} prompts, one for every split of {n_sweep} examples between the two languages:"
          f"\n  probability on each task's answer vs its share: max |difference| = {gap:.1e}")
    print(f"Max |model - analytic| over every prediction position of all {len(prompts) + len(sweep)} prompts "
          f"(float64): {result.max_error:.1e}; bound {result.bound:.1e}.")
    print(f"Model: d_model {model.config.d_model}, MLP width {model.config.d_mlp}.")

    fig = superposition_figure(tasks, mixed, result.query_distribution("mixed"), result.shares["mixed"],
                               f"(A, B) = {QUERY}", result.sweep_shares, result.sweep_probabilities)
    result.figures.append(save_figure(fig, out_dir, "add_and_translate.png"))
    print(f"\nFigure: {result.figures[0]}")
    return result


# %% [markdown]
# ## Run it
#
# As a script (`python examples/add_and_translate.py [--out DIR] [--small]`, or
# `superpose examples add-translate`) this reads the command line; in a notebook it runs `main`
# at full size, saves the figures into `figures/` beside the notebook and shows them
# below. `result` holds the numbers `main` returns.

# %%
if __name__ == "__main__":
    result = run_as_script(main)
