r"""Decoding answers of several tokens, and how far a decode keeps the task superposition.

A *step* is anything that maps the answer tokens generated so far to the distribution of the
next one, ``Step = Callable[[tuple[int, ...]], distribution over the d content tokens]``: the
analytic prediction (``analytic_step``), the constructed model (``model_step``, through
``model.run`` with ``Prompt(..., query_prefix=prefix)``) or a trained transformer
(``superpose.train.generation.trained_step``). The prefix is the whole answer prefix, the
query's ``query_prefix`` included; decoding starts from ``step.prefix`` (the query's
``query_prefix``) and stops after ``step.answer_length`` tokens. Steps built here count their
forward passes (``step.forward_passes``: one per prefix evaluated, batched or not).

Decoders (each returns a ``Decoded``: the weighted set of complete answers and the forward
passes it took; every decoder evaluates each prefix at most once):

* ``greedy``: the most probable next token each time (ties: the smallest token); its one
  answer carries the step's probability of that sequence (the product of the chosen tokens'
  probabilities);
* ``sample``: ``n`` seeded ancestral samples (each step's content-token probabilities,
  renormalised); an answer's probability is the fraction of the ``n`` samples that gave it;
* ``beam``: the ``width`` most probable prefixes kept at every position; answers carry their
  sequence probabilities;
* ``superposed``: branch on every token whose probability exceeds ``threshold``, carry each
  branch's probability (the product along it) and merge identical prefixes; returns every
  complete answer reached. On the prefix-conditioned analytic step (and on a model that
  computes it) this is exactly the sequence-level mixture ``{G_k(x): sum of the p_k' with
  G_k'(x) = G_k(x)}``, in at most (number of distinct answers) x A forward passes.

Metrics of a decoded set ``Q`` against the analytic sequence-level mixture ``P``
(``reference_mixture``: the tasks' answers on the query weighted by the mixture, tasks with
equal answers pooled, conditioned on ``query_prefix``):

* ``kl``: ``KL(P || Q) = sum_a P(a) ln(P(a) / Q(a))`` in nats over the distinct answers ``a``
  of ``P``, ``Q`` not renormalised (``superpose.verify.calibration``'s conventions; ``inf``
  when an answer of ``P`` is missing from ``Q``);
* ``coverage``: the fraction of the present tasks (mixture weight > 0, answer starting with
  ``query_prefix``) whose full answer is in ``Q``;
* ``chimera_mass``: ``Q``'s probability on complete answers that are no present task's answer
  (outside the support of ``P``: for example tokens of several tasks' answers mixed);
* ``collapse_point``: the first answer position ``j`` after which one answer holds all the
  probability: every length-``j`` prefix with mass in ``Q`` leads to a single answer of ``Q``
  (0: one answer from the start; ``A``: still split before the last token).

>>> from superpose import Example, Prompt, Task, TaskSet
>>> tasks = TaskSet(vocab_size=3, slots=2, answer_length=2, tasks=[
...     Task("AB", slots=[0, 1], table=[[(a, b) for b in range(3)] for a in range(3)]),
...     Task("BA", slots=[0, 1], table=[[(b, a) for b in range(3)] for a in range(3)])])
>>> prompt = Prompt([Example([0, 1], [0, 1]), Example([2, 0], [2, 0]), Example([1, 2], [2, 1])], query=[0, 2])
>>> decoded = superposed(analytic_step(tasks, prompt, exact=True))
>>> [(tokens, str(p)) for tokens, p in decoded.answers], decoded.forward_passes
([((0, 2), '2/3'), ((2, 0), '1/3')], 3)
>>> metrics(tasks, prompt, decoded.answers).to_json()
{'kl': 0.0, 'coverage': 1.0, 'chimera_mass': 0.0, 'collapse_point': 1}
>>> marginal = superposed(analytic_step(tasks, prompt, mode="marginal", exact=True))
>>> [(tokens, str(p)) for tokens, p in marginal.answers]
[((0, 2), '4/9'), ((0, 0), '2/9'), ((2, 2), '2/9'), ((2, 0), '1/9')]
>>> str(metrics(tasks, prompt, marginal.answers).chimera_mass)
'4/9'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from superpose.setting import Prompt, PromptError, SuperposeError, TaskSet, validate_prompt
from superpose.verify.analytic import MODES, next_token_distribution, task_mixture

#: ``prefix -> distribution over the d content tokens`` (a float array, or a list of ``Fraction``).
Step = Callable[[tuple[int, ...]], Any]

DECODERS = ("greedy", "sample", "beam", "superposed")
DEFAULT_THRESHOLD = 1e-3  # above the constructed model's float32 error, below any share of up to 1000 examples


class GenerationError(SuperposeError):
    """A decoder option is out of range, or a step does not fit the task set."""


class CountingStep:
    """A step that counts its forward passes (one per prefix evaluated).

    ``fn(prefix)`` gives one distribution; ``many(prefixes)`` (optional) evaluates several
    prefixes at once (one batched call of a model), still counting one pass per prefix.
    ``answer_length`` and ``prefix`` (the tokens already generated, where decoding starts)
    tell the decoders where to start and stop.
    """

    def __init__(self, fn: Callable[[tuple[int, ...]], Any], answer_length: int, prefix: Sequence[int] = (),
                 many: Callable[[list[tuple[int, ...]]], list] | None = None, name: str = "step"):
        self.fn = fn
        self._many = many
        self.answer_length = int(answer_length)
        self.prefix = tuple(int(y) for y in prefix)
        self.name = name
        self.forward_passes = 0

    def __call__(self, prefix: Sequence[int]):
        self.forward_passes += 1
        return self.fn(tuple(prefix))

    def many(self, prefixes: Sequence[Sequence[int]]) -> list:
        prefixes = [tuple(p) for p in prefixes]
        self.forward_passes += len(prefixes)
        if self._many is None or not prefixes:
            return [self.fn(p) for p in prefixes]
        return list(self._many(prefixes))

    def __repr__(self) -> str:
        return f"CountingStep({self.name}, A={self.answer_length}, prefix={self.prefix}, passes={self.forward_passes})"


def _check_prefix(tasks: TaskSet, prefix: tuple[int, ...]) -> tuple[int, ...]:
    if len(prefix) >= tasks.answer_length:
        raise PromptError(f"prefix: has {len(prefix)} tokens; answers have {tasks.answer_length}, so a next "
                          f"token exists only after at most {tasks.answer_length - 1}")
    for j, y in enumerate(prefix):
        if isinstance(y, bool) or not isinstance(y, (int, np.integer)) or not 0 <= y < tasks.vocab_size:
            raise PromptError(f"prefix[{j}]: {y!r} is not a token of the vocabulary 0..{tasks.vocab_size - 1}")
    return tuple(int(y) for y in prefix)


def analytic_step(tasks: TaskSet, prompt: Prompt, mode: str = "conditioned", exact: bool = False) -> CountingStep:
    """The analytic prediction as a step: ``prefix -> next_token_distribution(...)`` for the query.

    ``mode`` is ``"conditioned"`` (Bayes: only tasks whose answer starts with the prefix; all
    zero when none with positive weight does) or ``"marginal"`` (no conditioning). With
    ``exact=True`` the step returns lists of ``Fraction`` and the decoders carry exact
    probabilities; otherwise float64 arrays.
    """
    if mode not in MODES:
        raise GenerationError(f"mode: must be one of {', '.join(MODES)}, got {mode!r}")
    validate_prompt(tasks, prompt)
    mixture = task_mixture(tasks, prompt.examples)

    def fn(prefix: tuple[int, ...]):
        o, _ = next_token_distribution(tasks, mixture, prompt.query, _check_prefix(tasks, prefix), mode)
        return o if exact else np.array([float(x) for x in o], dtype=np.float64)

    return CountingStep(fn, tasks.answer_length, prompt.query_prefix, name=f"analytic {mode}")


def model_step(model, prompt: Prompt, dtype: str = "float64") -> CountingStep:
    """The constructed model as a step: ``run(model, Prompt(examples, query, query_prefix=prefix), dtype)[0][-1]``.

    ``model`` is a ``SuperposeModel`` (``superpose.build``; ``build(..., conditioned=False)``
    gives the marginal rule once the construction for several answer tokens exists). Prefixes
    of one decoding position are run as one batch, on the model's own widths
    (``shape=model.config``): a decoder calls one model many times, so its own programs cost
    less than the zero-padded bucket that lets different task sets share programs.
    """
    from superpose.model import run

    tasks = model.tasks
    validate_prompt(tasks, prompt, model.max_examples)

    def prompts(prefixes):
        return [Prompt(prompt.examples, prompt.query, query_prefix=_check_prefix(tasks, p)) for p in prefixes]

    def many(prefixes):
        return [np.asarray(out[-1], dtype=np.float64)
                for out in run(model, prompts(prefixes), dtype=dtype, shape=model.config)]

    return CountingStep(lambda prefix: many([prefix])[0], tasks.answer_length, prompt.query_prefix, many=many,
                        name=f"constructed model ({dtype})")


# --- decoders ---------------------------------------------------------------------------------

@dataclass
class Decoded:
    """A decoder's weighted set of complete answers (decreasing probability) and its forward passes."""

    decoder: str
    answers: list[tuple[tuple[int, ...], Any]]
    forward_passes: int

    @property
    def distribution(self) -> dict[tuple[int, ...], Any]:
        return dict(self.answers)

    def to_json(self, tasks: TaskSet | None = None, prompt: Prompt | None = None) -> dict:
        """``{"decoder", "answers": [{"tokens", "probability"}], "forward_passes"[, "metrics"]}``
        (the metrics against the analytic mixture when ``tasks`` and ``prompt`` are given)."""
        data = {"decoder": self.decoder,
                "answers": [{"tokens": list(tokens), "probability": float(p)} for tokens, p in self.answers],
                "forward_passes": self.forward_passes}
        if tasks is not None and prompt is not None:
            data["metrics"] = metrics(tasks, prompt, self.answers).to_json()
        return data


def _sorted(answers: Mapping[tuple[int, ...], Any]) -> list[tuple[tuple[int, ...], Any]]:
    return sorted(answers.items(), key=lambda item: (-float(item[1]), item[0]))


class _Memo:
    """Each prefix evaluated once per decode; counts the forward passes this decode made."""

    def __init__(self, step: Step):
        self.step = step
        self.cache: dict[tuple[int, ...], Any] = {}

    def many(self, prefixes: Iterable[tuple[int, ...]]) -> list:
        prefixes = list(prefixes)
        todo = list(dict.fromkeys(p for p in prefixes if p not in self.cache))
        if todo:
            many = getattr(self.step, "many", None)
            outs = many(todo) if many is not None else [self.step(p) for p in todo]
            for p, o in zip(todo, outs):
                row = list(o)
                if not all(isinstance(x, Fraction) for x in row):
                    row = [float(x) for x in row]
                self.cache[p] = row
        return [self.cache[p] for p in prefixes]

    def __call__(self, prefix: tuple[int, ...]) -> list:
        return self.many([prefix])[0]

    @property
    def passes(self) -> int:
        return len(self.cache)


def _start(step: Step, answer_length: int | None, prefix: Sequence[int] | None) -> tuple[int, tuple[int, ...]]:
    A = answer_length if answer_length is not None else getattr(step, "answer_length", None)
    start = tuple(prefix) if prefix is not None else tuple(getattr(step, "prefix", ()))
    if A is None:
        raise GenerationError("answer_length: the step does not say how long answers are; pass answer_length=")
    if isinstance(A, bool) or not isinstance(A, int) or A < 1:
        raise GenerationError(f"answer_length: must be a positive integer, got {A!r}")
    if len(start) >= A:
        raise GenerationError(f"prefix: {len(start)} tokens already generated, nothing left of an answer of {A}")
    return A, start


def greedy(step: Step, answer_length: int | None = None, prefix: Sequence[int] | None = None) -> Decoded:
    """The most probable token at every position (ties: the smallest token id)."""
    A, answer = _start(step, answer_length, prefix)
    memo = _Memo(step)
    probability: Any = 1
    while len(answer) < A:
        dist = memo(answer)
        best = max(range(len(dist)), key=lambda v: (dist[v], -v))
        if not dist[best] > 0:   # no token has probability (a conditioned step with no surviving task)
            return Decoded("greedy", [], memo.passes)
        probability = probability * dist[best]
        answer = answer + (best,)
    return Decoded("greedy", [(answer, probability)], memo.passes)


def sample(step: Step, n: int = 1, seed: int = 0, answer_length: int | None = None,
           prefix: Sequence[int] | None = None) -> Decoded:
    """``n`` ancestral samples with ``numpy.random.default_rng(seed)``; an answer's probability is its
    fraction of the ``n`` samples (a ``Fraction`` when the step is exact). A sample that reaches a
    prefix where no token has probability is dropped (the fractions then sum to less than 1)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise GenerationError(f"samples: must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise GenerationError(f"seed: must be a non-negative integer, got {seed!r}")
    A, start = _start(step, answer_length, prefix)
    memo = _Memo(step)
    rng = np.random.default_rng(seed)
    counts: dict[tuple[int, ...], int] = {}
    exact = True
    for _ in range(n):
        answer = start
        while len(answer) < A:
            dist = memo(answer)
            exact = exact and all(isinstance(x, Fraction) for x in dist)
            cumulative = np.cumsum([max(float(x), 0.0) for x in dist])
            if not cumulative[-1] > 0:
                break
            v = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
            answer = answer + (min(v, len(dist) - 1),)
        if len(answer) == A:
            counts[answer] = counts.get(answer, 0) + 1
    share = (lambda c: Fraction(c, n)) if exact else (lambda c: c / n)
    return Decoded("sample", _sorted({a: share(c) for a, c in counts.items()}), memo.passes)


def beam(step: Step, width: int = 2, answer_length: int | None = None, prefix: Sequence[int] | None = None) -> Decoded:
    """Beam search: the ``width`` most probable prefixes (ties: the smaller tokens) kept at every position."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise GenerationError(f"beam width: must be a positive integer, got {width!r}")
    A, start = _start(step, answer_length, prefix)
    memo = _Memo(step)
    beams: list[tuple[tuple[int, ...], Any]] = [(start, 1)]
    for _ in range(A - len(start)):
        candidates = []
        for (answer, p), dist in zip(beams, memo.many(a for a, _ in beams)):
            candidates.extend((answer + (v,), p * q) for v, q in enumerate(dist) if q > 0)
        beams = sorted(candidates, key=lambda c: (-float(c[1]), c[0]))[:width]
    return Decoded("beam", _sorted(dict(beams)), memo.passes)


def superposed(step: Step, threshold: float = 0.0, answer_length: int | None = None,
               prefix: Sequence[int] | None = None) -> Decoded:
    """Keep the superposition: branch on every token with probability above ``threshold``, carry each
    branch's probability, merge identical prefixes; every complete answer reached, with its probability.

    The prefixes of one position are evaluated together (one batched call where the step has
    ``many``); the forward passes are the number of prefixes expanded, at most (number of
    answers returned) x (tokens left to generate) when no branch dies on the way.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, Fraction)) \
            or not 0 <= threshold < 1:
        raise GenerationError(f"threshold: must be a number in [0, 1), got {threshold!r}")
    A, start = _start(step, answer_length, prefix)
    memo = _Memo(step)
    frontier: dict[tuple[int, ...], Any] = {start: 1}
    for _ in range(A - len(start)):
        grown: dict[tuple[int, ...], Any] = {}
        for (answer, p), dist in zip(frontier.items(), memo.many(frontier)):
            for v, q in enumerate(dist):
                if q > threshold:
                    key = answer + (v,)
                    grown[key] = grown.get(key, 0) + p * q
        frontier = grown
    return Decoded("superposed", _sorted(frontier), memo.passes)


def decode(step: Step, decoder: str = "superposed", *, samples: int = 1, seed: int = 0, beam_width: int = 2,
           threshold: float = DEFAULT_THRESHOLD) -> Decoded:
    """Run one of ``DECODERS`` with its option (the command line's entry point)."""
    if decoder == "greedy":
        return greedy(step)
    if decoder == "sample":
        return sample(step, samples, seed)
    if decoder == "beam":
        return beam(step, beam_width)
    if decoder == "superposed":
        return superposed(step, threshold)
    raise GenerationError(f"decoder: must be one of {', '.join(DECODERS)}, got {decoder!r}")


# --- metrics ----------------------------------------------------------------------------------

def reference_mixture(tasks: TaskSet, prompt: Prompt) -> dict[tuple[int, ...], Fraction]:
    """The analytic sequence-level mixture for the query, conditioned on its ``query_prefix``:
    ``{G_k(x): sum of p_k' over the tasks with that answer}`` over the tasks whose answer starts
    with the prefix, renormalised (empty when no task with positive weight does)."""
    validate_prompt(tasks, prompt)
    mixture = task_mixture(tasks, prompt.examples)
    j = len(prompt.query_prefix)
    out: dict[tuple[int, ...], Fraction] = {}
    for p, task in zip(mixture, tasks.tasks):
        answer = tasks.answer_of(task, prompt.query)
        if p and answer[:j] == prompt.query_prefix:
            out[answer] = out.get(answer, Fraction(0)) + p
    total = sum(out.values(), Fraction(0))
    return {a: p / total for a, p in out.items()} if total else {}


def present_tasks(tasks: TaskSet, prompt: Prompt) -> list[int]:
    """The tasks with positive mixture weight whose answer to the query starts with ``query_prefix``."""
    mixture = task_mixture(tasks, prompt.examples)
    j = len(prompt.query_prefix)
    return [k for k, (p, t) in enumerate(zip(mixture, tasks.tasks))
            if p and tasks.answer_of(t, prompt.query)[:j] == prompt.query_prefix]


def sequence_kl(reference: Mapping[tuple, Any], decoded: Mapping[tuple, Any]) -> float:
    """``KL(P || Q)`` in nats over the answers of ``P`` (``Q`` not renormalised; ``inf`` when ``Q``
    lacks one); 0 for an empty ``P``. Exact zero when ``P`` and ``Q`` agree exactly."""
    total = 0.0
    for answer, p in reference.items():
        if not p > 0:
            continue
        q = decoded.get(answer, 0)
        if not q > 0:
            return math.inf
        ratio = Fraction(p) / Fraction(q) if isinstance(p, Fraction) and isinstance(q, Fraction) else float(p) / float(q)
        total += float(p) * (0.0 if ratio == 1 else math.log(ratio))
    return total


def collapse_point(answers: Mapping[tuple[int, ...], Any], start: int = 0, tolerance: float = 0.0) -> int | None:
    """The first position ``j >= start`` at which every prefix of length ``j`` with positive mass leads
    to one answer holding all (at least ``1 - tolerance``) of that prefix's mass; ``None`` when
    there is no answer. ``j = start``: one answer from the start; ``j = A``: split to the end."""
    weighted = {a: float(p) for a, p in answers.items() if float(p) > 0}
    if not weighted:
        return None
    A = max(len(a) for a in weighted)
    for j in range(start, A + 1):
        groups: dict[tuple[int, ...], list[float]] = {}
        for a, p in weighted.items():
            groups.setdefault(a[:j], []).append(p)
        if all(max(ps) >= (1 - tolerance) * sum(ps) for ps in groups.values()):
            return j
    return A


@dataclass(frozen=True)
class Metrics:
    """A decoded set against the analytic sequence-level mixture (see the module docstring)."""

    kl: float                       # inf when a task's answer is missing
    coverage: Any                   # None when no task is present (no task survives query_prefix)
    chimera_mass: Any
    collapse_point: int | None

    def to_json(self) -> dict:
        return {"kl": self.kl if math.isfinite(self.kl) else None,
                "coverage": None if self.coverage is None else float(self.coverage),
                "chimera_mass": float(self.chimera_mass),
                "collapse_point": self.collapse_point}


def metrics(tasks: TaskSet, prompt: Prompt, answers: Mapping[tuple[int, ...], Any] | Sequence) -> Metrics:
    """KL, coverage, chimera mass and collapse point of ``answers`` (a mapping or ``Decoded.answers``)."""
    decoded = dict(answers)
    reference = reference_mixture(tasks, prompt)
    present = present_tasks(tasks, prompt)
    produced = {a for a, p in decoded.items() if p > 0}
    coverage = None if not present else Fraction(
        sum(tasks.answer_of(tasks.tasks[k], prompt.query) in produced for k in present), len(present))
    chimera = sum((p for a, p in decoded.items() if a not in reference), 0)
    return Metrics(sequence_kl(reference, decoded), coverage, chimera,
                   collapse_point(decoded, start=len(prompt.query_prefix)))


__all__ = ["DECODERS", "DEFAULT_THRESHOLD", "CountingStep", "Decoded", "GenerationError", "Metrics", "Step",
           "analytic_step", "beam", "collapse_point", "decode", "greedy", "metrics", "model_step",
           "present_tasks", "reference_mixture", "sample", "sequence_kl", "superposed"]
