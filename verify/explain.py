"""The explain page: one prompt flowing through the seven layers, as one self-contained HTML file.

``superpose explain TASKS.json PROMPT.json -o trace.html`` runs the prompt once with
activation capture (``superpose.model.run_tokens(..., capture=True)``) and writes a page
that a teacher can open from disk (no network: every script, style and number is inline):

* the prompt as a row of tokens (click one to follow it through the layers);
* the task shares computed from the examples (which tasks each example fits, its votes);
* one section per layer, titled and described from its ``LayerSpec``: every used head's
  attention pattern as a heatmap (hover for query, key and weight), and for each
  sublayer the named residual entries it writes (``match_raw[copy]``, ``mix[0]``,
  ``out[7]``, ...) as an entries x positions table in which only non-zero changes are
  emphasised; a line comparing the written blocks with the exact values the spec states;
* the model's output at every prediction position next to the analytic prediction,
  with the error and the bound. These numbers are those of ``superpose run --json``
  (the same function computes them), so the page and the command line agree exactly.

Prompts of up to ``READABLE_TOKENS`` tokens are shown whole. Longer prompts are
summarised, and the page says so: BOS, the last examples and the query are shown; the
examples in between are folded into one "..." column (the attention they receive is
summed there), while the task shares, the error and the bound still count every example.

``page_data`` computes everything the page shows (plain JSON data); ``render`` turns it
into HTML with the inline script and style in ``explain_assets/``; ``write_page`` writes
the file atomically (``superpose.files``).

>>> from superpose import Example, Prompt, Task, TaskSet, build
>>> tasks = TaskSet(vocab_size=3, slots=1, tasks=[Task("id", 0, [0, 1, 2]), Task("inc", 0, [1, 2, 0])])
>>> data = page_data(build(tasks, max_examples=2), Prompt([Example([0], 1)], query=[2]), "float64")
>>> [layer["title"] for layer in data["layers"]][:2], data["shares"]["shares_text"]
(['find answers', 'check examples'], ['0', '1'])
>>> data["outputs"]["query"]["model"]            # "inc" fits the one example: 2 -> 0
[1.0, 0.0, 0.0]
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
from fractions import Fraction
from importlib import resources
from typing import Any, Sequence

import numpy as np

from superpose.construct.build import LAYER_SPECS, SuperposeModel
from superpose.construct.spec import exact_values, formula_text
from superpose.setting import Prompt, tokenize, validate_prompt
from superpose.verify.compare import run_report

#: Prompts up to this many tokens are shown whole; longer ones are summarised (and the page says so).
READABLE_TOKENS = 60

#: A change smaller than this (in absolute value) is shown as "·", not emphasised: soft attention
#: leaks about e^(-2 beta) and rounding adds a few ulp; neither is a write the construction makes.
TOLERANCE = {"float64": 1e-9, "float32": 1e-5}

#: Attention weights on the page keep this many significant digits (the hover shows them).
WEIGHT_DIGITS = 4


# --- formatting ------------------------------------------------------------------------------

def number_text(x: float | None, max_denominator: int = 60) -> str:
    """A short text for a residual value: a small fraction when it is one (to 1e-9), else 3 digits.

    >>> number_text(0.5), number_text(-1/3), number_text(0.123456), number_text(1e-40), number_text(None)
    ('1/2', '-1/3', '0.123', '1e-40', '—')
    """
    if x is None or not math.isfinite(x):
        return "—" if x is None else str(x)
    f = Fraction(float(x)).limit_denominator(max_denominator)
    if abs(float(f) - x) < 1e-9 and (f != 0 or x == 0):
        return str(f)
    return f"{x:.3g}"


def _round(x: float, digits: int = 6) -> float | None:
    """``x`` to ``digits`` significant digits (keeps the page small), or None if not finite."""
    x = float(x)
    return float(f"{x:.{digits}g}") if math.isfinite(x) else None


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def readable_label(model: SuperposeModel, label: str) -> str:
    """A residual label with task and token names: ``vote[1]`` -> ``vote[next digit]``, ``out[17]`` -> ``out[seven]``.

    >>> from superpose.demo import digit_tasks
    >>> from superpose import build
    >>> m = build(digit_tasks(), max_examples=1)
    >>> readable_label(m, "mix[1]"), readable_label(m, "slot[0,17]"), readable_label(m, "token[21]")
    ('mix[next digit]', 'slot[0,seven]', 'token[->]')
    """
    name, _, index = label.partition("[")
    if not index:
        return label
    tasks, parts = model.tasks, index.rstrip("]").split(",")
    by_task = {"match_raw", "match", "vote", "mix", "ok"}
    by_token = {"slot": 1, "cslot": 1, "back": 1, "out": 0, "token": 0}
    if name in by_task and parts[0].isdigit():
        parts[0] = tasks.tasks[int(parts[0])].name
    if name in by_token and len(parts) > by_token[name] and parts[by_token[name]].isdigit():
        parts[by_token[name]] = tasks.name_of(int(parts[by_token[name]]))
    return f"{name}[{','.join(parts)}]"


# --- which positions are shown ---------------------------------------------------------------

def token_roles(model: SuperposeModel, prompt: Prompt) -> list[dict]:
    """One entry per position: id, name, role (BOS, input, arrow, answer), example index, slot or answer token.

    For answers of several tokens, ``answer_token`` j counts from 0 (the token after the ARROW);
    the query's answer tokens are the ones generated so far (``query_prefix``).
    """
    tasks = model.tasks
    tokens = tokenize(tasks, prompt)
    n, s = tasks.example_length, tasks.slots
    roles = []
    for t, token in enumerate(tokens.tolist()):
        entry: dict[str, Any] = {"t": t, "id": token, "name": tasks.name_of(token)}
        if t == 0:
            entry["role"] = "bos"
        else:
            i, offset = divmod(t - 1, n)
            entry["example"] = i if i < prompt.n_examples else "query"
            if offset < s:
                entry["role"], entry["slot"] = "input", offset
            elif offset == s:
                entry["role"] = "arrow"
            else:
                entry["role"] = "answer"
                if tasks.answer_length > 1:
                    entry["answer_token"] = offset - s - 1
        roles.append(entry)
    return roles


def shown_positions(model: SuperposeModel, prompt: Prompt, limit: int = READABLE_TOKENS) -> list[int]:
    """All positions when the prompt has at most ``limit`` tokens; else BOS, the last examples and the query.

    >>> from superpose.demo import digit_tasks, mixed_prompt
    >>> from superpose import build
    >>> tasks = digit_tasks()
    >>> p = mixed_prompt(tasks, counts=(10, 10, 10))       # 31 x 3 = 93 tokens
    >>> shown = shown_positions(build(tasks, 30), p)
    >>> len(shown) <= READABLE_TOKENS, shown[:3], shown[-1]
    (True, [0, 34, 35], 92)
    """
    tasks = model.tasks
    T = tasks.prompt_length(prompt.n_examples, len(prompt.query_prefix))
    if T <= limit:
        return list(range(T))
    n, m = tasks.example_length, prompt.n_examples
    query = tasks.slots + 1 + len(prompt.query_prefix)
    last = max(0, (limit - 1 - query) // n)       # examples that fit beside BOS and the query
    start = 1 + (m - last) * n
    return [0, *range(start, T)]


# --- the page's data -------------------------------------------------------------------------

def _pattern_rows(pattern: np.ndarray, shown: list[int], hidden: range) -> list[list[float | None]]:
    """Rows ``shown`` of a ``[T, T]`` pattern, columns BOS, ("..." = the hidden keys summed,) the rest."""
    columns = [shown[0], *shown[1:]]
    rows = []
    for q in shown:
        row = [_round(pattern[q, k], WEIGHT_DIGITS) for k in columns]
        if len(hidden):
            row.insert(1, _round(pattern[q, hidden.start:hidden.stop].sum(), WEIGHT_DIGITS))
        rows.append(row)
    return rows


def _blocks_of(model: SuperposeModel, forms) -> list[str]:
    lay = model.layout
    names = {lay.block_of(d).name for f, _ in forms for d, c in f.items() if c != 0}
    return [name for name in lay.blocks if name in names]


def _entries(model: SuperposeModel, vector: np.ndarray, blocks: Sequence[str], tol: float) -> list[list]:
    """``[[readable label, value], ...]`` of the entries of ``vector`` in ``blocks`` above ``tol``."""
    out = []
    for name in blocks:
        block = model.layout[name]
        for label, value in zip(block.labels(), vector[block.slice]):
            if abs(value) > tol:
                out.append([readable_label(model, label), _round(value), number_text(float(value))])
    return out


def _sublayer(model: SuperposeModel, delta: np.ndarray, after: np.ndarray, shown: list[int], tol: float) -> dict:
    """The entries a sublayer changes (rows) at the shown positions (columns)."""
    changed = np.flatnonzero((np.abs(delta[shown]) > tol).any(axis=0))
    rows = []
    for dim in changed:
        label = model.layout.labels[dim]
        rows.append({
            "label": label,
            "name": readable_label(model, label),
            "block": model.layout.block_of(int(dim)).name,
            "delta": [_round(delta[t, dim]) for t in shown],
            "after": [_round(after[t, dim]) for t in shown],
            "text": [number_text(float(delta[t, dim])) if abs(delta[t, dim]) > tol else "" for t in shown],
        })
    return {"rows": rows}


def _exact_check(model: SuperposeModel, exact: dict, after: np.ndarray) -> dict:
    """Max |model - exact| over the blocks the layer writes, where its spec states a value."""
    worst, positions = 0.0, set()
    for name, per_position in exact.items():
        view = model.layout.view(after, name)
        for t, value in enumerate(per_position):
            if value is None:
                continue
            diff = np.abs(np.ravel(view[t]) - np.ravel(np.array(value, dtype=np.float64)))
            if diff.size:
                worst = max(worst, float(diff.max()) if np.isfinite(diff).all() else math.inf)
                positions.add(t)
    return {"blocks": list(exact), "max_abs_diff": _finite(worst), "positions": len(positions)}


def _shares(model: SuperposeModel, prompt: Prompt, shown_examples: set[int]) -> dict:
    from superpose.verify.analytic import consistent_tasks, task_mixture

    tasks = model.tasks
    votes = [Fraction(0)] * tasks.K
    consistent = 0
    listed = []
    for i, example in enumerate(prompt.examples):
        fits = consistent_tasks(tasks, example)
        if fits:
            consistent += 1
            for k in fits:
                votes[k] += Fraction(1, len(fits))
        if i in shown_examples:
            listed.append({"index": i, "inputs": [tasks.name_of(x) for x in example.inputs],
                           "answer": " ".join(tasks.name_of(y) for y in example.answer_tokens), "fits": fits,
                           "votes": [str(Fraction(1, len(fits))) if k in fits else "" for k in range(tasks.K)]})
    shares = task_mixture(tasks, prompt.examples)
    return {"examples": listed, "n_examples": prompt.n_examples, "consistent": consistent,
            "votes_text": [str(v) for v in votes], "shares_text": [str(p) for p in shares],
            "shares": [float(p) for p in shares], "prior": consistent == 0}


def page_data(model: SuperposeModel, prompt: Prompt, dtype: str = "float64", command: str | None = None,
              limit: int = READABLE_TOKENS) -> dict:
    """Everything the explain page shows, as JSON-ready data (one forward pass with capture)."""
    from superpose.model import run_tokens
    from superpose.setting import prediction_positions, prediction_sites

    tasks = model.tasks
    validate_prompt(tasks, prompt, model.max_examples)
    tol = TOLERANCE[dtype]
    tokens = tokenize(tasks, prompt)
    T = len(tokens)
    report = run_report(model, prompt, dtype)         # exactly what `superpose run --json` prints
    readout, cache = run_tokens(model, tokens[None, :], dtype=dtype, capture=True)
    shown = shown_positions(model, prompt, limit)
    hidden = range(1, shown[1]) if len(shown) > 1 and shown[1] > 1 else range(1, 1)
    roles = token_roles(model, prompt)
    exact = exact_values(LAYER_SPECS, tasks, tokens.tolist(), model.conditioned)

    def residual(i: int) -> np.ndarray:
        r = cache["resid_pre"] if i == 0 else cache[f"layer_{i}"]["resid_post"]
        return np.asarray(r[0], dtype=np.float64)

    layers = []
    for spec, layer, exact_written in zip(LAYER_SPECS, model.layers, exact):
        i = spec.number
        before, after = residual(i - 1), residual(i)
        middle = np.asarray(cache[f"layer_{i}"]["resid_mid"][0], dtype=np.float64)
        heads = []
        for h, head in enumerate(layer.attention.heads):
            value_blocks = _blocks_of(model, head.value)
            heads.append({
                "index": h, "label": head.label,
                "query_reads": _blocks_of(model, head.query), "key_reads": _blocks_of(model, head.key),
                "value_reads": value_blocks,
                "writes": [n for n in model.layout.blocks
                           if n in {model.layout.block_of(d).name for out in head.output for d in out}],
                "pattern": _pattern_rows(np.asarray(cache[f"layer_{i}"]["pattern"][0, h], dtype=np.float64),
                                         shown, hidden),
                # what the head's value reads at each shown key position (non-zero entries)
                "values": [_entries(model, before[k], value_blocks, tol) for k in shown],
            })
        mlp_blocks = _blocks_of(model, [(u.reads, 0) for u in layer.mlp.units])
        layers.append({
            "number": i, "title": spec.title, "in_words": spec.in_words,
            "attention_does": spec.attention_does, "mlp_does": spec.mlp_does,
            "reads": list(spec.reads), "writes": list(spec.writes),
            "n_heads": spec.n_heads(tasks, model.conditioned), "heads_formula": formula_text(spec.heads),
            "n_units": spec.n_units(tasks, model.conditioned), "units_formula": formula_text(spec.mlp_width),
            "heads": heads,
            "attention": _sublayer(model, middle - before, middle, shown, tol),
            "mlp": _sublayer(model, after - middle, after, shown, tol),
            "mlp_reads": mlp_blocks,
            "mlp_inputs": [_entries(model, middle[t], mlp_blocks, tol) for t in shown],
            "exact": _exact_check(model, exact_written, after),
        })

    prefix = len(prompt.query_prefix)
    arrows = prediction_positions(tasks, prompt.n_examples, prefix).tolist()
    sites = prediction_sites(tasks, prompt.n_examples, prefix)
    predictions = []
    for t, (i, j), row in zip(arrows, sites, report["predictions"]):
        if t in shown:
            predictions.append({"example": i if i < prompt.n_examples else "query", "answer_token": j, "t": t,
                                "inputs": [tasks.name_of(x) for x in prompt.inputs_at(i)],
                                "model": row["model"], "analytic": row["analytic"],
                                "analytic_text": [number_text(x) for x in row["analytic"]],
                                "max_abs_error": row["max_abs_error"],
                                "exact": row.get("exact", True), "reason": row.get("reason")})
    query = report["predictions"][-1]
    # the tasks' tokens at the query's last site; with a prefix, only tasks whose answer starts with it
    full = [tasks.answer_of(task, prompt.query) for task in tasks.tasks]
    answers = [a[prefix] if not model.conditioned or a[:prefix] == tuple(prompt.query_prefix) else None
               for a in full]
    # the capture pass and the run --json pass are separate forward passes; say how far apart they are
    capture_vs_report = float(np.abs(np.asarray(readout[0][arrows], dtype=np.float64)
                                     - np.array([[np.nan if v is None else v for v in p["model"]]
                                                 for p in report["predictions"]])).max())

    c = model.config
    shown_examples = {roles[t]["example"] for t in shown if isinstance(roles[t].get("example"), int)}
    return {
        "format": "superpose-explain/1",
        "command": command,
        "dtype": dtype, "tolerance": tol, "readable_tokens": limit,
        "tasks": {"vocab_size": tasks.vocab_size, "slots": tasks.slots, "K": tasks.K,
                  "tasks": [{"name": t.name, "slots": list(t.slots)} for t in tasks.tasks],
                  "slots_read": list(tasks.slots_read)},
        "model": {"layers": c.n_layers, "heads": c.n_heads, "d_model": c.d_model, "d_mlp": c.d_mlp,
                  "params": model.n_params, "context": c.n_ctx, "sharpness": model.sharpness},
        "T": T, "n_examples": prompt.n_examples, "answer_length": tasks.answer_length,
        "conditioned": model.conditioned,
        "tokens": [roles[t] for t in shown],
        "shown": shown,
        "hidden": {"count": len(hidden), "first": hidden.start, "last": hidden.stop - 1,
                   "examples": sorted({roles[t]["example"] for t in hidden})} if len(hidden) else None,
        "shares": _shares(model, prompt, shown_examples),
        "layers": layers,
        "outputs": {
            "predictions": predictions,
            "query": {"t": arrows[-1], "inputs": [tasks.name_of(x) for x in prompt.query],
                      "prefix": [tasks.name_of(x) for x in prompt.query_prefix],
                      "exact": query.get("exact", True), "reason": query.get("reason"),
                      "model": query["model"], "analytic": query["analytic"],
                      "analytic_text": [number_text(x) for x in query["analytic"]],
                      "max_abs_error": query["max_abs_error"],
                      "answers": answers, "token_names": [tasks.name_of(v) for v in range(tasks.vocab_size)]},
            "status": report["status"], "no_bound_reason": report.get("no_bound_reason"),
            "max_abs_error": report["max_abs_error"], "bound": report["bound"],
            "n_predictions": len(report["predictions"]),
            "capture_vs_report": _finite(capture_vs_report),
        },
    }


# --- HTML ------------------------------------------------------------------------------------

def _asset(name: str) -> str:
    return resources.files("superpose.verify").joinpath("explain_assets", name).read_text(encoding="utf-8")


def _json_for_script(data: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">`` (no ``</script>``, no ``<!--``)."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def render(data: dict) -> str:
    """The self-contained page: HTML, the inline style and script from ``explain_assets/``, the data.

    The placeholders are filled in one pass, so text in the data (token or task names) can
    never be taken for a placeholder; the data is JSON escaped for a ``<script>`` element.
    """
    tasks = ", ".join(t["name"] for t in data["tasks"]["tasks"])
    parts = {
        "TITLE": html.escape(f"superpose explain: {data['T']} tokens through the seven layers ({tasks})"),
        "STYLE": _asset("page.css"),
        "DATA": _json_for_script(data),
        "SCRIPT": _asset("page.js"),
    }
    return re.sub(r"\{\{(TITLE|STYLE|DATA|SCRIPT)\}\}", lambda m: parts[m.group(1)], _asset("page.html"))


def write_page(path: str, page: str, force: bool = False, inputs: Sequence[str] = ()) -> int:
    """Write ``page`` to ``path`` atomically (refusing an existing file without ``force``); returns its size."""
    from superpose.files import atomic_write

    encoded = page.encode("utf-8")
    with atomic_write(path, force=force, inputs=[p for p in inputs if p]) as tmp:
        with open(tmp, "wb") as f:
            f.write(encoded)
    return len(encoded)


def capture_memory(config, T: int, dtype: str) -> int:
    """Bytes the activation capture of one ``T``-token prompt holds (device and host copies)."""
    itemsize = 4 if dtype == "float32" else 8
    per_layer = config.n_heads * T * T + T * (2 * config.d_model + config.d_mlp)
    return 2 * itemsize * config.n_layers * per_layer


def with_capture(estimate, config, T: int, dtype: str):
    """A ``superpose.resources.MemoryEstimate`` with the capture's activations added."""
    return dataclasses.replace(estimate, activations=estimate.activations + capture_memory(config, T, dtype))


__all__ = ["READABLE_TOKENS", "TOLERANCE", "capture_memory", "number_text", "page_data", "readable_label",
           "render", "shown_positions", "token_roles", "with_capture", "write_page"]
