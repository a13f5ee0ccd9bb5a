"""Inside a trained model, next to the constructed one: probes, task vectors, circuits.

Everything here takes ``HookedWeights`` (``superpose.verify.patching``: the trained model via
``train.hooked.from_checkpoint``, the constructed one via ``from_constructed``) and the task
set they answer, so both models are measured by the same code on the same prompts. Nothing
assumes a number of slots or tasks: prompts come from ``train.data.mixed_prompt`` on the
checkpoint's own task set. "Layer 0" is the embedding; layer ``l >= 1`` is the residual
stream after layer ``l``; every measurement is at the query's ARROW (the last token).

* ``probe_layers``: ridge probes (``verify.probes``) from the residual to the task shares p_k;
  ``steer``: move the residual along a probe's direction and measure P(answer of task k).
* ``task_vectors``: v_k(l) = mean residual over single-task prompts of task k minus the mean over
  the neutral queries (zero-shot, or after examples split evenly among the tasks); a neutral query
  patched with ``sum_k a_k v_k`` against a mixed prompt with shares ``a``.
* ``attention_profile`` / ``matching_heads`` / ``direct_logit_attribution``: where each head looks,
  in the position kinds the construction's layers 2, 5 and 6 attend to, and what each head and MLP
  writes directly onto the tasks' answers.

For answers of several tokens every readout is the *first* answer token at the query's ARROW
(tasks whose answers start alike, e.g. ``copy AB`` and ``copy AC``, share that token).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from superpose.setting import Prompt, TaskSet, tokenize
from superpose.verify.patching import HookedWeights, Site, probabilities, run_with_patches
from superpose.verify.probes import Probe, fit_probe

from .data import mixed_prompt

BATCH = 64   # prompts per forward pass (bounds the activation cache)


@dataclass
class PromptSet:
    tokens: np.ndarray     # [N, T] prompts of one length, ending at the query's ARROW
    shares: np.ndarray     # [N, K] the share of examples of each task (the analytic mixture)
    answers: np.ndarray    # [N, K] first answer token of each task at the query
    n_examples: int


def _first_answers(tasks: TaskSet, query) -> list[int]:
    return [int(tasks.answer_of(t, query)[0]) for t in tasks.tasks]


def mixture_prompts(tasks: TaskSet, n_examples: int, n_prompts: int, seed: int = 0,
                    counts: Sequence[Sequence[int]] | None = None) -> PromptSet:
    """``n_prompts`` mixed prompts of ``n_examples`` examples (shares drawn uniformly from the simplex,
    then counts from a multinomial), or one prompt per row of ``counts`` (examples per task)."""
    rng = np.random.default_rng(seed)
    K = tasks.K
    if counts is None:
        counts = [rng.multinomial(n_examples, rng.dirichlet(np.ones(K))) for _ in range(n_prompts)]
    tokens, shares, answers = [], [], []
    for row in counts:
        prompt, _ = mixed_prompt(tasks, list(range(K)), [int(c) for c in row], rng)
        tokens.append(tokenize(tasks, prompt))
        shares.append(np.asarray(row, dtype=np.float64) / max(n_examples, 1))
        answers.append(_first_answers(tasks, prompt.query))
    return PromptSet(np.array(tokens), np.array(shares), np.array(answers), n_examples)


def zero_shot_tokens(tasks: TaskSet, queries: np.ndarray) -> np.ndarray:
    """``BOS, query, ARROW`` for each query (no examples)."""
    return np.array([tokenize(tasks, Prompt([], [int(x) for x in q])) for q in queries])


def query_inputs(tasks: TaskSet, tokens: np.ndarray) -> np.ndarray:
    """The query's inputs: the ``slots`` tokens before the final ARROW."""
    return tokens[:, -1 - tasks.slots:-1]


def run_batched(weights: HookedWeights, tokens: np.ndarray, patches_for=None, layers: bool = False):
    """Output probabilities at the last token ``[N, vocab]`` and, with ``layers``, the residual there
    after each layer ``[L + 1, N, d_model]`` (0: the embedding). ``patches_for(rows)`` gives each batch's patches."""
    outs, resid = [], []
    for start in range(0, len(tokens), BATCH):
        rows = np.arange(start, min(start + BATCH, len(tokens)))
        cache: dict | None = {} if layers else None
        out = run_with_patches(weights, tokens[rows], patches_for(rows) if patches_for else None, cache=cache)
        outs.append(probabilities(weights, out[:, -1]))
        if layers:
            resid.append([cache[(1, "resid_pre")][:, -1]]
                         + [cache[(l, "resid_post")][:, -1] for l in range(1, weights.n_layers + 1)])
    probs = np.concatenate(outs)
    if not layers:
        return probs
    return probs, np.stack([np.concatenate([r[l] for r in resid]) for l in range(weights.n_layers + 1)])


def residual_site(layer: int) -> Site:
    """The site of "layer ``layer``" at the last token: the embedding (0) or the output of a layer."""
    return Site(1, "resid_pre", position=-1) if layer == 0 else Site(layer, "resid_post", position=-1)


# ---------------------------------------------------------------------------------------------- probes
def probe_layers(residuals: np.ndarray, shares: np.ndarray, seed: int = 0) -> list[Probe]:
    """One ridge probe per layer from the residual at the query's ARROW to the task shares."""
    return [fit_probe(r, shares, seed=seed) for r in residuals]


def steer(weights: HookedWeights, prompts: PromptSet, layer: int, probe: Probe,
          deltas: Sequence[float] = (-0.25, 0.0, 0.25), task_ids: Sequence[int] | None = None,
          seed: int = 0) -> dict:
    """Move the residual at ``layer`` along probe direction ``u_k = W_k / |W_k|^2`` (raising the probe's p_k by
    ``delta``) and measure the change of P(answer of task k); the same for a random direction of equal norm.

    Returns per task (``task_ids``, default all) the least-squares slope dP(answer_k)/d delta along ``u_k`` and
    along the random direction."""
    rng = np.random.default_rng(seed)
    K, rows = prompts.shares.shape[1], np.arange(len(prompts.tokens))
    site = residual_site(layer)
    unpatched = run_batched(weights, prompts.tokens)

    def mean_answer_probability(k: int, shift: np.ndarray | None) -> float:
        probs = unpatched if shift is None else run_batched(weights, prompts.tokens,
                                                            lambda _rows: {site: lambda h: h + shift})
        return float(probs[rows, prompts.answers[:, k]].mean())

    along, random = [], []
    for k in (range(K) if task_ids is None else task_ids):
        u = probe.W[:, k] / (probe.W[:, k] @ probe.W[:, k])
        r = rng.normal(size=u.shape)
        r *= np.linalg.norm(u) / np.linalg.norm(r)
        for direction, slopes in ((u, along), (r, random)):
            means = [mean_answer_probability(k, direction * delta if delta else None) for delta in deltas]
            slopes.append(float(np.polyfit(deltas, means, 1)[0]))
    return {"layer": layer, "deltas": list(deltas), "tasks": list(range(K) if task_ids is None else task_ids),
            "slope_along_probe": along, "slope_random_direction": random}


# ---------------------------------------------------------------------------------------- task vectors
def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return 0.5 * np.abs(p - q).sum(-1)


def distinguishable_pairs(tasks: TaskSet, limit: int = 3, n_queries: int = 64, seed: int = 0) -> list[tuple[int, int]]:
    """Up to ``limit`` pairs of tasks (in order) whose first answer tokens differ on every one of ``n_queries``
    random queries (pairs whose answers start alike, as ``copy AB`` and ``copy AC``, cannot be told apart at the
    ARROW); all pairs in order if fewer qualify."""
    rng = np.random.default_rng(seed)
    queries = [rng.permutation(tasks.vocab_size)[:tasks.slots].tolist() for _ in range(n_queries)]
    first = np.array([_first_answers(tasks, q) for q in queries])            # [n_queries, K]
    pairs = list(itertools.combinations(range(tasks.K), 2))
    apart = [p for p in pairs if (first[:, p[0]] != first[:, p[1]]).all()]
    return (apart or pairs)[:limit]


def balanced_counts(K: int, n_examples: int) -> list[int]:
    """``n_examples`` split among ``K`` tasks as evenly as possible."""
    return [n_examples // K + (k < n_examples % K) for k in range(K)]


def task_vectors(weights: HookedWeights, tasks: TaskSet, n_examples: int, n_queries: int = 16,
                 pairs: Sequence[tuple[int, int]] | None = None, destination: str = "zero-shot",
                 seed: int = 0) -> dict:
    """Task vectors at every layer, patched in convex combinations into a neutral query.

    ``v_k(l)`` = mean residual at the ARROW after layer ``l`` over ``n_queries`` single-task prompts of task k,
    minus the mean over the destination prompts. ``destination`` is the query patched: ``"zero-shot"``
    (``BOS, query, ARROW``) or ``"balanced"`` (the query after ``n_examples`` examples split evenly among
    all tasks: the same length as the prompts the vectors come from). For each pair ``(j, k)`` of tasks
    and weight ``a = c / n`` (``c = 0..n``) the destination gets ``a v_j + (1 - a) v_k`` added at layer
    ``l``; its distribution over the content tokens is compared (total variation) with that of a mixed
    prompt of ``c`` examples of j and ``n - c`` of k on the same query (pairs: ``distinguishable_pairs``).
    The distance is half the L1 distance: the total variation for a softmax readout; the constructed
    model's readout is linear, so a patched residual can give a vector off the simplex and a distance
    above 1."""
    if destination not in ("zero-shot", "balanced"):
        raise ValueError(f"destination: 'zero-shot' or 'balanced', got {destination!r}")
    K, d = tasks.K, tasks.vocab_size
    pairs = list(pairs) if pairs is not None else distinguishable_pairs(tasks)
    single = [mixture_prompts(tasks, n_examples, 0, seed=seed + 1 + k,
                              counts=[[n_examples * (j == k) for j in range(K)]] * n_queries) for k in range(K)]
    means = np.stack([run_batched(weights, s.tokens, layers=True)[1].mean(1) for s in single])   # [K, L+1, D]
    a = np.arange(n_examples + 1) / n_examples
    mixed_tokens, weight, combos, answer_j, answer_k = [], [], [], [], []
    for pair_index, (j, k) in enumerate(pairs):
        counts = [[c if t == j else (n_examples - c if t == k else 0) for t in range(K)]
                  for c in range(n_examples + 1) for _ in range(n_queries)]
        mixed = mixture_prompts(tasks, n_examples, 0, seed=seed + 100 + pair_index, counts=counts)
        mixed_tokens.append(mixed.tokens)
        weight += [row[j] / n_examples for row in counts]
        combos += [[row[t] / n_examples for t in range(K)] for row in counts]
        answer_j.append(mixed.answers[:, j])
        answer_k.append(mixed.answers[:, k])
    mixed_tokens, weight, combos = np.concatenate(mixed_tokens), np.array(weight), np.array(combos)
    answer_j, answer_k = np.concatenate(answer_j), np.concatenate(answer_k)
    if destination == "zero-shot":
        neutral = zero_shot_tokens(tasks, query_inputs(tasks, mixed_tokens))
    else:   # balanced examples, then each mixed prompt's own query
        balanced = mixture_prompts(tasks, n_examples, 0, seed=seed + 200,
                                   counts=[balanced_counts(K, n_examples)] * len(mixed_tokens)).tokens
        neutral = np.concatenate([balanced[:, :-1 - tasks.slots], mixed_tokens[:, -1 - tasks.slots:]], axis=1)
    prompted = run_batched(weights, mixed_tokens)[:, :d]
    unpatched, neutral_residuals = run_batched(weights, neutral, layers=True)
    unpatched = unpatched[:, :d]
    vectors = means - neutral_residuals.mean(1)                     # baseline: the mean over the destinations
    n = np.arange(len(mixed_tokens))
    per_layer = []
    for layer in range(weights.n_layers + 1):
        added = combos @ vectors[:, layer]
        patched = run_batched(weights, neutral,
                              lambda r, layer=layer: {residual_site(layer): lambda h, r=r: h + added[r]})[:, :d]
        per_layer.append({
            "layer": layer,
            "distance_to_mixed_prompt": float(total_variation(patched, prompted).mean()),
            "p_answer_j": [float(patched[n, answer_j][weight == w].mean()) for w in a],
            "p_answer_k": [float(patched[n, answer_k][weight == w].mean()) for w in a],
        })
    return {
        "destination": destination, "pairs": [[int(j), int(k)] for j, k in pairs], "weights": a.tolist(),
        "n_queries": n_queries,
        "unpatched_distance_to_mixed_prompt": float(total_variation(unpatched, prompted).mean()),
        "prompted_p_answer_j": [float(prompted[n, answer_j][weight == w].mean()) for w in a],
        "prompted_p_answer_k": [float(prompted[n, answer_k][weight == w].mean()) for w in a],
        "per_layer": per_layer,
    }


# -------------------------------------------------------------------------------------------- circuits
#: What the construction's layers attend to (construct/layer2_check_examples.py, layer5_tally_mixture.py,
#: layer6_fetch_query_inputs.py): (layer, destination kind, key kind).
CONSTRUCTION_READS = ((2, "example answer", "own slots read"), (5, "query ARROW", "earlier answers and BOS"),
                      (6, "query ARROW", "query slots read"))


def position_masks(tasks: TaskSet, n_examples: int) -> dict[str, np.ndarray]:
    """Boolean key masks ``[T]`` (query ARROW as destination) and per-example masks for the position kinds."""
    s, n, A = tasks.slots, tasks.example_length, tasks.answer_length
    T = tasks.prompt_length(n_examples)
    read = sorted(set(tasks.slots_read))
    answers, query_read = np.zeros(T, bool), np.zeros(T, bool)
    for i in range(n_examples):
        answers[1 + i * n + s + 1: 1 + i * n + s + 1 + A] = True
    query_read[[1 + n_examples * n + a for a in read]] = True
    bos = np.zeros(T, bool)
    bos[0] = True
    own = np.zeros((n_examples, T), bool)     # row i: the slots read in example i (keys for its first answer token)
    for i in range(n_examples):
        own[i, [1 + i * n + a for a in read]] = True
    return {"answers": answers, "bos": bos, "query slots read": query_read, "own slots read": own,
            "example answer positions": np.array([1 + i * n + s + 1 for i in range(n_examples)])}


def attention_profile(weights: HookedWeights, tasks: TaskSet, tokens: np.ndarray, n_examples: int) -> dict:
    """Per (layer, head) the mean attention mass on each key kind of ``CONSTRUCTION_READS`` from its destination."""
    masks = position_masks(tasks, n_examples)
    mass = {name: np.zeros((weights.n_layers, weights.n_heads)) for _, _, name in CONSTRUCTION_READS}
    for start in range(0, len(tokens), BATCH):
        cache: dict = {}
        batch = tokens[start:start + BATCH]
        run_with_patches(weights, batch, cache=cache)
        for layer in range(1, weights.n_layers + 1):
            pattern = cache[(layer, "pattern")]                    # [B, H, T, T]
            last = pattern[:, :, -1]
            mass["earlier answers and BOS"][layer - 1] += (last[..., masks["answers"] | masks["bos"]].sum(-1)
                                                           .sum(0))
            mass["query slots read"][layer - 1] += last[..., masks["query slots read"]].sum(-1).sum(0)
            at_answers = pattern[:, :, masks["example answer positions"]]   # [B, H, m, T]
            mass["own slots read"][layer - 1] += (at_answers * masks["own slots read"]).sum(-1).mean(-1).sum(0)
    return {name: m / len(tokens) for name, m in mass.items()}


def matching_heads(trained: dict, constructed: dict) -> list[dict]:
    """For each of the construction's layers 2, 5, 6: its own largest mass on what it reads and the trained head
    with the largest mass on the same key kind (profiles from ``attention_profile``)."""
    out = []
    for layer, destination, key in CONSTRUCTION_READS:
        t = trained[key]
        best = np.unravel_index(int(np.argmax(t)), t.shape)
        c = constructed[key]
        out.append({"construction_layer": layer, "destination": destination, "keys": key,
                    "construction_head": int(np.argmax(c[layer - 1])), "construction_mass": float(c[layer - 1].max()),
                    "trained_layer": int(best[0]) + 1, "trained_head": int(best[1]), "trained_mass": float(t[best])})
    return out


def direct_logit_attribution(weights: HookedWeights, prompts: PromptSet) -> dict:
    """What each head and MLP writes directly onto the task answers at the query's ARROW.

    A component's output ``c`` is read out as the model reads the final residual: through the final
    LayerNorm with its scale frozen at the full residual's (trained model), or linearly (construction).
    The score is ``sum_k p_k c_out[answer_k] - mean over the content tokens that are no task's answer``,
    averaged over prompts (logits for the trained model, probability for the construction)."""
    d = weights.tasks.vocab_size
    heads = np.zeros((weights.n_layers, weights.n_heads))
    mlps = np.zeros(weights.n_layers)
    for start in range(0, len(prompts.tokens), BATCH):
        cache: dict = {}
        rows = slice(start, start + BATCH)
        run_with_patches(weights, prompts.tokens[rows], cache=cache)
        final = cache["final"][:, -1]

        def readout(c):                                   # [B, ..., D] -> [B, ..., d]
            if weights.ln_final is None:
                return (c @ weights.W_U)[..., :d]
            sigma = np.sqrt(final.var(-1) + weights.ln_eps).reshape((-1,) + (1,) * (c.ndim - 1))
            centred = c - c.mean(-1, keepdims=True)
            return (centred / sigma * weights.ln_final[0] @ weights.W_U)[..., :d]

        shares, answers = prompts.shares[rows], prompts.answers[rows]
        others = np.ones((len(answers), d), bool)
        others[np.arange(len(answers))[:, None], answers] = False

        def score(logits):                                 # [B, d] -> [B]
            on_answers = (shares * np.take_along_axis(logits, answers, -1)).sum(-1)
            return on_answers - (logits * others).sum(-1) / others.sum(-1)

        for layer in range(1, weights.n_layers + 1):
            per_head = readout(cache[(layer, "head_out")][:, :, -1])           # [B, H, d]
            for h in range(weights.n_heads):
                heads[layer - 1, h] += score(per_head[:, h]).sum()
            mlps[layer - 1] += score(readout(cache[(layer, "mlp")][:, -1])).sum()
    n = len(prompts.tokens)
    return {"heads": heads / n, "mlps": mlps / n}
