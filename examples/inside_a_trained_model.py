# %% [markdown]
# # Example 10 — inside a trained model, next to the constructed one
#
# The constructed model says exactly where the task mixture lives (`mix[k]` after layer 5)
# and how it gets there. A trained transformer says nothing; here we look, with the same
# tools on both models (`superpose.verify.patching`: one hookable forward pass, sites
# `(layer, sublayer, head, position)`, readouts, activation patching):
#
# 1. **Probes**: per layer, a ridge probe from the residual at the query's ARROW to the
#    task shares p_k of the prompt; held-out R². Then move the residual along the best
#    probe's direction and watch the probability on each task's answer.
# 2. **Task vectors**: mean residual over single-task prompts of task k minus a baseline,
#    added in convex combinations to a neutral query (zero-shot, or after examples split
#    evenly among the tasks); distance to a mixed prompt with the same proportions.
# 3. **Circuits**: which trained heads attend where the construction's layers 2 (the
#    example's slots read by a task), 5 (earlier answers and BOS: the tally) and 6 (the
#    query's slots) attend; direct logit attribution of every head and MLP.
#
# The trained model is a checkpoint (`CHECKPOINT`, or `main(checkpoint=...)`); the task set,
# number of examples and everything else come from its config. The constructed model is
# `superpose.build` on the same task set.
#
# Run: `python examples/inside_a_trained_model.py [--out DIR] [--small]` or `superpose examples inside`
# (figures into `--out`).

# %%
"""Example 10 -- inside a trained model: probes, task vectors and circuits next to the construction.

The prose is in the markdown cells (``# %% [markdown]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import superpose
from superpose import build
from superpose.examples.common import DEFAULT_OUT, plt, run_as_script, save_figure
from superpose.train import inside
from superpose.train.hooked import from_checkpoint
from superpose.train.trainer import load_checkpoint
from superpose.verify.patching import from_constructed, run_with_patches

#: The trained checkpoint this example (and tests/test_inside_example.py) reads: the one constant to re-point.
CHECKPOINT = Path(superpose.__file__).resolve().parents[1] / "train" / "results" / "generation"


@dataclass
class InsideResult:
    checkpoint: str
    task_names: list[str]
    n_examples: int
    probe_r2: dict[str, list[float]]        # model -> held-out R² per layer (0: embedding)
    steering: dict[str, dict]               # model -> train.inside.steer at its best probe layer
    task_vectors: dict[str, dict]           # "model/destination" -> train.inside.task_vectors
    heads: list[dict]                       # train.inside.matching_heads
    dla: dict[str, dict]                    # model -> train.inside.direct_logit_attribution
    figures: list[Path] = field(default_factory=list)


# %% [markdown]
# ## The example: `main`

# %%
def main(out_dir: str | Path = DEFAULT_OUT, small: bool = False, checkpoint: str | Path = CHECKPOINT) -> InsideResult:
    """Probes, task vectors and circuits of a trained checkpoint next to the constructed model."""
    run = load_checkpoint(str(checkpoint))
    tasks = run.config.tasks
    n = run.config.n_examples - 1       # evaluation prompts: n_examples - 1 examples and a query (see TrainConfig)
    models = {"trained": from_checkpoint(run), "constructed": from_constructed(build(tasks, max_examples=n))}
    names = [t.name for t in tasks.tasks]
    n_probe, n_steer, n_queries = (96, 16, 2) if small else (480, 64, 12)

    print("Example 10: inside a trained model\n")
    print(f"Checkpoint {Path(checkpoint).name} (step {run.step}): {run.config.n_layers} layers, {run.config.n_heads} "
          f"heads, d_model {run.config.d_model}; tasks {names}; prompts of {n} examples and a query.")
    print(f"Constructed model for the same tasks: {models['constructed'].n_layers} layers, "
          f"d_model {models['constructed'].d_model}.\n")

    # 1. probes for the task shares, and steering along the best one
    prompts = inside.mixture_prompts(tasks, n, n_probe, seed=0)
    subset = inside.PromptSet(prompts.tokens[:n_steer], prompts.shares[:n_steer], prompts.answers[:n_steer], n)
    probe_r2, steering, best_layer = {}, {}, {}
    print(f"1. Ridge probes residual -> task shares at the query's ARROW ({n_probe} mixed prompts, 60/20/20 split), "
          "held-out R² per layer (0 = embedding):")
    for name, weights in models.items():
        _, residuals = inside.run_batched(weights, prompts.tokens, layers=True)
        probes = inside.probe_layers(residuals, prompts.shares)
        probe_r2[name] = [p.r2 for p in probes]
        best_layer[name] = max(range(1, len(probes)), key=lambda layer: probes[layer].r2)
        print(f"   {name:12s} " + "  ".join(f"L{layer} {r2:+.3f}" for layer, r2 in enumerate(probe_r2[name])))
        steering[name] = inside.steer(weights, subset, best_layer[name], probes[best_layer[name]],
                                      task_ids=range(min(tasks.K, 3)))
    print("   Steering at the best layer (the first three tasks): move the residual so that the probe's p_k rises by "
          "delta; "
          "slope dP(answer of k)/d delta, along the probe vs a random direction of the same length:")
    for name, s in steering.items():
        print(f"   {name:12s} layer {s['layer']}: " + ", ".join(
            f"{names[k]} {a:+.3f} (random {r:+.3f})" for k, a, r in
            zip(s["tasks"], s["slope_along_probe"], s["slope_random_direction"])))

    # 2. task vectors
    vectors = {}
    print(f"\n2. Task vectors patched into a neutral query, total variation to a mixed prompt with the same "
          f"proportions (pairs of tasks, weights c/{n}, {n_queries} queries each), per layer:")
    for name, weights in models.items():
        for destination in ("zero-shot", "balanced"):
            tv = inside.task_vectors(weights, tasks, n, n_queries=n_queries, destination=destination)
            vectors[f"{name}/{destination}"] = tv
            print(f"   {name:12s} into {destination:9s}: unpatched {tv['unpatched_distance_to_mixed_prompt']:.3f}; "
                  "patched " + "  ".join(f"L{x['layer']} {x['distance_to_mixed_prompt']:.3f}" for x in tv["per_layer"]))

    # 3. circuits
    profiles = {name: inside.attention_profile(w, tasks, subset.tokens, n) for name, w in models.items()}
    heads = inside.matching_heads(profiles["trained"], profiles["constructed"])
    print("\n3. Attention mass where the construction's layers look (mean over prompts):")
    for h in heads:
        print(f"   construction layer {h['construction_layer']} head {h['construction_head']} ({h['destination']} -> "
              f"{h['keys']}): {h['construction_mass']:.3f};  best trained head L{h['trained_layer']}"
              f"H{h['trained_head']}: {h['trained_mass']:.3f}")
    dla = {name: inside.direct_logit_attribution(w, subset) for name, w in models.items()}
    d = dla["trained"]
    top = sorted([(float(v), f"L{l + 1}H{h}") for (l, h), v in np.ndenumerate(d["heads"])]
                 + [(float(v), f"L{l + 1} MLP") for l, v in enumerate(d["mlps"])], reverse=True)
    print("   Direct logit attribution onto the tasks' answers (share-weighted, minus other content tokens), trained "
          "model, largest first: " + ", ".join(f"{label} {v:+.2f}" for v, label in top[:5]))

    result = InsideResult(str(checkpoint), names, n, probe_r2, steering, vectors, heads, dla)
    result.figures = [
        save_figure(probe_figure(result), out_dir, "inside_probes.png"),
        save_figure(task_vector_figure(result, tasks), out_dir, "inside_task_vectors.png"),
        save_figure(circuit_figure(result, models, prompts.tokens[0], tasks), out_dir, "inside_circuits.png"),
    ]
    print("\nFigures: " + ", ".join(str(p) for p in result.figures))
    return result


# %% [markdown]
# ## The figures

# %%
MODEL_COLORS = {"trained": "tab:red", "constructed": "tab:blue"}


def probe_figure(result: InsideResult):
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, r2 in result.probe_r2.items():
        ax.plot(range(len(r2)), r2, "o-", color=MODEL_COLORS[name], label=f"{name} ({len(r2) - 1} layers)")
    ax.axhline(0, color="gray", lw=0.5)
    ax.set(xlabel="layer (0 = embedding)", ylabel="held-out R²", ylim=(-0.2, 1.05),
           title="Linear probe: residual at the query's ARROW -> task shares")
    ax.legend()
    return fig


def task_vector_figure(result: InsideResult, tasks):
    fig, (ax_d, ax_p) = plt.subplots(1, 2, figsize=(11, 3.8))
    for key, tv in result.task_vectors.items():
        name, destination = key.split("/")
        layers = [x["layer"] for x in tv["per_layer"]]
        ax_d.plot(layers, [x["distance_to_mixed_prompt"] for x in tv["per_layer"]], "o-" if destination == "balanced"
                  else "s--", color=MODEL_COLORS[name], label=f"{name}, into {destination}")
    ax_d.set(xlabel="layer patched (0 = embedding)", ylabel="total variation to the mixed prompt", ylim=(0, 1),
             title="Task vectors: patched neutral query vs mixed prompt")
    ax_d.legend(fontsize=8)
    for name, color in MODEL_COLORS.items():
        tv = result.task_vectors[f"{name}/balanced"]
        best = min(tv["per_layer"], key=lambda x: x["distance_to_mixed_prompt"])
        ax_p.plot(tv["weights"], best["p_answer_j"], "o-", color=color, label=f"{name}, patched at L{best['layer']}")
        ax_p.plot(tv["weights"], tv["prompted_p_answer_j"], ":", color=color, label=f"{name}, mixed prompt")
    ax_p.plot([0, 1], [0, 1], color="gray", lw=0.5)
    ax_p.set(xlabel="weight a_j of task j (share of its examples)", ylabel="P(answer of task j)", xlim=(0, 1),
             ylim=(0, 1), title="P(task j's answer), pairs (j, k); balanced query")
    ax_p.legend(fontsize=8)
    fig.tight_layout()
    return fig


def circuit_figure(result: InsideResult, models, tokens, tasks):
    """Row 1: the construction's layers 2, 5, 6 (the head reading what each reads); row 2: the best trained heads."""
    caches = {}
    for name, weights in models.items():
        caches[name] = {}
        run_with_patches(weights, tokens[None], cache=caches[name])
    labels = [tasks.name_of(int(t)) for t in tokens]
    fig, axes = plt.subplots(2, len(result.heads), figsize=(4.2 * len(result.heads), 8.4))
    for col, h in enumerate(result.heads):
        for row, (name, layer, head, mass) in enumerate(
                [("constructed", h["construction_layer"], h["construction_head"], h["construction_mass"]),
                 ("trained", h["trained_layer"], h["trained_head"], h["trained_mass"])]):
            ax = axes[row, col]
            ax.imshow(caches[name][(layer, "pattern")][0, head], cmap="Greys", vmin=0, vmax=1)
            ax.set_title(f"{name} L{layer} H{head}\n{h['destination']} -> {h['keys']}: {mass:.2f}", fontsize=9)
            ax.set_xticks(range(len(labels)), labels, fontsize=5, rotation=90)
            ax.set_yticks(range(len(labels)), labels, fontsize=5)
    fig.tight_layout()
    return fig


# %% [markdown]
# ## Run it

# %%
if __name__ == "__main__":
    result = run_as_script(main)
