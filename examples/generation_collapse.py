# %% [markdown]
# # Example 9 — generation collapse: answers of several tokens, and a decoder that keeps the superposition
#
# Answers are now words of five letters (`answer_length = 5`; shorter words are padded with
# `_`). Three tasks read one digit x:
#
# * `to word`:           7 -> `seven`
# * `next as word`:      7 -> `eight`
# * `previous as word`:  7 -> `six__`
#
# A prompt mixes 6, 4 and 2 examples of them, so the task shares are 1/2 : 1/3 : 1/6. The
# answer is generated letter by letter; at each letter the *conditioned* (Bayes) rule keeps
# only the tasks whose word starts with the letters generated so far:
#
# * the first letter is a superposition: `s` 2/3 (seven and six), `e` 1/3 (eight);
# * after `s` it is still split: `e` 3/4, `i` 1/4; after `se`, `si` or `ei` one task holds
#   all the probability (the collapse point is 2), and the word is spelled out.
#
# So greedy decoding gives `seven` and nothing else, a sampled answer is always one whole
# word (over many samples with the right frequencies), and a beam of width 2 loses `six`:
# each decode *collapses* onto one task. The *marginal* rule, which predicts each letter from
# the task shares without looking at the letters before it, does not collapse but makes
# chimeras (`sight`, `eeven`, `sixen`, ...): 77/81 of its probability is on words of no task.
# The *superposed* decoder branches on every letter with probability above a threshold,
# carries each branch's probability and returns every task's full word with its share, in
# 12 forward passes (at most 3 words x 5 letters).
#
# The decodes run on the analytic prediction (`superpose.verify.analytic`) through
# `superpose.verify.generation.analytic_step`; `CONSTRUCTED = True` decodes from the
# constructed transformer instead (`model_step`).
#
# Run: `python examples/generation_collapse.py` (figure in `figures/`, or `--out DIR`),
# or open this file as a notebook (jupytext); `make notebooks` writes an executed copy
# into `build/notebooks/`.

# %%
"""Example 9 -- generation collapse: answers of several tokens, and a decoder that keeps the superposition.

The prose is in the markdown cells (``# %% [markdown]``): open this file as a notebook
(jupytext) or read it here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from superpose import Example, Prompt, Task, TaskSet, build
from superpose.examples.common import DEFAULT_OUT, TASK_COLORS, fraction_text, plt, run_as_script, save_figure
from superpose.verify.analytic import task_mixture
from superpose.verify.generation import (Decoded, Metrics, analytic_step, beam, greedy, metrics, model_step, sample,
                                         superposed)

# Decode from the constructed transformer (True) or from the analytic prediction (False, exact
# fractions). The printed numbers agree either way (tests/test_generation_example.py holds for both).
CONSTRUCTED = True

# %% [markdown]
# ## The pieces: words as five tokens, the task set, the prompt, the step

# %%
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
LENGTH = 5
PAD = "_"
LETTERS = tuple(sorted({c for w in WORDS for c in w}))
TOKEN_NAMES = (*map(str, range(10)), *LETTERS, PAD)
QUERY = 7
TRAINING_DIGITS = (0, 1, 2, 3, 4, 5, 6, 8, 9)  # every digit but the query's
SAMPLE_SEEDS = range(10)


def token(name: str) -> int:
    return TOKEN_NAMES.index(name)


def spell(word: str) -> tuple[int, ...]:
    """The answer tokens of a word, padded to five letters."""
    return tuple(token(c) for c in word.ljust(LENGTH, PAD))


def text(tokens) -> str:
    return "".join(TOKEN_NAMES[v] for v in tokens)


def word_tasks() -> TaskSet:
    """to word, next as word, previous as word: a digit to a five-letter word (other inputs: ``_____``)."""
    blank = spell("")

    def table(shift: int):
        return [spell(WORDS[(x + shift) % 10]) if x < 10 else blank for x in range(len(TOKEN_NAMES))]

    return TaskSet(len(TOKEN_NAMES), 1, [Task("to word", 0, table(0)), Task("next as word", 0, table(1)),
                                         Task("previous as word", 0, table(-1))],
                   token_names=TOKEN_NAMES, answer_length=LENGTH)


def mixed_prompt(tasks: TaskSet, counts=(6, 4, 2)) -> Prompt:
    """``counts[k]`` examples of task k on distinct digits, interleaved; the query is 7."""
    examples, digits = [], iter(TRAINING_DIGITS * 3)
    order = [k for k, c in enumerate(counts) for _ in range(c)]
    order = order[::2] + order[1::2]   # interleave the tasks
    for k in order:
        x = next(digits)
        examples.append(Example([token(str(x))], list(tasks.answer_of(tasks.tasks[k], [token(str(x))]))))
    return Prompt(examples, query=[token(str(QUERY))])


def make_step(tasks: TaskSet, prompt: Prompt, mode: str = "conditioned"):
    """The next-letter step the decoders run on: the constructed model or the analytic prediction.
    Each decoder gets a fresh step (it counts its forward passes); the model is built once per mode."""
    if CONSTRUCTED:
        return model_step(constructed_model(tasks, prompt.n_examples, mode), prompt, "float64")
    return analytic_step(tasks, prompt, mode, exact=True)


BUILT: dict = {}   # (task set as JSON, max_examples, mode) -> the constructed model


def constructed_model(tasks: TaskSet, max_examples: int, mode: str):
    key = (json.dumps(tasks.to_json(), sort_keys=True), max_examples, mode)
    if key not in BUILT:
        options = {} if mode == "conditioned" else {"conditioned": False}
        BUILT[key] = build(tasks, max_examples=max_examples, **options)
    return BUILT[key]


# %% [markdown]
# ## The example: `main`

# %%
@dataclass
class GenerationResult:
    tasks: TaskSet
    prompt: Prompt
    shares: dict[str, Fraction]                 # task name -> share of the examples
    tree: dict[str, dict[str, float]]           # prefix text -> {next letter: probability} (conditioned)
    decodes: dict[str, Decoded]                 # label -> decoded answers
    scores: dict[str, Metrics]                  # label -> metrics against the sequence mixture
    samples: list[str]                          # one sampled word per seed (conditioned)
    marginal_samples: list[str]                 # one sampled word per seed (marginal)
    marginal_letters: list[dict[str, float]]    # per position: the marginal rule's letter distribution
    figures: list[Path] = field(default_factory=list)


def conditioned_tree(tasks: TaskSet, prompt: Prompt) -> dict[str, dict[str, float]]:
    """The conditioned next-letter distribution at every prefix the superposed decoder visits."""
    step = make_step(tasks, prompt)
    answers = superposed(step).distribution
    prefixes = sorted({a[:j] for a in answers for j in range(LENGTH)}, key=lambda p: (len(p), text(p)))
    out = {}
    for p in prefixes:
        dist = step(p)
        out[text(p)] = {TOKEN_NAMES[v]: float(q) for v, q in enumerate(dist) if float(q) > 1e-9}
    return out


def _sorted_letters(dist: dict[str, float]) -> str:
    return ", ".join(f"{c} {fraction_text(q)}" for c, q in sorted(dist.items(), key=lambda x: (-x[1], x[0])))


def main(out_dir: str | Path = DEFAULT_OUT, small: bool = False) -> GenerationResult:
    """Generation collapse: greedy, sampled and beam decodes give one task's word; the superposed decoder all."""
    tasks = word_tasks()
    prompt = mixed_prompt(tasks, (3, 2, 1) if small else (6, 4, 2))
    n_samples = 300 if small else 3000
    shares = {t.name: p for t, p in zip(tasks.tasks, task_mixture(tasks, prompt.examples))}
    print("Example 9: generation collapse, and a decoder that keeps the superposition\n")
    print(f"Answers of {LENGTH} tokens (letters; '_' pads short words). Tasks on a digit x: "
          + ", ".join(f"{t.name} ({QUERY} -> {text(tasks.answer_of(t, prompt.query))})" for t in tasks.tasks))
    print(f"Prompt: {prompt.n_examples} examples, " + ", ".join(
        f"{text(e.inputs)} -> {text(e.answer_tokens)}" for e in prompt.examples) + f", {QUERY} -> ?")
    print("Task shares: " + ", ".join(f"{name} {p}" for name, p in shares.items())
          + f"   ({'constructed model' if CONSTRUCTED else 'analytic prediction'})\n")

    tree = conditioned_tree(tasks, prompt)
    print("The conditioned rule, letter by letter (next-letter distribution after each prefix):")
    for prefix, dist in tree.items():
        print(f"  {prefix or '(start)':>8} -> {_sorted_letters(dist)}")

    decodes: dict[str, Decoded] = {}
    decodes["greedy"] = greedy(make_step(tasks, prompt))
    decodes["sample x1"] = sample(make_step(tasks, prompt), n=1, seed=0)
    decodes[f"sample x{n_samples}"] = sample(make_step(tasks, prompt), n=n_samples, seed=0)
    decodes["beam 2"] = beam(make_step(tasks, prompt), width=2)
    decodes["superposed"] = superposed(make_step(tasks, prompt))
    decodes[f"marginal: sample x{n_samples}"] = sample(make_step(tasks, prompt, "marginal"), n=n_samples, seed=0)
    decodes["marginal: superposed"] = superposed(make_step(tasks, prompt, "marginal"), threshold=0)
    scores = {label: metrics(tasks, prompt, d.answers) for label, d in decodes.items()}
    samples = [text(sample(make_step(tasks, prompt), n=1, seed=s).answers[0][0]) for s in SAMPLE_SEEDS]
    marginal_samples = [text(sample(make_step(tasks, prompt, "marginal"), n=1, seed=s).answers[0][0])
                        for s in SAMPLE_SEEDS]
    marginal_step = make_step(tasks, prompt, "marginal")
    path = decodes["greedy"].answers[0][0]   # any prefix: the marginal rule ignores the letters before
    marginal_letters = [{TOKEN_NAMES[v]: float(q) for v, q in enumerate(marginal_step(path[:j])) if float(q) > 1e-9}
                        for j in range(LENGTH)]

    def show(label: str) -> None:
        d, m = decodes[label], scores[label]
        answers = ", ".join(f"{text(a)} {fraction_text(float(p))}" for a, p in d.answers[:6])
        more = f" (+{len(d.answers) - 6} more)" if len(d.answers) > 6 else ""
        kl = "inf" if m.kl == float("inf") else f"{m.kl:.3g}"
        print(f"  {label:>24}: {answers}{more}\n  {'':>24}  {d.forward_passes} forward passes; KL {kl}, "
              f"coverage {fraction_text(float(m.coverage))}, chimera mass {fraction_text(float(m.chimera_mass))}, "
              f"collapse point {m.collapse_point}")

    print("\nDecoding the conditioned rule (answer probability: the sequence's probability; for samples the "
          "fraction of samples):")
    for label in ("greedy", "sample x1", f"sample x{n_samples}", "beam 2", "superposed"):
        show(label)
    print(f"  one sample per seed {SAMPLE_SEEDS.start}..{SAMPLE_SEEDS.stop - 1}: {' '.join(samples)}"
          "  (always one task's whole word)")

    print("\nThe marginal rule: each letter from the task shares, ignoring the letters before it:")
    for j, dist in enumerate(marginal_letters):
        print(f"  letter {j}: {_sorted_letters(dist)}")
    for label in (f"marginal: sample x{n_samples}", "marginal: superposed"):
        show(label)
    print(f"  one sample per seed {SAMPLE_SEEDS.start}..{SAMPLE_SEEDS.stop - 1}: {' '.join(marginal_samples)}"
          "  (chimeras: letters of several words)")

    result = GenerationResult(tasks, prompt, shares, tree, decodes, scores, samples, marginal_samples,
                              marginal_letters)
    result.figures.append(save_figure(figure(result, n_samples), out_dir, "generation_collapse.png"))
    print(f"\nFigure: {result.figures[0]}")
    return result


# %% [markdown]
# ## The figure: the conditioned rule's tree, what each decoder returns, the marginal rule's chimeras

# %%
def _draw_tree(ax, tree: dict[str, dict[str, float]], answers: dict[tuple, float], colors: dict[str, str]) -> None:
    leaves = sorted(text(a) for a in answers)   # alphabetical: words that share a prefix sit together
    y_of = {w: -i for i, w in enumerate(leaves)}

    def y(prefix: str) -> float:
        below = [y_of[w] for w in leaves if w.startswith(prefix)]
        return sum(below) / len(below)

    for prefix, dist in tree.items():
        for letter, q in dist.items():
            child = prefix + letter
            below = [w for w in leaves if w.startswith(child)]
            color = colors[below[0]] if len(below) == 1 else "black"   # one word left: that task's colour
            ax.plot([len(prefix), len(child)], [y(prefix), y(child)], color=color, lw=1.5)
            ax.text(len(child), y(child) + 0.08, letter, ha="center", va="bottom", fontsize=12, weight="bold")
            if q < 1 - 1e-9:
                ax.text(len(prefix) + 0.5, (y(prefix) + y(child)) / 2 + 0.06, fraction_text(q), ha="center",
                        va="bottom", fontsize=8, color="dimgray")
    for w in leaves:
        ax.text(LENGTH + 0.25, y_of[w], f"{w}  {fraction_text(float(answers[tuple(token(c) for c in w)]))}",
                va="center", fontsize=10, color=colors[w])
    ax.set(xlim=(-0.3, LENGTH + 1.8), ylim=(-len(leaves) + 0.5, 0.6), xticks=range(LENGTH + 1),
           yticks=[], xlabel="letters generated",
           title="Conditioned rule: next-letter probabilities\n(collapse after letter 2; superposed decoder keeps all)")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def figure(result: GenerationResult, n_samples: int):
    tasks, prompt = result.tasks, result.prompt
    words = {text(tasks.answer_of(t, prompt.query)): TASK_COLORS[k] for k, t in enumerate(tasks.tasks)}
    fig, (ax_tree, ax_bars, ax_marg) = plt.subplots(1, 3, figsize=(17, 4.8),
                                                    gridspec_kw={"width_ratios": [1.3, 1.4, 1.1]})
    _draw_tree(ax_tree, result.tree, result.decodes["superposed"].distribution, words)

    rows = [("task shares", {text(tasks.answer_of(t, prompt.query)): float(p)
                             for t, p in zip(tasks.tasks, result.shares.values())})]
    for label in ("greedy", "sample x1", f"sample x{n_samples}", "beam 2", "superposed",
                  f"marginal: sample x{n_samples}", "marginal: superposed"):
        rows.append((label, {text(a): float(p) for a, p in result.decodes[label].answers}))
    for i, (label, dist) in enumerate(reversed(rows)):
        left = 0.0
        for w, color in words.items():
            q = dist.get(w, 0.0)
            ax_bars.barh(i, q, left=left, color=color, edgecolor="white", label=w if i == len(rows) - 1 else None)
            left += q
        chimera = sum(q for w, q in dist.items() if w not in words)
        ax_bars.barh(i, chimera, left=left, color="lightgray", hatch="//", edgecolor="white",
                     label="chimeras" if i == 0 else None)
    ax_bars.set(yticks=range(len(rows)), yticklabels=[label for label, _ in reversed(rows)], xlim=(0, 1),
                xlabel="probability of the decoded answers", title="What each decoder returns")
    ax_bars.legend(loc="lower right", fontsize=8)

    marginal = result.decodes["marginal: superposed"].answers[:12]
    ax_marg.bar([text(a) for a, _ in marginal], [float(p) for _, p in marginal],
                color=[words.get(text(a), "lightgray") for a, _ in marginal])
    chimera = float(result.scores["marginal: superposed"].chimera_mass)
    ax_marg.set(ylabel="probability", title=f"Marginal rule: letters mixed across words\nchimera mass "
                                            f"{fraction_text(chimera, 100)} (grey: no task's word)")
    ax_marg.tick_params(axis="x", rotation=70)
    fig.tight_layout()
    return fig


# %% [markdown]
# ## Run it
#
# As a script (`python examples/generation_collapse.py [--out DIR] [--small]`, or
# `superpose examples generation`) this reads the command line; in a notebook it runs `main`
# at full size, saves the figure into `figures/` beside the notebook and shows it below.
# `result` holds the numbers `main` returns.

# %%
if __name__ == "__main__":
    result = run_as_script(main)
