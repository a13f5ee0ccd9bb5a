# %% [markdown]
# # Example 5 — breaking it on purpose: lower the attention sharpness until it fails
#
# Every attention score of the construction is multiplied by the sharpness beta. The
# proof needs attention to be nearly hard: a look-back head out-scores every wrong
# position by at least 2 beta, the tally head (layer 5) prefers a valid answer to BOS
# by only beta. Here we lower beta step by step and measure, on the digit prompt:
#
# * the output error against the analytic prediction, next to the error bound the
#   model reports (`model.error_bound`; it is `inf` once beta is too low for the
#   proof's snap hypothesis H);
# * for every attention layer, the attention mass its heads put off their target;
# * for every *snapped* block (is_answer, match, count_is, valid, vote, and
#   the query's slot block after its in-place snap), its
#   deviation from the exact value it should hold under hard attention.
#
# What a student should see: the tally head leaks the most at every beta, and it is the
# one soft stage that no snap cleans up, so its leak *is* the output error. The
# look-back heads leak too, but the snaps absorb it exactly -- far below the beta at
# which the bound gives up -- until their leak reaches about 1/4; then the first snap
# breaks and the error jumps.
#
# Run: `python examples/breaking_it.py` (figure in `figures/`, or `--out DIR`),
# or open this file as a notebook (jupytext); `make notebooks` writes an executed copy
# into `build/notebooks/`.

# %%
"""Example 5 -- breaking it on purpose: lower the attention sharpness until it fails.

The prose is in the markdown cells (``# %% [markdown]``): open this file as a notebook
(jupytext) or read it here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from superpose import TaskSet, build, prediction_positions
from superpose.demo import digit_tasks, mixed_prompt
from superpose.examples.common import DEFAULT_OUT, plt, residual_after, run_as_script, save_figure, trace
from superpose.construct.build import LAYER_SPECS
from superpose.construct.spec import exact_values
from superpose.verify.analytic import consistent_tasks, predict, task_mixture

SHARPNESS = (50, 30, 20, 15, 12, 10, 8, 6, 5, 4, 3, 2.5, 2, 1.5, 1.25, 1, 0.75, 0.5)
SMALL_SHARPNESS = (50, 12, 5, 2, 1.25, 1, 0.5)
EXACT = 1e-12  # a snapped value this close to its exact value counts as exact (float64 rounding)
# the exact blocks: which layer writes each one, and whose attention leak it has to absorb
SNAPPED = {"is_answer": 1, "match": 3, "count_is": 3, "valid": 3, "vote": 4, "slot": 6}
ABSORBS_LEAK_OF = {"is_answer": 1, "match": 2, "count_is": 2, "valid": 2, "vote": 2, "slot": 6}


# %% [markdown]
# ## The pieces

# %%
@dataclass
class SharpnessRun:
    sharpness: float
    error: float                         # max |output - analytic| over all prediction positions
    bound: float                         # model.error_bound(...).total (inf when H fails)
    bound_holds: bool
    mix_error: float                     # max |mix - exact task mixture| at prediction positions
    off_target: dict[int, float]         # layer -> max attention mass its heads put off target
    tally_off_target_at_query: float
    snap_deviation: dict[str, float]     # snapped block -> max |value - exact value|

    @property
    def broken(self) -> list[str]:
        return [name for name, dev in self.snap_deviation.items() if dev > EXACT]


@dataclass
class BreakingResult:
    runs: list[SharpnessRun]
    break_sharpness: float               # snaps are exact above this beta, broken just below it
    first_broken: list[str]              # the snapped blocks that break first
    off_target_at_break: dict[int, float]
    prompt_length: int
    n_valid_examples: int
    figures: list[Path] = field(default_factory=list)


def exact_snapped_blocks(tasks: TaskSet, tokens, T: int) -> dict[str, np.ndarray]:
    """What each snapped block holds under hard attention ([T, ...] float arrays; NaN where unspecified).

    Read from the layer specs (``LayerSpec.exact``), which state every layer's exact output.
    """
    per_layer = exact_values(LAYER_SPECS, tasks, tokens)
    exact = {}
    for name, layer in SNAPPED.items():
        values = per_layer[layer - 1][name]
        shape = np.shape(next(v for v in values if v is not None))
        exact[name] = np.array([np.full(shape, np.nan) if v is None else np.asarray(v, dtype=float)
                                for v in values])
    return exact


def look_back_offsets(tasks: TaskSet) -> dict[tuple[int, int], int]:
    """(layer, head) -> how far back the head should look: layer 1 one token; layers 2 and 6 to slot a."""
    s = tasks.slots
    offsets = {(1, 0): 1}
    for i, a in enumerate(tasks.slots_read):
        offsets[(2, i)] = s + 1 - a   # from an answer back to the example's slot a
        offsets[(6, i)] = s - a       # from an ARROW back to the current input's slot a
    return offsets


def measure(tasks, prompt, sharpness: float) -> SharpnessRun:
    model = build(tasks, max_examples=prompt.n_examples, sharpness=sharpness)
    tokens, readout, cache = trace(model, prompt)
    T, lay = len(tokens), model.layout
    positions = prediction_positions(tasks, prompt.n_examples)
    error = float(np.abs(readout[positions] - predict(tasks, prompt)).max())
    bound = model.error_bound("float64", prompt_length=T)
    mixture = np.array([[float(p) for p in task_mixture(tasks, prompt.examples[:i])]
                        for i in range(prompt.n_examples + 1)])
    mix_error = float(np.abs(lay.view(residual_after(cache, 5)[positions], "mix") - mixture).max())

    off_target: dict[int, float] = {}
    for (layer, head), offset in look_back_offsets(tasks).items():
        pattern = cache[f"layer_{layer}"]["pattern"][0, head]
        # sum the off-target weights (1 - on-target weight would round tiny leaks to 0)
        leak = max(np.delete(pattern[t, :t + 1], t - offset).sum() for t in range(offset, T))
        off_target[layer] = max(off_target.get(layer, 0.0), float(leak))
    # the tally's targets: the valid answers so far (BOS while there are none)
    exact = exact_snapped_blocks(tasks, tokens, T)
    valid = np.flatnonzero(exact["valid"])
    tally = cache["layer_5"]["pattern"][0, 0]
    tally_leak = [np.delete(tally[t, :t + 1], [u for u in valid if u <= t] or [0]).sum() for t in range(T)]
    off_target[5] = float(max(tally_leak))
    off_target = dict(sorted(off_target.items()))

    deviation = {}
    for name, layer in SNAPPED.items():
        value = lay.view(residual_after(cache, layer), name)
        rows = positions if name == "slot" else slice(None)  # the query's slots are used at ARROWs only
        deviation[name] = float(np.abs(value[rows] - exact[name][rows]).max())
    return SharpnessRun(sharpness, error, bound.total, bound.holds, mix_error, off_target,
                        float(tally_leak[-1]), deviation)


def find_break(tasks, prompt, exact_at: float, broken_at: float, steps: int) -> tuple[float, SharpnessRun]:
    """Bisect between a beta where every snap is exact and one where one is not; returns
    (the lowest beta found with exact snaps, the run just below it)."""
    below = measure(tasks, prompt, broken_at)
    for _ in range(steps):
        middle = (exact_at + broken_at) / 2
        run = measure(tasks, prompt, middle)
        if run.broken:
            broken_at, below = middle, run
        else:
            exact_at = middle
    return exact_at, below


# %% [markdown]
# ## The example: `main`

# %%
def main(out_dir: str | Path = DEFAULT_OUT, small: bool = False) -> BreakingResult:
    """Breaking it on purpose: error vs bound as the sharpness drops, and which layer fails first."""
    tasks, prompt = digit_tasks(), mixed_prompt(digit_tasks())
    runs = [measure(tasks, prompt, beta) for beta in (SMALL_SHARPNESS if small else SHARPNESS)]
    T = tasks.prompt_length(prompt.n_examples)
    n_valid = sum(bool(consistent_tasks(tasks, e)) for e in prompt.examples)

    print("Example 5: breaking it on purpose\n")
    print(f"Digit prompt: {prompt.n_examples} examples, {T} tokens, float64. Lowering the sharpness beta:\n")
    print(f"  {'beta':>5}  {'bound':>8}  {'error':>8}  {'mix err':>8}   attention mass off target"
          f" (layer 1 / 2 / 5 tally / 6)   snapped blocks broken")
    for r in runs:
        bound = f"{r.bound:8.1e}" if r.bound_holds else "     inf"
        leaks = " / ".join(f"{r.off_target[layer]:.1e}" for layer in (1, 2, 5, 6))
        print(f"  {r.sharpness:5g}  {bound}  {r.error:8.1e}  {r.mix_error:8.1e}   {leaks:<41}"
              f"  {', '.join(r.broken) or '-'}")

    finite = [r for r in runs if r.bound_holds]
    print(f"\n1. Wherever the bound is finite the error is below it (largest ratio error/bound: "
          f"{max(r.error / r.bound for r in finite):.2g}). From beta = "
          f"{max(r.sharpness for r in runs if not r.bound_holds):g} down the bound is inf: "
          f"the proof can no longer show that the snaps work.")
    tally_leaks_most = sum(max(r.off_target, key=r.off_target.get) == 5 for r in runs)
    snaps_hold = [r for r in runs if not r.broken]
    print(f"2. The tally head (layer 5) puts the most attention off target at {tally_leaks_most} of {len(runs)} "
          f"sharpness values: its score gap is beta, the look-back heads' is 2 beta. It is also the last soft "
          f"stage (nothing snaps mix), so its leak is what reaches the output: wherever the snaps hold, "
          f"|error - mix error| <= {max(abs(r.error - r.mix_error) for r in snaps_hold):.1e}.")

    last_exact = min((r for r in runs if not r.broken), key=lambda r: r.sharpness)
    first_broken = max((r for r in runs if r.broken), key=lambda r: r.sharpness)
    break_beta, just_below = find_break(tasks, prompt, last_exact.sharpness, first_broken.sharpness,
                                       steps=4 if small else 8)
    culprits = sorted({ABSORBS_LEAK_OF[name] for name in just_below.broken})
    leakiest = max((1, 2, 6), key=just_below.off_target.get)
    print(f"3. The snaps stay exact far below that: down to beta = {break_beta:.3g}. Just below it the first "
          f"exact blocks break: " + ", ".join(f"{name} (layer {SNAPPED[name]})" for name in just_below.broken)
          + f", which rest on the look-back heads of layer {', '.join(map(str, culprits))}. Off target there: "
          + ", ".join(f"layer {layer} {just_below.off_target[layer]:.3f}" for layer in (1, 2, 6))
          + f"; layer {leakiest}'s heads leak the most (a snap absorbs errors up to 1/4).")

    figures = [save_figure(_figure(runs, break_beta), out_dir, "breaking_it.png")]
    print(f"\nFigure: {figures[0]}")
    return BreakingResult(runs, break_beta, just_below.broken, just_below.off_target, T, n_valid, figures)


# %% [markdown]
# ## The figure

# %%
def _figure(runs, break_beta):
    beta = np.array([r.sharpness for r in runs])
    fig, (ax_err, ax_leak, ax_snap) = plt.subplots(1, 3, figsize=(16, 4.3))
    for ax in (ax_err, ax_leak, ax_snap):
        ax.set_xscale("log")
        ax.invert_xaxis()  # sharpness drops from left to right
        ax.set_xlabel("sharpness beta")
        ticks = [t for t in (50, 20, 10, 5, 2, 1, 0.5) if beta.min() <= t <= beta.max()]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.axvline(break_beta, color="gray", ls=":", lw=1)

    holds = np.array([r.bound_holds for r in runs])
    ax_err.plot(beta, [max(r.error, 1e-17) for r in runs], "o-", color="tab:red", label="measured error (float64)")
    ax_err.plot(beta[holds], [r.bound for r in runs if r.bound_holds], "s--", color="black", label="reported bound")
    no_bound = beta[~holds]
    if len(no_bound):
        ax_err.axvspan(no_bound.max(), beta.min() * 0.9, color="gray", alpha=0.15, label="bound = inf (H fails)")
    ax_err.set(yscale="log", ylabel="max |model - analytic|", title="Error and the reported bound")
    ax_err.legend(fontsize=8, loc="upper left")

    styles = {1: ("layer 1 (look back 1)", "o-"), 2: ("layer 2 (look back 2)", "s--"),
              5: ("layer 5 tally", "D-"), 6: ("layer 6 (look back 1)", "^:")}
    for layer, (name, style) in styles.items():  # layers 1 and 6 coincide: same offset, same positions
        ax_leak.plot(beta, [max(r.off_target[layer], 1e-50) for r in runs], style, label=name, ms=4)
    ax_leak.axhline(0.25, color="black", lw=0.8, ls="--", label="1/4 (what a snap absorbs)")
    ax_leak.set(yscale="log", ylim=(1e-45, 2), ylabel="attention mass off target (max over positions)",
                title="Which head leaks")
    ax_leak.legend(fontsize=8, loc="lower right")

    for name, layer in SNAPPED.items():
        ax_snap.plot(beta, [r.snap_deviation[name] for r in runs], "o-", label=f"{name} (layer {layer})", ms=4)
    ax_snap.set(ylabel="max |snapped value - exact value|", ylim=(-0.03, 1.03),
                title=f"Snapped blocks: exact down to beta = {break_beta:.3g}")
    ax_snap.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


# %% [markdown]
# ## Run it
#
# As a script (`python examples/breaking_it.py [--out DIR] [--small]`, or
# `superpose examples breaking`) this reads the command line; in a notebook it runs `main`
# at full size, saves the figures into `figures/` beside the notebook and shows them
# below. `result` holds the numbers `main` returns.

# %%
if __name__ == "__main__":
    result = run_as_script(main)
