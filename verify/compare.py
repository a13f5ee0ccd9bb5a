"""The model against the analytic prediction, at every prediction position: one comparison.

``compare(model, prompts, dtype)`` runs the prompts (or takes readouts already computed,
as a sweep or a benchmark has them) and returns one ``Comparison`` per prompt: the model's
output and the analytic prediction (``superpose.verify.analytic``, which never looks at
weights) at each prediction site, the max error there and the bound
(``model.error_bound`` for the prompt's length). The command line's ``run --json`` object
(``run_report``), the sweep and the benchmark all use it.

>>> from superpose import Task, TaskSet, Prompt, Example, build
>>> tasks = TaskSet(vocab_size=3, slots=1, tasks=[Task("id", 0, [0, 1, 2]), Task("inc", 0, [1, 2, 0])])
>>> model = build(tasks, max_examples=4)
>>> [c] = compare(model, [Prompt([Example([0], 0), Example([1], 2)], query=[2])], "float64")
>>> c.analytic[-1].tolist(), c.status
([0.5, 0.0, 0.5], 'within_bound')
>>> bool(c.max_error <= c.bound.total <= 1e-12), c.site_bounds == [c.bound.total] * 3
(True, True)
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from superpose.setting import Prompt, PromptError, prediction_positions, prediction_sites
from superpose.verify.analytic import predict, separable

STATUSES = ("within_bound", "bound_violated", "no_bound")


@dataclass(frozen=True)
class Comparison:
    """One prompt: model vs analytic prediction at each prediction site ``sites[n] = (example, answer token)``.

    ``errors[n]`` is ``max_v |outputs[n, v] - analytic[n, v]|`` (``inf`` when an output is NaN
    or infinite). The bound is claimed at the sites where ``claimed[n]``: all of them, except,
    for a conditioned model with answers of several tokens, the sites outside the class it
    conditions on exactly (``reasons[n]`` says why).
    """

    prompt: Prompt
    sites: list[tuple[int, int]]
    outputs: np.ndarray
    analytic: np.ndarray
    errors: np.ndarray
    claimed: np.ndarray
    reasons: list[str]
    prompt_length: int
    bound: Any                  # superpose.construct.bound.ErrorBound for prompt_length
    run_seconds: float = 0.0    # this prompt's share of the time ``compare`` spent running the model

    @property
    def max_error(self) -> float:
        """The largest error over the claimed sites (0 when none is claimed)."""
        return float(self.errors[self.claimed].max()) if self.claimed.any() else 0.0

    @property
    def site_bounds(self) -> list[float | None]:
        """Per site: the bound claimed there, or ``None`` (no bound holds, or the site is not claimed)."""
        return [self.bound.total if self.bound.holds and ok else None for ok in self.claimed]

    @property
    def status(self) -> str:
        """``no_bound`` (hypothesis H fails), else ``within_bound`` or ``bound_violated``."""
        if not self.bound.holds:
            return "no_bound"
        return "within_bound" if self.max_error <= self.bound.total else "bound_violated"


def _site_errors(outputs: np.ndarray, analytic: np.ndarray) -> np.ndarray:
    difference = np.abs(outputs - analytic)
    finite = np.isfinite(difference).all(axis=1)
    return np.where(finite, np.where(finite[:, None], difference, 0.0).max(axis=1, initial=0.0), math.inf)


def compare(model, prompts: Sequence[Prompt] | Prompt, dtype: str = "float32",
            readouts: Sequence[np.ndarray] | None = None) -> list[Comparison]:
    """Compare ``model`` with the analytic prediction on each prompt (one ``Comparison`` each).

    Without ``readouts`` the prompts run through ``model.run`` in ``dtype``. With them,
    ``readouts[p]`` is prompt p's readout at every token position (``[>= T, >= d]``, as
    ``superpose.model.run_tokens`` or a padded batched call gives it; padding rows and
    columns are ignored) and nothing runs; ``dtype`` then only picks the bound.
    """
    prompts = [prompts] if isinstance(prompts, Prompt) else list(prompts)
    tasks = model.tasks
    seconds = 0.0
    if readouts is None:
        start = time.perf_counter()
        with warnings.catch_warnings():  # a sharpness beyond the dtype's range shows as a non-finite error
            warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
            outputs = model.run(prompts, dtype=dtype)
        seconds = (time.perf_counter() - start) / max(len(prompts), 1)
    else:
        if len(readouts) != len(prompts):
            raise PromptError(f"readouts: expected one per prompt ({len(prompts)}), got {len(readouts)}")
        outputs = [np.asarray(r)[prediction_positions(tasks, p.n_examples, len(p.query_prefix)), : tasks.vocab_size]
                   for r, p in zip(readouts, prompts)]
    mode = "conditioned" if model.conditioned else "marginal"
    comparisons = []
    for prompt, out in zip(prompts, outputs):
        out = np.asarray(out, dtype=np.float64)
        analytic = predict(tasks, prompt, mode=mode)
        # answers of several tokens: the conditioned model is exact where the mixture is separable
        claims = separable(tasks, prompt) if model.conditioned else [(True, "")] * len(analytic)
        T = tasks.prompt_length(prompt.n_examples, len(prompt.query_prefix))
        comparisons.append(Comparison(
            prompt=prompt, sites=prediction_sites(tasks, prompt.n_examples, len(prompt.query_prefix)),
            outputs=out, analytic=analytic, errors=_site_errors(out, analytic),
            claimed=np.array([ok for ok, _ in claims], dtype=bool), reasons=[why for _, why in claims],
            prompt_length=T, bound=model.error_bound(dtype, prompt_length=T), run_seconds=seconds))
    return comparisons


# ---------------------------------------------------------------------------------------------
# The ``superpose run --json`` object.

def no_bound_reason(bound, K: int, T: int, sharpness: float, dtype: str) -> str:
    """Why ``error_bound`` gives no bound (``bound.holds`` is false), in words, with what to change."""
    wider = " or use --dtype float64" if dtype == "float32" else ""
    largest = float(np.finfo(dtype).max)
    if bound.why == "overflow" or 2 * sharpness > largest:
        return (f"sharpness {sharpness:g} overflows {dtype} (look-back scores reach about 2 L x sharpness; the "
                f"largest {dtype} is {largest:.3g}): lower --sharpness{wider}")
    if not math.isfinite(bound.leak):
        return (f"sharpness {sharpness:g} is too low for K = {K} and {T} tokens: soft attention leaks more "
                f"than 1/4 into the snapped values even in exact arithmetic (raise --sharpness)")
    return (f"{dtype} rounding is too large for the snaps at sharpness {sharpness:g}, K = {K}, T = {T}: their "
            f"inputs may err by {bound.snap_input_error:.2g} > 1/4 (use a shorter prompt{wider})")


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def run_report(model, prompt: Prompt, dtype: str, readout: np.ndarray | None = None, executor: str = "standard",
               timing: bool = False, certify: bool = False) -> dict:
    """Model vs analytic prediction at every prediction position: the ``superpose run --json`` object.

    Deterministic: the same input gives byte-identical JSON. ``readout`` (every token
    position, see ``compare``) is a run made elsewhere, recorded as ``executor``; without
    it the prompt runs here and its run time is added under ``"timing"`` when ``timing``.
    """
    [c] = compare(model, [prompt], dtype, readouts=None if readout is None else [readout])
    tasks, bound = model.tasks, c.bound
    predictions = []
    for (i, j), out, ana, err, ok, why, site_bound in zip(c.sites, c.outputs, c.analytic, c.errors, c.claimed,
                                                          c.reasons, c.site_bounds):
        entry: dict[str, Any] = {"example": i}
        if tasks.answer_length > 1:
            entry["answer_token"] = j
        entry.update({"model": [_finite(x) for x in out], "analytic": [float(x) for x in ana],
                      "max_abs_error": _finite(err), "bound": site_bound})
        if tasks.answer_length > 1:
            entry["exact"] = bool(ok)
            if not ok:
                entry["reason"] = why
        predictions.append(entry)
    config = model.config
    report: dict[str, Any] = {
        "model": {"layers": config.n_layers, "heads": config.n_heads, "d_model": config.d_model,
                  "params": model.n_params},
        "dtype": dtype,
        "sharpness": model.sharpness,
        "executor": executor,
        "bound": bound.to_json() if bound.holds else
        {"leak": _finite(bound.leak), "rounding": None, "total": None,
         "snap_input_error": _finite(bound.snap_input_error), "holds": False},
        "status": c.status,
        "max_abs_error": _finite(c.max_error),
        "predictions": predictions,
    }
    if c.status == "no_bound":
        report["no_bound_reason"] = no_bound_reason(bound, tasks.K, c.prompt_length, model.sharpness, dtype)
    if certify:  # a posteriori: every flag bit-exact in this run, then the tight bound for this prompt
        from superpose.construct.bound import certify as certify_run

        report["certificate"] = certify_run(model, prompt, dtype)
        if report["certificate"]["certified"] and not c.max_error <= report["certificate"]["bound"]:
            report["status"] = "bound_violated"
    if timing:
        report["timing"] = {"run_seconds": c.run_seconds}
    return report


__all__ = ["Comparison", "compare", "run_report", "no_bound_reason", "STATUSES"]
