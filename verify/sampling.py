"""Random task sets and prompts with a chosen task mixture, share of ambiguous examples and of noise.

Plain NumPy sampling (seeded), for sweeps; ``superpose.verify.strategies`` has the
Hypothesis strategies for fuzzing. Every example is *generated* by one task k
(``(x, G_k(x[a_k]))``) or is noise; what it is *consistent* with is decided by
``superpose.verify.analytic.consistent_tasks`` afterwards, so the realized shares are
measured, not assumed:

* a *clean* example of task k is consistent with task k only;
* an *ambiguous* example of task k is also consistent with another task (its answer
  agrees with that task's answer on the same inputs);
* a *noise* example is consistent with no task.

When a kind of example does not exist for the task set (e.g. an ambiguous example
with K = 1, a noise answer when the tasks' answers cover every token), the sampler
falls back to what it can draw; ``realized_counts`` reports what was drawn.

>>> rng = np.random.default_rng(0)
>>> tasks = random_task_set(rng, vocab_size=6, n_tasks=3, slots=2)
>>> sample = sample_prompt(rng, tasks, n_examples=20, shares=mixture_shares("uniform", 3, rng),
...                        ambiguous_share=0.25, noise_share=0.2)
>>> sample.prompt.n_examples, sum(sample.task_counts), sample.prompt.n_examples - sum(sample.task_counts)
(20, 16, 4)
>>> realized_counts(tasks, sample.prompt)
{'examples': 20, 'ambiguous': 4, 'noise': 4}
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from superpose.setting import Example, Prompt, Task, TaskSet
from superpose.verify.analytic import consistent_tasks

MIXTURES = ("uniform", "dirichlet", "skewed")
ATTEMPTS = 64  # random tries before falling back to another kind of example


def random_task_set(rng: np.random.Generator, vocab_size: int, n_tasks: int, slots: int,
                    max_arity: int = 1) -> TaskSet:
    """K tasks, each reading ``r`` random distinct slots (r uniform in ``1..min(max_arity, slots)``)
    through a random table ``{0..d-1}^r -> 0..d-1``."""
    tasks = []
    for k in range(n_tasks):
        r = int(rng.integers(1, min(max_arity, slots) + 1))
        read = rng.permutation(slots)[:r].tolist()
        tasks.append(Task(f"t{k}", read, rng.integers(0, vocab_size, (vocab_size,) * r)))
    return TaskSet(vocab_size, slots, tasks)


def mixture_shares(kind: str, n_tasks: int, rng: np.random.Generator) -> np.ndarray:
    """Task proportions: ``uniform`` (1/K each), ``dirichlet`` (Dirichlet(1, ..., 1)) or ``skewed`` (∝ 2^-k)."""
    if kind == "uniform":
        return np.full(n_tasks, 1.0 / n_tasks)
    if kind == "dirichlet":
        return rng.dirichlet(np.ones(n_tasks))
    if kind == "skewed":
        weights = 0.5 ** np.arange(n_tasks)
        return weights / weights.sum()
    raise ValueError(f"mixture must be one of {MIXTURES}, got {kind!r}")


def allocate(total: int, shares: np.ndarray) -> list[int]:
    """Integer counts summing to ``total``, proportional to ``shares`` (largest remainder)."""
    exact = np.asarray(shares, dtype=np.float64) * total / max(float(np.sum(shares)), 1e-300)
    counts = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - counts), kind="stable")[: total - int(counts.sum())]:
        counts[k] += 1
    return counts.tolist()


@dataclass(frozen=True)
class SampledPrompt:
    """A prompt and how it was generated: ``task_counts[k]`` examples of task k (the rest noise)."""

    prompt: Prompt
    task_counts: tuple[int, ...]

    @property
    def example_shares(self) -> tuple[float, ...] | None:
        """``count_k / (number of task examples)``; ``None`` when every example is noise."""
        n = sum(self.task_counts)
        return tuple(c / n for c in self.task_counts) if n else None


def _answers(tasks: TaskSet, inputs: list[int]) -> list[int]:
    return [t(inputs) for t in tasks.tasks]


def _clean(rng, tasks: TaskSet, k: int) -> Example:
    x = rng.integers(0, tasks.vocab_size, tasks.slots).tolist()
    for _ in range(ATTEMPTS):
        answers = _answers(tasks, x)
        if answers.count(answers[k]) == 1:
            break
        x = rng.integers(0, tasks.vocab_size, tasks.slots).tolist()
    return Example(x, tasks.tasks[k](x))


def _ambiguous(rng, tasks: TaskSet, k: int) -> Example:
    task = tasks.tasks[k]
    others = [j for j in range(tasks.K) if j != k]
    for _ in range(ATTEMPTS if others else 0):
        other = tasks.tasks[others[int(rng.integers(0, len(others)))]]
        x = rng.integers(0, tasks.vocab_size, tasks.slots).tolist()
        y = task(x)
        # a slot that only the other task reads can be set to make it agree, leaving y unchanged
        free = [a for a in other.slots if a not in task.slots]
        if free:
            a = free[int(rng.integers(0, len(free)))]
            preimages = [u for u in range(tasks.vocab_size) if other(x[:a] + [u] + x[a + 1:]) == y]
            if preimages:
                x[a] = preimages[int(rng.integers(0, len(preimages)))]
        if other(x) == y:
            return Example(x, y)
    return _clean(rng, tasks, k)


def _noise(rng, tasks: TaskSet) -> Example | None:
    for _ in range(ATTEMPTS):
        x = rng.integers(0, tasks.vocab_size, tasks.slots).tolist()
        free = sorted(set(range(tasks.vocab_size)) - set(_answers(tasks, x)))
        if free:
            return Example(x, free[int(rng.integers(0, len(free)))])
    return None


def sample_prompt(rng: np.random.Generator, tasks: TaskSet, n_examples: int, shares: np.ndarray,
                  ambiguous_share: float = 0.0, noise_share: float = 0.0) -> SampledPrompt:
    """``n_examples`` examples in random order: ``round(noise_share * m)`` noise, the rest split
    over the tasks by ``shares`` (largest remainder), ``round(ambiguous_share * task examples)``
    of them ambiguous; then a random query."""
    n_noise = int(round(noise_share * n_examples))
    counts = allocate(n_examples - n_noise, shares)
    labels = [k for k, c in enumerate(counts) for _ in range(c)]
    ambiguous = set(rng.permutation(len(labels))[: int(round(ambiguous_share * len(labels)))].tolist())
    examples = [_ambiguous(rng, tasks, k) if i in ambiguous else _clean(rng, tasks, k)
                for i, k in enumerate(labels)]
    for _ in range(n_noise):
        noise = _noise(rng, tasks)
        if noise is None:  # the tasks' answers cover every token: no noise example exists
            k = int(rng.integers(0, tasks.K))
            counts[k] += 1
            noise = _clean(rng, tasks, k)
        examples.append(noise)
    order = rng.permutation(len(examples))
    query = rng.integers(0, tasks.vocab_size, tasks.slots).tolist()
    return SampledPrompt(Prompt([examples[i] for i in order], query), tuple(counts))


def realized_counts(tasks: TaskSet, prompt: Prompt) -> dict[str, int]:
    """How many examples are consistent with two or more tasks (ambiguous) and with none (noise)."""
    fits = [len(consistent_tasks(tasks, e)) for e in prompt.examples]
    return {"examples": len(fits), "ambiguous": sum(f >= 2 for f in fits), "noise": sum(f == 0 for f in fits)}
