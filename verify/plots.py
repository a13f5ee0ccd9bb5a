"""Figures from a sweep file (matplotlib, the ``plot`` extra; imported only when drawing).

* ``error_vs_sharpness``: max-abs error and the bound against beta (log-log), per dtype;
  the region where hypothesis H fails (no bound claimed) is shaded.
* ``error_vs_length``: max-abs error and the bound against the prompt length T (log-log).
* ``d_model_vs_length``: d_model against m * n (= T - n, the tokens of the examples) for
  each (d, K), with ``2d + 2Kd + 5K + 2 ceil(log2 T) + 5``: logarithmic growth.
* ``calibration``: at each query, the model's probability on each distinct task answer
  against that answer's share of the in-context task examples (tasks with the same
  answer pooled, as in ``superpose.verify.calibration``); the diagonal is perfect
  calibration. Drawn apart: configurations with ambiguous examples (there the
  construction follows the vote shares, an ambiguous example's vote being split, not
  the shares of the tasks that generated the examples) and configurations whose bound
  exceeds ``PROVEN_BELOW`` or does not hold (low sharpness: soft attention leaks).

Each figure is written as PNG and SVG (``save_all``); an error of exactly 0 is drawn
at ``ZERO_FLOOR`` on the log axes.
"""

from __future__ import annotations

import math
import os
from typing import Callable, Sequence

from superpose.construct.residual import d_model_formula
from superpose.files import atomic_write, check_outputs, make_directory
from superpose.setting import InputFileError

ZERO_FLOOR = 1e-18
PROVEN_BELOW = 1e-2
COLORS = {"float32": "tab:orange", "float64": "tab:blue"}


def _figure(width: float = 6.0, height: float = 4.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    return fig, fig.add_subplot()


def _floor(x: float | None) -> float:
    return max(x, ZERO_FLOOR) if x is not None else math.nan


def _by_dtype(records: Sequence[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(r["config"]["dtype"], []).append(r)
    return dict(sorted(out.items()))


def _fixed(records: Sequence[dict], vary: str) -> list[dict]:
    """The records of the largest family in which only ``vary`` (and dtype/seed) changes."""
    keys = ("vocab_size", "n_tasks", "slots", "n_examples", "sharpness", "mixture", "ambiguous_share",
            "noise_share")
    families: dict[tuple, list[dict]] = {}
    for r in records:
        families.setdefault(tuple(r["config"][k] for k in keys if k != vary), []).append(r)
    best = max(families.values(), key=lambda rs: (len({r["config"][vary] for r in rs}), len(rs)))
    return best


def error_vs_sharpness(records: Sequence[dict]):
    family = _fixed(records, "sharpness")
    fig, ax = _figure()
    failing = [r["config"]["sharpness"] for r in family if not r["bound_holds"]]
    if failing:
        ax.axvspan(min(failing) / 1.1, max(failing) * 1.05, color="0.9", label="hypothesis H fails: no bound")
    for dtype, rs in _by_dtype(family).items():
        rs = sorted(rs, key=lambda r: r["config"]["sharpness"])
        beta = [r["config"]["sharpness"] for r in rs]
        ax.plot(beta, [_floor(r["max_abs_error"]) for r in rs], "o", color=COLORS.get(dtype), ms=4,
                label=f"max |error|, {dtype}")
        held = [r for r in rs if r["bound_holds"]]
        ax.plot([r["config"]["sharpness"] for r in held], [r["bound"] for r in held], "-", color=COLORS.get(dtype),
                label=f"bound, {dtype}")
    leak = sorted((r["config"]["sharpness"], r["bound_leak"]) for r in family if r["bound_leak"] is not None)
    if leak:
        ax.plot(*zip(*leak), ":", color="0.4", label="leak term (exact arithmetic)")
    c = family[0]["config"]
    ax.set(xscale="log", yscale="log", xlabel="sharpness β", ylabel="max |model − prediction|",
           title=f"Error vs sharpness (d={c['vocab_size']}, K={c['n_tasks']}, s={c['slots']}, "
                 f"T={family[0]['prompt_length']})")
    ax.set_ylim(bottom=ZERO_FLOOR / 2, top=10)
    ax.legend(fontsize=7)
    return fig


def error_vs_length(records: Sequence[dict]):
    family = _fixed(records, "n_examples")
    fig, ax = _figure()
    for dtype, rs in _by_dtype(family).items():
        rs = sorted(rs, key=lambda r: r["prompt_length"])
        ax.plot([r["prompt_length"] for r in rs], [_floor(r["max_abs_error"]) for r in rs], "o",
                color=COLORS.get(dtype), ms=4, label=f"max |error|, {dtype}")
        held = [r for r in rs if r["bound_holds"]]
        ax.plot([r["prompt_length"] for r in held], [r["bound"] for r in held], "-", color=COLORS.get(dtype),
                label=f"bound, {dtype}")
    c = family[0]["config"]
    ax.set(xscale="log", yscale="log", xlabel="prompt length T (tokens)", ylabel="max |model − prediction|",
           title=f"Error vs prompt length (d={c['vocab_size']}, K={c['n_tasks']}, s={c['slots']}, "
                 f"β={c['sharpness']:g})")
    ax.set_xscale("log", base=2)
    ax.legend(fontsize=7)
    return fig


def d_model_vs_length(records: Sequence[dict]):
    fig, ax = _figure()
    series: dict[tuple, set] = {}
    for r in records:
        c = r["config"]
        key = (c["vocab_size"], c["n_tasks"], r["slots_read"])
        series.setdefault(key, set()).add((c["n_examples"] * r["example_length"], r["prompt_length"], r["d_model"]))
    series = {k: v for k, v in series.items() if len({p[0] for p in v}) >= 3}
    if not series:
        raise InputFileError("SWEEP: d_model vs m*n needs a (d, K, S) with at least 3 different prompt lengths")
    for (d, K, S), points in sorted(series.items()):
        points = sorted(points)
        line = ax.plot([p[0] for p in points], [p[2] for p in points], "o", ms=4, label=f"d={d}, K={K}, S={S}")[0]
        lo, hi = max(1, points[0][0]), points[-1][0]
        n = points[-1][1] - points[-1][0]
        xs = sorted({int(round(lo * (hi / lo) ** (i / 200))) for i in range(201)})
        ax.plot(xs, [d_model_formula(d, S, K, x + n) for x in xs], "-", color=line.get_color(), lw=0.8)
    ax.set(xscale="log", xlabel="m·n (tokens in the in-context examples)", ylabel="d_model",
           title="d_model = 2d + Sd + 5K + 2⌈log₂T⌉ + 5 (lines): logarithmic in m·n")
    ax.set_xscale("log", base=2)
    ax.legend(fontsize=7)
    return fig


def _proven(record: dict) -> bool:
    """The bound holds and is below ``PROVEN_BELOW``: the regime the construction is claimed exact in."""
    return record["bound_holds"] and record["bound"] is not None and record["bound"] <= PROVEN_BELOW


def calibration(records: Sequence[dict]):
    fig, ax = _figure(5.2, 5.0)
    groups = {
        "clean": [r for r in records if _proven(r) and not r["realized"]["ambiguous"]],
        "ambiguous": [r for r in records if _proven(r) and r["realized"]["ambiguous"]],
        "soft": [r for r in records if not _proven(r)],
    }
    points = {k: [p for r in rs for p in r["calibration"]["points"]] for k, rs in groups.items()}
    if not any(points.values()):
        raise InputFileError("SWEEP: no calibration points (every prompt was noise or had no examples)")
    ax.plot([0, 1], [0, 1], "-", color="0.6", lw=1, label="perfect calibration")
    style = {"soft": ("+", "0.5", f"bound > {PROVEN_BELOW:g} or none (low sharpness)"),
             "ambiguous": ("x", "tab:red", "with ambiguous examples (votes split)"),
             "clean": ("o", "tab:blue", "no ambiguous examples")}
    for key, (marker, color, label) in style.items():
        if points[key]:
            ax.plot([p[0] for p in points[key]], [p[2] for p in points[key]], marker, color=color, ms=4, alpha=0.6,
                    label=f"{label}: {len(points[key])} answers")
    kls = [r["calibration"]["kl_example_shares_max"] for r in groups["clean"]
           if r["calibration"]["kl_example_shares_max"] is not None]
    worst = f"\nno ambiguous examples, bound ≤ {PROVEN_BELOW:g}: max KL = {max(kls):.1e} nats" if kls else ""
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), aspect="equal", xlabel="answer's share of the task examples",
           ylabel="model probability on the answer", title=f"Calibration at the query{worst}")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="upper left")
    return fig


FIGURES: dict[str, Callable] = {
    "error_vs_sharpness": error_vs_sharpness,
    "error_vs_length": error_vs_length,
    "d_model_vs_length": d_model_vs_length,
    "calibration": calibration,
}


def figure_files(only: Sequence[str] | None = None, formats: Sequence[str] = ("png", "svg")) -> list[str]:
    """The file names ``save_all`` may write (``InputFileError`` for an unknown figure name)."""
    names = list(only) if only else list(FIGURES)
    unknown = set(names) - set(FIGURES)
    if unknown:
        raise InputFileError(f"--only: unknown figure(s) {sorted(unknown)}; choose from {sorted(FIGURES)}")
    return [f"{name}.{fmt}" for name in names for fmt in formats]


def save_all(records: Sequence[dict], directory: str, formats: Sequence[str] = ("png", "svg"),
             only: Sequence[str] | None = None, force: bool = True, inputs: Sequence[str] = ()) -> list[str]:
    """Draw the figures (all, or ``only`` these) into ``directory``; returns the paths written.

    A figure the records cannot support (e.g. a single sharpness) is skipped only if it
    was not asked for by name; asked for by name, it raises ``InputFileError``. Each file
    is written atomically; with ``force=False`` existing files are refused (before any
    drawing), and ``inputs`` are never overwritten.
    """
    names = list(only) if only else list(FIGURES)
    check_outputs(directory, figure_files(only, formats), force, inputs, what="--output")
    make_directory(directory, what="--output")
    written = []
    for name in names:
        try:
            fig = FIGURES[name](records)
        except (InputFileError, ValueError) as e:
            if only:
                raise InputFileError(str(e)) from None
            continue
        for fmt in formats:
            path = os.path.join(directory, f"{name}.{fmt}")
            metadata = {"Date": None} if fmt == "svg" else {"Software": None} if fmt == "png" else None
            with atomic_write(path, force=force, inputs=inputs) as tmp:
                fig.savefig(tmp, format=fmt, metadata=metadata)
            written.append(path)
    return written
