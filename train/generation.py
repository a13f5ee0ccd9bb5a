r"""Generation collapse in a trained transformer, against the analytic rules (and the constructed model).

A model trained on single-task prompts with two-token answers (``TrainConfig(family="pairs")``:
two-character retrieval, tasks ``copy AB``, ``copy AC``, ``copy BA``) is asked mixed prompts
(``data.mixed_prompt``: every example fits its own task only, the query's answers all differ).
For each prompt the model's whole answer distribution is computed exactly, by running it on
every answer prefix (``prefix_tables``: the query's ARROW, then each of the d first tokens),
``Q(y_1 y_2) = P(y_1) P(y_2 | y_1)`` over the d content tokens (mass the model puts on BOS or
ARROW is left out, not renormalised). Measured, per prompt, then averaged:

* ``first_token_kl``: ``KL(P_1 || Q_1)``, the first answer token's distribution against the
  shares pooled by first token (tasks AB and AC both start with ``x_A``);
* ``first_token_points``: (pooled share, probability) of each present task's first token;
* ``sequence_kl``: ``KL(P || Q)`` over the tasks' whole answers (``verify.generation.sequence_kl``);
* ``collapse_rate``: given a first token that starts some present task's answer, the
  probability that the continuation completes the answer of a present task starting with it
  (``sum_{v in F} Q(v, .) on those answers / sum_{v in F} Q_1(v)``): 1 for the conditioned rule;
* ``chimera_mass``: ``Q`` on whole answers that are no present task's answer; of it, the *mixed*
  part (every token is the same-position token of some present task's answer) and the part on
  answers of an *absent task* of the family (a task with no example in the prompt; answers that
  are also mixed count as mixed);
* decoder metrics: greedy, one sample (seed = the prompt's index), beam of width 2 and the
  superposed decoder (``threshold``) run on the same prefix tables through
  ``verify.generation`` (coverage, KL, chimera mass and forward passes, averaged; the KL's
  mean is over the prompts where it is finite, ``kl_infinite`` is the fraction where it is not).

Models compared on the same prompts: the trained checkpoint, the analytic conditioned rule, the
analytic marginal rule and, when ``superpose.build`` supports the task set, the constructed model
(``constructed_next_token``).
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Sequence

import numpy as np

from superpose.setting import Prompt, TaskSet, tokenize
from superpose.verify.analytic import next_token_distribution, task_mixture
from superpose.verify.calibration import calibration_kl
from superpose.verify.generation import (DEFAULT_THRESHOLD, CountingStep, beam, greedy, metrics,
                                         reference_mixture, sample, sequence_kl, superposed)

from .data import mixed_prompt
from .mixtures import proportion_grid

#: prompts (each with its ``query_prefix``) -> ``[N, d]`` next-token probabilities over the content tokens
NextTokenFn = Callable[[Sequence[Prompt]], np.ndarray]


def _with_prefix(prompt: Prompt, prefix: Sequence[int]) -> Prompt:
    return Prompt(prompt.examples, prompt.query, query_prefix=list(prefix))


def trained_next_token(config, params) -> NextTokenFn:
    """Softmax of the trained GPT's logits at the prompt's last position (after the query's prefix),
    restricted to the content tokens (not renormalised). Batches are padded to a power of two."""
    from .model import compiled_logits

    apply = compiled_logits(config.model_config)
    tasks = config.tasks

    def next_token(prompts: Sequence[Prompt]) -> np.ndarray:
        rows = [tokenize(tasks, p) for p in prompts]
        out = np.zeros((len(rows), tasks.vocab_size))
        for length in sorted({len(r) for r in rows}):
            idx = [i for i, r in enumerate(rows) if len(r) == length]
            batch = np.stack([rows[i] for i in idx])
            size = 1 << (len(idx) - 1).bit_length()
            batch = np.concatenate([batch, np.repeat(batch[:1], size - len(idx), axis=0)])
            logits = np.asarray(apply(params, batch), dtype=np.float64)[: len(idx), -1]
            probs = np.exp(logits - logits.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            out[idx] = probs[:, : tasks.vocab_size]
        return out

    return next_token


def analytic_next_token(tasks: TaskSet, mode: str = "conditioned") -> NextTokenFn:
    """The analytic rule (``verify.analytic.next_token_distribution``) in float64."""
    def next_token(prompts: Sequence[Prompt]) -> np.ndarray:
        return np.array([[float(x) for x in next_token_distribution(
            tasks, task_mixture(tasks, p.examples), p.query, p.query_prefix, mode)[0]] for p in prompts])
    return next_token


def constructed_next_token(tasks: TaskSet, max_examples: int, dtype: str = "float64",
                           conditioned: bool = True) -> NextTokenFn:
    """The constructed model's readout at the query's last prediction position (raises ``BuildError``
    while ``superpose.build`` does not support the task set)."""
    from superpose import build

    model = build(tasks, max_examples=max_examples, **({} if conditioned else {"conditioned": False}))
    return lambda prompts: np.stack([out[-1] for out in model.run(list(prompts), dtype=dtype)])


def trained_step(config, params, prompt: Prompt) -> CountingStep:
    """A trained checkpoint as a ``verify.generation`` step for one prompt (prefix -> next-token probabilities)."""
    return step_from(trained_next_token(config, params), config.tasks, prompt)


def step_from(next_token: NextTokenFn, tasks: TaskSet, prompt: Prompt) -> CountingStep:
    """A ``verify.generation`` step for ``prompt`` from a batched next-token function."""
    def many(prefixes):
        return list(next_token([_with_prefix(prompt, p) for p in prefixes]))
    return CountingStep(lambda p: many([p])[0], tasks.answer_length, prompt.query_prefix, many=many)


def prefix_tables(next_token: NextTokenFn, tasks: TaskSet, prompts: Sequence[Prompt],
                  batch: int = 4096) -> list[dict[tuple[int, ...], np.ndarray]]:
    """For every prompt, the next-token distribution after every answer prefix of length 0..A-1
    (``d^j`` prefixes of length j): everything any decoder can ask, computed in large batches."""
    d, A = tasks.vocab_size, tasks.answer_length
    tables: list[dict] = [{} for _ in prompts]
    for j in range(A):
        jobs = [(i, prefix) for i in range(len(prompts)) for prefix in itertools.product(range(d), repeat=j)]
        for start in range(0, len(jobs), batch):
            chunk = jobs[start:start + batch]
            out = next_token([_with_prefix(prompts[i], prefix) for i, prefix in chunk])
            for (i, prefix), row in zip(chunk, out):
                tables[i][prefix] = np.asarray(row, dtype=np.float64)
    return tables


def table_step(table: dict, tasks: TaskSet) -> CountingStep:
    """A step that reads a prefix table (each lookup counts as the forward pass it stands for)."""
    return CountingStep(lambda prefix: table[tuple(prefix)], tasks.answer_length)


def sequence_distribution(table: dict, tasks: TaskSet) -> dict[tuple[int, ...], float]:
    """``Q(y) = prod_j P(y_j | y_{<j})`` for every answer ``y`` in ``{0..d-1}^A``."""
    out = {(): 1.0}
    for _ in range(tasks.answer_length):
        out = {a + (v,): p * float(q) for a, p in out.items() for v, q in enumerate(table[a])}
    return out


def prompt_metrics(tasks: TaskSet, prompt: Prompt, table: dict, index: int,
                   threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Everything measured on one prompt (see the module docstring)."""
    Q = sequence_distribution(table, tasks)
    mixture = task_mixture(tasks, prompt.examples)
    present = [k for k, p in enumerate(mixture) if p]
    answers = {k: tasks.answer_of(tasks.tasks[k], prompt.query) for k in present}
    answer_set = set(answers.values())
    P = reference_mixture(tasks, prompt)
    first = {}
    for k in present:
        first[answers[k][0]] = first.get(answers[k][0], 0.0) + float(mixture[k])
    q1 = table[()]
    starts = sum(q1[v] for v in first)
    stays = sum(p for a, p in Q.items() if a[0] in first and a in answer_set)
    by_position = [{answers[k][j] for k in present} for j in range(tasks.answer_length)]
    chimera = [p for a, p in Q.items() if a not in answer_set]
    mixed = sum(p for a, p in Q.items() if a not in answer_set and all(a[j] in by_position[j] for j in range(len(a))))
    absent = {tasks.answer_of(t, prompt.query) for t in tasks.tasks} - answer_set
    absent_mass = sum(p for a, p in Q.items() if a in absent and not all(a[j] in by_position[j] for j in range(len(a))))
    decoders = {
        "greedy": greedy(table_step(table, tasks)),
        "sample": sample(table_step(table, tasks), n=1, seed=index),
        "beam 2": beam(table_step(table, tasks), width=2),
        "superposed": superposed(table_step(table, tasks), threshold=threshold),
    }
    return {
        "shares": [float(mixture[k]) for k in present],
        "answer_probabilities": [Q[answers[k]] for k in present],
        "first_token_points": [(share, float(q1[v])) for v, share in first.items()],
        "first_token_kl": calibration_kl(list(first.values()), list(first), q1),
        "sequence_kl": sequence_kl(P, Q),
        "collapse_rate": stays / starts if starts > 0 else math.nan,
        "chimera_mass": float(sum(chimera)),
        "mixed_chimera_mass": float(mixed),
        "absent_task_mass": float(absent_mass),
        "content_mass": float(sum(Q.values())),
        "decoders": {name: {**metrics(tasks, prompt, dec.answers).to_json(), "forward_passes": dec.forward_passes}
                     for name, dec in decoders.items()},
    }


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float | None, float | None]:
    """Least-squares slope of ``y`` on ``x`` and its R^2 (1 when ``y`` is constant and fitted exactly);
    ``None`` when every ``x`` is the same (for example every first token's pooled share is 1)."""
    if len(x) == 0 or np.ptp(x) == 0:
        return None, None
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = y - y.mean()
    ss = float(total @ total)
    return float(slope), (1 - float(residual @ residual) / ss) if ss > 0 else 1.0


def _mean_or_none(values) -> float | None:
    """The mean of the values that are not NaN (``None`` when none is)."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else None


def summarize(rows: list[dict]) -> dict:
    """Means over the prompts of one model and task subset."""
    first = np.array([pt for r in rows for pt in r["first_token_points"]])
    seq_x = np.array([s for r in rows for s in r["shares"]])
    seq_y = np.array([q for r in rows for q in r["answer_probabilities"]])
    first_slope, first_r2 = _line(first[:, 0], first[:, 1])
    seq_slope, seq_r2 = _line(seq_x, seq_y)
    out = {
        "n_prompts": len(rows),
        "first_token_kl": float(np.mean([r["first_token_kl"] for r in rows])),
        "first_token_slope": first_slope, "first_token_r2": first_r2,
        "sequence_kl": float(np.mean([r["sequence_kl"] for r in rows])),
        "sequence_slope": seq_slope, "sequence_r2": seq_r2,
        "collapse_rate": _mean_or_none([r["collapse_rate"] for r in rows]),
        "chimera_mass": float(np.mean([r["chimera_mass"] for r in rows])),
        "mixed_chimera_mass": float(np.mean([r["mixed_chimera_mass"] for r in rows])),
        "absent_task_mass": float(np.mean([r["absent_task_mass"] for r in rows])),
        "content_mass": float(np.mean([r["content_mass"] for r in rows])),
        "decoders": {},
    }
    for name in rows[0]["decoders"]:
        ms = [r["decoders"][name] for r in rows]
        finite = [m["kl"] for m in ms if m["kl"] is not None]
        out["decoders"][name] = {
            "coverage": float(np.mean([m["coverage"] for m in ms])),
            "kl": float(np.mean(finite)) if finite else None,
            "kl_infinite": 1 - len(finite) / len(ms),
            "chimera_mass": float(np.mean([m["chimera_mass"] for m in ms])),
            "forward_passes": float(np.mean([m["forward_passes"] for m in ms])),
        }
    return out


def generation_prompts(tasks: TaskSet, task_ids: Sequence[int], n_examples: int, prompts_per_point: int,
                       seed: int = 0) -> tuple[list[Prompt], list[tuple[int, ...]]]:
    """``prompts_per_point`` prompts for every split of ``n_examples`` examples among ``task_ids`` that
    gives every task at least one example (mixed prompts only)."""
    rng = np.random.default_rng([seed, *task_ids])
    prompts, counts = [], []
    for c in (c for c in proportion_grid(n_examples, len(task_ids)) if min(c) >= 1):
        for _ in range(prompts_per_point):
            prompts.append(mixed_prompt(tasks, list(task_ids), list(c), rng)[0])
            counts.append(c)
    return prompts, counts


def evaluate_generation(tasks: TaskSet, models: dict[str, NextTokenFn], n_examples: int,
                        subsets: Sequence[Sequence[int]], prompts_per_point: int = 4, seed: int = 0,
                        threshold: float = DEFAULT_THRESHOLD) -> dict:
    """``{model: {subset label: summary}}`` on the same prompts for every model, and the per-split
    means of the first-token and answer probabilities (for the figure) under ``"points"``."""
    results: dict = {}
    for s in subsets:
        label = "+".join(map(str, s))
        prompts, counts = generation_prompts(tasks, s, n_examples, prompts_per_point, seed)
        for name, fn in models.items():
            tables = prefix_tables(fn, tasks, prompts)
            rows = [prompt_metrics(tasks, p, t, i, threshold) for i, (p, t) in enumerate(zip(prompts, tables))]
            summary = summarize(rows)
            summary["tasks"] = [tasks.tasks[k].name for k in s]
            points = {}
            for c, r in zip(counts, rows):
                points.setdefault(c, []).append(r)
            summary["points"] = [
                {"counts": list(c), "share": [x / n_examples for x in c],
                 "answer_probability": np.mean(_per_task(tasks, s, c, rs), axis=0).tolist(),
                 "first_token": np.mean([r["first_token_points"] for r in rs], axis=0).tolist(),
                 "collapse_rate": _mean_or_none([r["collapse_rate"] for r in rs]),
                 "chimera_mass": float(np.mean([r["chimera_mass"] for r in rs]))}
                for c, rs in points.items()]
            results.setdefault(name, {})[label] = summary
    return results


def _per_task(tasks, task_ids, counts, rows) -> list[list[float]]:
    """Each prompt's probability of each task's answer, in ``task_ids`` order (0 for an absent task)."""
    out = []
    for r in rows:
        it = iter(r["answer_probabilities"])
        out.append([next(it) if c else 0.0 for c in counts])
    return out


def checkpoint_models(run, constructed: bool = False) -> dict[str, NextTokenFn]:
    """The models ``evaluate-generation`` compares: the trained checkpoint (a ``TrainResult``), the
    analytic conditioned and marginal rules and, with ``constructed``, the constructed model."""
    c, tasks = run.config, run.config.tasks
    models = {f"trained d{c.d_model} L{c.n_layers}": trained_next_token(c, run.params),
              "analytic conditioned": analytic_next_token(tasks, "conditioned"),
              "analytic marginal": analytic_next_token(tasks, "marginal")}
    if constructed:
        models["constructed (conditioned)"] = constructed_next_token(tasks, c.n_examples - 1)
    return models


def evaluate_checkpoint(run, subsets: Sequence[Sequence[int]], prompts_per_point: int = 4, seed: int = 0,
                        threshold: float = DEFAULT_THRESHOLD, constructed: bool = False) -> dict:
    """The ``generation.json`` report for a trained checkpoint (without its path): every option needed
    to reproduce it, and the results. Prompts have ``n_examples - 1`` examples and a query, so every
    position is one the model was trained on (learned position embeddings)."""
    m = run.config.n_examples - 1
    results = evaluate_generation(run.config.tasks, checkpoint_models(run, constructed), m, subsets,
                                  prompts_per_point, seed, threshold)
    return {"step": run.step, "n_examples": m, "subsets": [list(s) for s in subsets],
            "prompts_per_point": prompts_per_point, "seed": seed, "threshold": threshold,
            "constructed": constructed, "results": results}


def plot_generation(results: dict, path: str, force: bool = True, inputs: Sequence[str] = ()) -> None:
    """Four panels: first-token probability vs share (pooled by first token), whole-answer probability vs
    share, and each model's collapse rate and chimera mass per task subset (a PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from superpose.files import atomic_write

    subsets = list(next(iter(results.values())))
    fig, (ax_first, ax_seq, ax_rate, ax_chim) = plt.subplots(1, 4, figsize=(20, 4.8))
    markers = "osd^v<>"
    for j, (name, by_subset) in enumerate(results.items()):
        first, seq = [], []
        for subset in subsets:
            for pt in by_subset[subset]["points"]:
                first += [tuple(xy) for xy in pt["first_token"]]
                seq += list(zip(pt["share"], pt["answer_probability"]))
        for ax, xy in ((ax_first, first), (ax_seq, seq)):
            ax.scatter(*zip(*xy), s=90 / (j + 1) ** 1.2, marker=markers[j % len(markers)], alpha=0.6, label=name,
                       zorder=3 + j)
    for ax, what in ((ax_first, "first answer token (tasks sharing it pooled)"),
                     (ax_seq, "task's whole answer")):
        ax.plot([0, 1], [0, 1], color="0.75", lw=1, zorder=0)
        ax.set(xlabel="share of the examples", ylabel=f"probability of the {what.split(' (')[0]}",
               title=f"Probability of the {what}", xlim=(-0.03, 1.03), ylim=(-0.03, 1.03))
        ax.title.set_fontsize(10)
    ax_first.legend(fontsize=7, loc="upper left")
    width = 0.8 / len(results)
    labels = ["+".join(t.replace("copy ", "") for t in next(iter(results.values()))[s]["tasks"]) for s in subsets]
    for j, (name, by_subset) in enumerate(results.items()):
        x = np.arange(len(subsets)) + (j - (len(results) - 1) / 2) * width
        color = f"C{j}"
        ax_rate.bar(x, [by_subset[s]["collapse_rate"] or 0 for s in subsets], width, color=color, label=name)
        mixed = np.array([by_subset[s]["mixed_chimera_mass"] for s in subsets])
        absent = np.array([by_subset[s]["absent_task_mass"] for s in subsets])
        total = np.array([by_subset[s]["chimera_mass"] for s in subsets])
        ax_chim.bar(x, mixed, width, color=color, hatch="//", edgecolor="white", label=f"{name}: mixed")
        ax_chim.bar(x, absent, width, bottom=mixed, color=color, alpha=0.55, label=f"{name}: absent task")
        ax_chim.bar(x, total - mixed - absent, width, bottom=mixed + absent, color=color, alpha=0.25)
    ax_rate.set(xticks=range(len(subsets)), xticklabels=labels, ylim=(0, 1.05), ylabel="collapse rate",
                title="Continuation stays with a present task of the first token")
    ax_chim.set(xticks=range(len(subsets)), xticklabels=labels, ylabel="chimera mass",
                title="Answers of no present task (hatched: tokens mixed)")
    for ax in (ax_rate, ax_chim):
        ax.title.set_fontsize(10)
    ax_rate.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    with atomic_write(path, force=force, inputs=inputs) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
