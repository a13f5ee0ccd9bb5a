"""The emergence experiment's evaluation: trained models next to exact references on mixed prompts.

Runs trained on the ``positions`` family (``retrieve position i``) with the three arms
of ``data.arm_batch`` are shown the same mixed prompts (``mixtures.mixture_prompts``:
``m = n_examples - 1`` examples with distinct characters split among a subset of tasks
on every grid point of proportions, the query's characters distinct so that the tasks'
answers differ), next to

* the Bayes-optimal predictor of each training distribution among the runs (``bayes``;
  one per arm, more where an arm was trained with several Dirichlet concentrations or label
  noises: ``bayes_references``), computed exactly on every prompt: the ideal learner of it;
* the constructed model (``superpose.build``), exact by Theorem 1 (probability = share);
  it runs on the first ``constructed_prompts_per_point`` prompts of each point and the
  first ``4 *`` that many coverage prompts per ``K'`` only (it is slow on CPU and exact, so
  more prompts change nothing but the run time);
* the diagonal (probability = share), drawn in the figures.

Per model and subset: slope and R² of probability vs share, ``KL(shares || q)`` (the
paper's metric, ``verify.calibration``), off-task mass, and two per-prompt measures:
``spread`` (the standard deviation of a task's probability across prompts with the same
shares, against ``spread_one_task``) and ``peak_probability`` (the mean largest task
probability, against ``peak_share``) (``mixtures.calibration_metrics``),
and for trained models ``kl_bayes``: the mean ``KL(Bayes_arm || q)`` over the content
tokens, the distance to the ideal learner of the run's own training distribution. Coverage (the paper's
``r``): for uniform mixtures of ``K'`` random tasks (``K' = 2..K``, the examples split as
evenly as ``m`` allows), the fraction of the ``K'`` tasks' answers among the model's
``K'`` most probable tokens. Groups (runs whose names differ only in ``-seed<k>``) are
summarised by the mean over seeds and a 95% Student-t interval.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from superpose.setting import Prompt, TaskSet

from .bayes import bayes_floor, bayes_probabilities
from .data import mixed_prompt
from .mixtures import (ProbabilityFn, calibration_metrics, constructed_probabilities, mixture_prompts, share_axes,
                       trained_probabilities)
from .model import n_params


def coverage_prompts(tasks: TaskSet, n_tasks: int, n_examples: int, n_prompts: int,
                     seed: int = 0) -> tuple[list[Prompt], np.ndarray]:
    """``n_prompts`` uniform mixtures of ``n_tasks`` random tasks (counts differ by at most one) and
    each prompt's ``n_tasks`` task answers at the query."""
    if not 1 <= n_tasks <= min(tasks.K, n_examples):
        raise ValueError(f"n_tasks: must lie in 1..{min(tasks.K, n_examples)}, got {n_tasks}")
    rng = np.random.default_rng([seed, 99, n_tasks])
    prompts, answers = [], []
    for _ in range(n_prompts):
        ids = rng.choice(tasks.K, n_tasks, replace=False).tolist()
        counts = rng.permutation([n_examples // n_tasks + (j < n_examples % n_tasks) for j in range(n_tasks)])
        prompt, task_answers = mixed_prompt(tasks, ids, counts.tolist(), rng)
        prompts.append(prompt)
        answers.append(task_answers)
    return prompts, np.array(answers)


def coverage(probs: np.ndarray, answers: np.ndarray) -> float:
    """Mean over prompts of ``|top-K' tokens of probs ∩ the K' answers| / K'``."""
    k = answers.shape[1]
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float(np.mean([len(set(t.tolist()) & set(a.tolist())) / k for t, a in zip(top, answers)]))


def group_of(name: str) -> str:
    """``conclusive-seed2 -> conclusive``: the runs of one arm and size."""
    return re.sub(r"-seed\d+$", "", name)


def interval(values: Sequence[float]) -> dict:
    """Mean and the half-width of its 95% Student-t interval (``None`` for one value)."""
    from scipy.stats import t

    x = np.asarray(values, dtype=float)
    half = float(t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else None
    return {"mean": float(x.mean()), "ci95": half, "n": len(x)}


def evaluate_runs(runs: dict, subsets: Sequence[Sequence[int]] = ((0, 1), (0, 1, 2)), prompts_per_point: int = 100,
                  coverage_prompts_per_k: int = 100, constructed_prompts_per_point: int = 5, seed: int = 0,
                  floor_prompts: int = 4096, progress=None) -> dict:
    """The report of ``evaluate-mixtures`` for runs of the ``positions`` family: ``runs`` maps a run's
    name to its ``trainer.TrainResult``; all share the task family and ``n_examples``."""
    first = next(iter(runs.values())).config
    tasks, m = first.tasks, first.n_examples - 1
    sets = {"+".join(map(str, s)): (s, *mixture_prompts(tasks, s, m, prompts_per_point, seed)) for s in subsets}
    k_values = list(range(2, min(tasks.K, m) + 1))
    cover = {k: coverage_prompts(tasks, k, m, coverage_prompts_per_k, seed) for k in k_values}
    c_per_point = min(constructed_prompts_per_point, prompts_per_point)
    c_cover = min(constructed_prompts_per_point * 4, coverage_prompts_per_k)

    references = bayes_references([run.config for run in runs.values()])
    models: dict[str, tuple[str, ProbabilityFn, dict]] = {}
    for reference, config in references.items():
        models[reference] = ("bayes", bayes_probabilities(tasks, config.arm, config.label_noise,
                                                          config.dirichlet_alpha),
                             {"arm": config.arm, "label_noise": config.label_noise,
                              "dirichlet_alpha": config.dirichlet_alpha if config.arm == "mixed" else None})
    if constructed_prompts_per_point > 0:
        models["constructed"] = ("constructed", constructed_probabilities(tasks, m), {})
    for name, run in runs.items():
        models[name] = ("trained", trained_probabilities(run.config, run.params),
                        {"arm": run.config.arm, "reference": reference_name(run.config, references)})

    bayes_cache: dict[str, dict] = {}
    report_models = {}
    for name, (kind, fn, info) in models.items():
        if progress:
            progress(name)
        entry = {"kind": kind, **info, "subsets": {}, "coverage": {}}
        for label, (subset, prompts, answers, shares) in sets.items():
            if kind == "constructed":
                keep = np.arange(len(prompts)) % prompts_per_point < c_per_point
                sub = [p for p, k in zip(prompts, keep) if k]
                metrics = calibration_metrics(fn(sub), answers[keep], shares[keep], c_per_point)
            else:
                probs = fn(prompts)
                if kind == "bayes":
                    bayes_cache.setdefault(name, {})[label] = probs
                reference = bayes_cache[info["reference"]][label] if kind == "trained" else None
                metrics = calibration_metrics(probs, answers, shares, prompts_per_point, reference)
                if kind == "trained":
                    metrics["kl_bayes"] = metrics.pop("kl_reference")
            entry["subsets"][label] = {"tasks": [tasks.tasks[k].name for k in subset], **metrics}
        for k, (prompts, answers) in cover.items():
            n = c_cover if kind == "constructed" else len(prompts)
            entry["coverage"][str(k)] = coverage(fn(prompts[:n]), answers[:n])
        if kind == "trained":
            run = runs[name]
            final = run.history[-1] if run.history else {}
            entry.update({"group": group_of(name), "seed": run.config.seed, "d_model": run.config.d_model,
                          "n_layers": run.config.n_layers, "params": n_params(run.params), "step": run.step,
                          "steps": run.config.steps, "eval_loss": final.get("eval_loss"),
                          "bayes_loss": final.get("bayes_loss"), "accuracy_last": final.get("accuracy_last")})
            if run.config.data_seed is not None:   # set apart from the seed (older runs have no key)
                entry["data_seed"] = run.config.data_seed
            if entry["eval_loss"] is not None and entry["bayes_loss"] is not None:
                entry["gap_to_bayes"] = entry["eval_loss"] - entry["bayes_loss"]
        report_models[name] = entry

    floors = {reference.removeprefix("bayes "): bayes_floor(config, floor_prompts)
              for reference, config in references.items()}
    return {"family": first.family, "vocab_size": tasks.vocab_size, "slots": tasks.slots, "n_examples": m,
            "prompts_per_point": prompts_per_point, "coverage_prompts": coverage_prompts_per_k,
            "constructed_prompts_per_point": c_per_point, "constructed_coverage_prompts": c_cover,
            "seed": seed, "bayes_floor": floors, "models": report_models, "groups": summarise(report_models)}


def _distribution(config) -> tuple:
    """What a Bayes predictor of a run's training data depends on (besides the tasks)."""
    return config.arm, config.label_noise, config.dirichlet_alpha if config.arm == "mixed" else None


def bayes_references(configs: Sequence) -> dict:
    """One Bayes-optimal reference per training distribution among ``configs``: ``{name: config}``.
    The name is ``bayes <arm>``; where runs of one arm were trained on several distributions
    (another Dirichlet concentration of the mixed arm, another label noise), the parameters that
    tell them apart follow it, e.g. ``bayes mixed (alpha 0.05)``."""
    firsts: dict[tuple, object] = {}
    for config in configs:
        firsts.setdefault(_distribution(config), config)
    names = {}
    for key, config in firsts.items():
        same_arm = [k for k in firsts if k[0] == key[0]]
        apart = [f"{label} {key[i]:g}" for i, label in ((1, "label_noise"), (2, "alpha"))
                 if len({k[i] for k in same_arm}) > 1]
        names[f"bayes {key[0]}" + (f" ({', '.join(apart)})" if apart else "")] = config
    return names


def reference_name(config, references: dict) -> str:
    """The name, among ``bayes_references``, of the reference for a run trained with ``config``."""
    return next(name for name, c in references.items() if _distribution(c) == _distribution(config))


SUMMARY_KEYS = ("slope", "r2", "kl", "kl_bayes", "off_task_mass", "spread", "peak_probability")


def summarise(models: dict) -> dict:
    """Per group of trained runs: mean and 95% interval over seeds of every metric."""
    groups: dict[str, list[dict]] = {}
    for entry in models.values():
        if entry["kind"] == "trained":
            groups.setdefault(entry["group"], []).append(entry)
    out = {}
    for group, entries in groups.items():
        first = entries[0]
        summary = {"arm": first["arm"], "reference": first["reference"], "d_model": first["d_model"],
                   "n_layers": first["n_layers"], "params": first["params"], "steps": first["steps"], "seeds": sorted(e["seed"] for e in entries),
                   "subsets": {},
                   "coverage": {k: interval([e["coverage"][k] for e in entries]) for k in first["coverage"]}}
        for label in first["subsets"]:
            summary["subsets"][label] = {key: interval([e["subsets"][label][key] for e in entries])
                                         for key in SUMMARY_KEYS}
        for key in ("eval_loss", "bayes_loss", "gap_to_bayes", "accuracy_last"):
            if all(e.get(key) is not None for e in entries):
                summary[key] = interval([e[key] for e in entries])
        out[group] = summary
    return out


def _share_curve(entry: dict) -> tuple[np.ndarray, np.ndarray]:
    """Mean probability at each share value, pooled over the subsets and tasks of one model."""
    pairs = [(round(s, 9), q) for cal in entry["subsets"].values() for point in cal["points"]
             for s, q in zip(point["share"], point["mean_probability"])]
    shares = np.array(sorted({s for s, _ in pairs}))
    return shares, np.array([np.mean([q for s, q in pairs if s == x]) for x in shares])


def plot_report(report: dict, paths: dict, force: bool = True, inputs: Sequence[str] = ()) -> None:
    """The three figures: ``calibration`` (probability vs share, one panel per arm: the diagonal,
    the arm's Bayes predictor, the constructed model, the trained groups with 95% intervals over
    seeds), ``coverage`` (r/K' vs K') and ``kl_size`` (KL vs parameters)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models, groups = report["models"], report["groups"]
    arms = [a for a in ("conclusive", "weak", "mixed") if any(e.get("arm") == a for e in models.values())]
    fig, axes = plt.subplots(1, len(arms), figsize=(4.6 * len(arms), 4.4), squeeze=False)
    for ax, arm in zip(axes[0], arms):
        ax.plot([0, 1], [0, 1], color="0.7", lw=1, label="diagonal (probability = share)")
        references = [name for name, e in models.items() if e["kind"] == "bayes" and e["arm"] == arm]
        for reference, style in zip(references, ("k--", "k-.", "k:")):
            ax.plot(*_share_curve(models[reference]), style, lw=1.5,
                    label=f"Bayes-optimal, {arm} arm" + reference.removeprefix(f"bayes {arm}"))
        if "constructed" in models:
            ax.plot(*_share_curve(models["constructed"]), "x", color="tab:green", label="constructed (7 layers)")
        for group, summary in groups.items():
            if summary["arm"] != arm:
                continue
            curves = [_share_curve(e) for e in models.values() if e.get("group") == group]
            x = curves[0][0]
            ys = np.array([c[1] for c in curves])
            err = [interval(col)["ci95"] or 0.0 for col in ys.T]
            seeds = f"{len(curves)} seed" + ("s" if len(curves) > 1 else "")
            ax.errorbar(x, ys.mean(0), yerr=err, marker="o", ms=3, capsize=2, lw=1,
                        label=f"{group} (d{summary['d_model']} L{summary['n_layers']}, {seeds})")
        ax.set_title(f"{arm} arm", fontsize=10)
        share_axes(ax, legend_size=6.5)
    fig.tight_layout()
    _save(fig, paths["calibration"], force, inputs)

    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    for name, entry in models.items():
        if entry["kind"] != "trained":
            ks = sorted(int(k) for k in entry["coverage"])
            ax.plot(ks, [entry["coverage"][str(k)] for k in ks], "--" if entry["kind"] == "bayes" else ":",
                    marker="x", label=name)
    for group, summary in groups.items():
        ks = sorted(int(k) for k in summary["coverage"])
        ax.errorbar(ks, [summary["coverage"][str(k)]["mean"] for k in ks],
                    yerr=[summary["coverage"][str(k)]["ci95"] or 0.0 for k in ks], marker="o", ms=3, capsize=2,
                    label=f"{group} ({summary['params']:,} params)")
    ax.set_xlabel("K' (tasks mixed uniformly in the prompt)")
    ax.set_ylabel("r / K' (present answers among the top K')")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=6.5)
    fig.tight_layout()
    _save(fig, paths["coverage"], force, inputs)

    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    for key, label, marker in (("kl", "KL(shares ‖ q)", "o"), ("kl_bayes", "KL(Bayes of the arm ‖ q)", "s")):
        # one line per training distribution and length: groups that differ only in steps are not sizes
        series = sorted({(s["reference"], s["steps"]) for s in groups.values()},
                        key=lambda a: (arms.index(models[a[0]]["arm"]), a[0], a[1]))
        for reference, steps in series:
            # sorted by size only: groups of one size must not compare their dicts
            rows = sorted(((s["params"], s) for s in groups.values() if (s["reference"], s["steps"]) ==
                           (reference, steps)), key=lambda r: r[0])
            x = [p for p, _ in rows]
            y = [np.mean([s["subsets"][lab][key]["mean"] for lab in s["subsets"]]) for _, s in rows]
            ax.plot(x, y, marker=marker, label=f"{reference.removeprefix('bayes ')}, {steps:,} steps: {label}")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(plt.NullFormatter())   # the minor labels of a short log axis overlap
    ax.set_xlabel("parameters")
    ax.set_ylabel("nats (mean over seeds and task subsets)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, paths["kl_size"], force, inputs)


def _save(fig, path, force, inputs) -> None:
    """Write a figure as a PNG atomically (``force=False`` refuses an existing file)."""
    import matplotlib.pyplot as plt

    from superpose.files import atomic_write

    with atomic_write(path, force=force, inputs=inputs) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def report_table(report: dict) -> str:
    """The README's table: one row per group of trained runs and per reference, metrics averaged over
    the task subsets (means ± 95% interval over seeds)."""
    def fmt(iv, digits=2):
        if isinstance(iv, dict):
            return f"{iv['mean']:.{digits}f}" + (f" ± {iv['ci95']:.{digits}f}" if iv["ci95"] is not None else "")
        return "—" if iv is None else f"{iv:.{digits}f}"

    def pooled(summary_subsets, key):   # mean over subsets of per-subset intervals (means and half-widths)
        ivs = [s[key] for s in summary_subsets.values()]
        half = [i["ci95"] for i in ivs]
        return {"mean": float(np.mean([i["mean"] for i in ivs])),
                "ci95": None if None in half else float(np.mean(half))}

    lines = ["| model | params | seeds | eval loss − Bayes loss | slope | R² | KL(shares ‖ q) | KL(Bayes ‖ q) | "
             "off-task mass | spread | r/K' (K' = 2 / max) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for group, s in report["groups"].items():
        ks = sorted(s["coverage"], key=int)
        lines.append(f"| {group} (d{s['d_model']} L{s['n_layers']}) | {s['params']:,} | {len(s['seeds'])} | "
                     f"{fmt(s.get('gap_to_bayes'), 3)} | {fmt(pooled(s['subsets'], 'slope'))} | "
                     f"{fmt(pooled(s['subsets'], 'r2'))} | {fmt(pooled(s['subsets'], 'kl'))} | "
                     f"{fmt(pooled(s['subsets'], 'kl_bayes'))} | {fmt(pooled(s['subsets'], 'off_task_mass'), 3)} | "
                     f"{fmt(pooled(s['subsets'], 'spread'))} | "
                     f"{fmt(s['coverage'][ks[0]])} / {fmt(s['coverage'][ks[-1]])} |")
    for name, e in report["models"].items():
        if e["kind"] == "trained":
            continue
        cal = e["subsets"].values()
        ks = sorted(e["coverage"], key=int)
        lines.append(f"| {name} | — | — | — | {np.mean([c['slope'] for c in cal]):.2f} | "
                     f"{np.mean([c['r2'] for c in cal]):.2f} | {np.mean([c['kl'] for c in cal]):.2f} | — | "
                     f"{np.mean([c['off_task_mass'] for c in cal]):.3f} | {np.mean([c['spread'] for c in cal]):.2f} | "
                     f"{e['coverage'][ks[0]]:.2f} / {e['coverage'][ks[-1]]:.2f} |")
    return "\n".join(lines)


def run_table(report: dict) -> str:
    """One row per trained run (seeds apart: a group's mean hides which seeds learned), metrics
    averaged over the task subsets."""
    lines = ["| run | steps | accuracy (after 9 examples) | eval loss − Bayes loss | slope | R² | KL(shares ‖ q) | "
             "KL(Bayes ‖ q) | off-task mass | spread (one task per prompt) | largest task probability (shares) | "
             "r/K' (K' = 2 / max) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, e in report["models"].items():
        if e["kind"] != "trained":
            continue
        cal = list(e["subsets"].values())
        mean = lambda key: float(np.mean([c[key] for c in cal]))  # noqa: E731
        ks = sorted(e["coverage"], key=int)
        gap = e.get("gap_to_bayes")
        lines.append(f"| {name} | {e['step']:,} | {e['accuracy_last']:.2f} | {'—' if gap is None else f'{gap:.3f}'} | "
                     f"{mean('slope'):.2f} | {mean('r2'):.2f} | {mean('kl'):.2f} | {mean('kl_bayes'):.2f} | "
                     f"{mean('off_task_mass'):.3f} | {mean('spread'):.2f} ({mean('spread_one_task'):.2f}) | "
                     f"{mean('peak_probability'):.2f} ({mean('peak_share'):.2f}) | "
                     f"{e['coverage'][ks[0]]:.2f} / {e['coverage'][ks[-1]]:.2f} |")
    return "\n".join(lines)
