"""Calibration on mixed prompts: probability on each task's answer vs that task's share.

For a subset of tasks (2 or 3 of them) and every way of splitting ``m`` examples among
them (a grid of proportions), ``prompts_per_point`` prompts are drawn
(``data.mixed_prompt``: every example fits its own task only, and the query's answers
differ across tasks). For each prompt, with shares ``pi_k`` and the model's
probabilities ``q_k`` on the tasks' answers at the query:

* calibration line: least squares ``q = slope * pi + intercept`` over all (pi_k, q_k),
  and its ``R^2``;
* ``KL(pi || q)``: the paper's metric, ``superpose.verify.calibration.calibration_kl``
  (the model's probabilities on the tasks' answers, not renormalised, against the task
  shares), averaged over prompts;
* ``off_task_mass = 1 - sum_k q_k``: probability left on answers of no task;
* per prompt, not only on average: ``spread``, the standard deviation of ``q_k`` across
  the prompts of one grid point (they all have the same shares), averaged over tasks and
  points: 0 for a model that gives every prompt its shares, ``sqrt(pi (1 - pi))`` for one
  that puts all its mass on a single task drawn with probability ``pi`` (averaged the same
  way: ``spread_one_task``); and
  ``peak_probability``, the mean over prompts of ``max_k q_k``, next to ``peak_share``,
  the mean of ``max_k pi_k`` (what a model calibrated on every prompt would have).

The constructed model (``superpose.build`` on the same task set) is measured on the
same prompts; its numbers should be exact (slope 1, R^2 1, KL 0, off-task mass 0).
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

import numpy as np

from superpose.setting import Prompt, TaskSet, tokenize
from superpose.verify.calibration import calibration_kl

from .data import mixed_prompt

ProbabilityFn = Callable[[Sequence[Prompt]], np.ndarray]  # prompts -> [N, d] probs at the query


def proportion_grid(n_examples: int, n_tasks: int) -> list[tuple[int, ...]]:
    """Every split of ``n_examples`` examples among ``n_tasks`` tasks (counts summing to m)."""
    return [c for c in itertools.product(range(n_examples + 1), repeat=n_tasks) if sum(c) == n_examples]


def trained_probabilities(config, params, chunk: int = 512) -> ProbabilityFn:
    """Softmax over the trained model's logits at the query's ARROW (prompts grouped by length, in
    batches of ``chunk``)."""
    from .model import compiled_logits

    apply = compiled_logits(config.model_config)

    def probabilities(prompts: Sequence[Prompt]) -> np.ndarray:
        tasks = config.tasks
        rows = [tokenize(tasks, p) for p in prompts]  # ends at the query's ARROW
        lengths = {len(r) for r in rows}
        out = np.zeros((len(rows), tasks.vocab_size))
        for length in lengths:
            idx = [i for i, r in enumerate(rows) if len(r) == length]
            logits = np.concatenate([np.asarray(apply(params, np.stack([rows[i] for i in idx[c:c + chunk]])))[:, -1]
                                     for c in range(0, len(idx), chunk)])
            probs = np.exp(logits - logits.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            out[idx] = probs[:, : tasks.vocab_size]
        return out

    return probabilities


def constructed_probabilities(tasks: TaskSet, max_examples: int, dtype: str = "float64") -> ProbabilityFn:
    from superpose import build

    model = build(tasks, max_examples=max_examples)
    return lambda prompts: np.stack([out[-1] for out in model.run(list(prompts), dtype=dtype)])


def mixture_prompts(tasks: TaskSet, task_ids: Sequence[int], n_examples: int, prompts_per_point: int,
                    seed: int = 0) -> tuple[list[Prompt], np.ndarray, np.ndarray]:
    """``prompts_per_point`` prompts (``data.mixed_prompt``) for every split of ``n_examples`` examples
    among ``task_ids`` (``proportion_grid`` order), with each prompt's task answers at the query
    ``[N, len(task_ids)]`` and task shares ``[N, len(task_ids)]``."""
    rng = np.random.default_rng([seed, *task_ids])
    prompts, answers, shares = [], [], []
    for counts in proportion_grid(n_examples, len(task_ids)):
        for _ in range(prompts_per_point):
            prompt, task_answers = mixed_prompt(tasks, list(task_ids), list(counts), rng)
            prompts.append(prompt)
            answers.append(task_answers)
            shares.append(np.array(counts) / n_examples)
    return prompts, np.array(answers), np.array(shares)


def calibration_metrics(probs: np.ndarray, answers: np.ndarray, shares: np.ndarray, prompts_per_point: int,
                        reference: np.ndarray | None = None) -> dict:
    """Calibration metrics (module docstring) of probabilities ``probs[N, d]`` at the queries of
    ``mixture_prompts``; with ``reference[N, d]`` also ``kl_reference``, the mean
    ``KL(reference || probs)`` over the ``d`` content tokens (nats, ``probs`` not renormalised)."""
    q = np.take_along_axis(probs, answers, axis=1)
    pi = shares
    slope, intercept = np.polyfit(pi.ravel(), q.ravel(), 1)
    residual = q.ravel() - (slope * pi.ravel() + intercept)
    total = q.ravel() - q.ravel().mean()
    r2 = 1 - float(residual @ residual) / float(total @ total) if float(total @ total) > 0 else 1.0
    kl = np.mean([calibration_kl(s, a, row) for s, a, row in zip(shares, answers, probs)])
    at_point = [slice(i * prompts_per_point, (i + 1) * prompts_per_point)
                for i in range(len(probs) // prompts_per_point)]
    points = [{"share": pi[at.start].tolist(), "mean_probability": q[at].mean(0).tolist()} for at in at_point]
    spread = float(np.mean([q[at].std(0).mean() for at in at_point]))
    one_task = float(np.mean([np.sqrt(pi[at.start] * (1 - pi[at.start])).mean() for at in at_point]))
    out = {"n_prompts": len(probs), "slope": float(slope), "intercept": float(intercept), "r2": float(r2),
           "kl": float(kl), "off_task_mass": float(1 - q.sum(1).mean()), "spread": spread, "spread_one_task": one_task,
           "peak_probability": float(q.max(1).mean()), "peak_share": float(pi.max(1).mean()), "points": points}
    if reference is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(reference > 0, reference * (np.log(reference) - np.log(probs)), 0.0)
        out["kl_reference"] = float(terms.sum(1).mean())
    return out


def calibration(tasks: TaskSet, probabilities: ProbabilityFn, task_ids: Sequence[int], n_examples: int,
                prompts_per_point: int, seed: int = 0) -> dict:
    """Calibration metrics of one model for one subset of tasks (see the module docstring)."""
    prompts, answers, shares = mixture_prompts(tasks, task_ids, n_examples, prompts_per_point, seed)
    metrics = calibration_metrics(probabilities(prompts), answers, shares, prompts_per_point)
    metrics["points"] = [{"counts": list(counts), **point}
                         for point, counts in zip(metrics["points"], proportion_grid(n_examples, len(task_ids)))]
    return {"tasks": [tasks.tasks[k].name for k in task_ids], **metrics}


def evaluate_mixtures(tasks: TaskSet, models: dict[str, ProbabilityFn], n_examples: int,
                      subsets: Sequence[Sequence[int]] = ((0, 1), (0, 1, 2)),
                      prompts_per_point: int = 8, seed: int = 0) -> dict:
    """``{model name: {subset label: calibration}}`` on the same prompts for every model."""
    return {name: {"+".join(map(str, s)): calibration(tasks, fn, s, n_examples, prompts_per_point, seed)
                   for s in subsets}
            for name, fn in models.items()}


def share_axes(ax, legend_size: float = 7) -> None:
    """Label and frame a probability-vs-share panel (both axes on [0, 1]) and add its legend."""
    ax.set_xlabel("task's share of the in-context examples")
    ax.set_ylabel("probability on the task's answer")
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=legend_size, loc="upper left")


def plot_calibration(results: dict, path: str, force: bool = True, inputs: Sequence[str] = ()) -> None:
    """One panel per task subset: mean probability on each task's answer vs its share (a PNG, written
    atomically; ``force=False`` refuses an existing file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    subsets = list(next(iter(results.values())))
    fig, axes = plt.subplots(1, len(subsets), figsize=(5 * len(subsets), 4.4), squeeze=False)
    markers = "osd^v<>"
    for ax, subset in zip(axes[0], subsets):
        ax.plot([0, 1], [0, 1], color="0.75", lw=1, zorder=0)
        for j, (name, by_subset) in enumerate(results.items()):
            cal = by_subset[subset]
            share = np.array([p["share"] for p in cal["points"]]).ravel()
            prob = np.array([p["mean_probability"] for p in cal["points"]]).ravel()
            ax.scatter(share, prob, s=18, marker=markers[j % len(markers)], alpha=0.75,
                       label=f"{name}: slope {cal['slope']:.2f}, R² {cal['r2']:.2f}, KL {cal['kl']:.3f}")
        ax.set_title(" + ".join(cal["tasks"]), fontsize=9)
        share_axes(ax, legend_size=7)
    fig.tight_layout()
    from superpose.files import atomic_write

    with atomic_write(path, force=force, inputs=inputs) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
