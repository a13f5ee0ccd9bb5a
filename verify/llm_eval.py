r"""The paper's LLM measurement on any causal LM, and on the constructed and trained models.

A prompt mixes in-context examples of several tasks of one *family* (the same inputs,
one answer per task) and ends with a query; the measurement asks how the probability
of each task's answer on the query tracks the task's share of the examples.

**Families** are bundled JSON files in ``verify/families/`` (``family_names()``), or any file
of that schema::

    {"description": "...", "tasks": ["capital", "continent", ...],
     "items": [{"input": "France", "answers": {"capital": "Paris", ...}}, ...]}

Every item answers every task; unknown keys are errors. ``token_family(tasks)`` is the
token-level version of a ``superpose.setting.TaskSet`` (what the constructed and the
trained models read): one item per input tuple of distinct tokens, written as text (token
names joined by spaces) for a text model, so all three kinds of model can read one family.

**Prompt format** (``PromptFormat``, text models): each example is one line
``input{arrow}{answer_prefix}answer{separator}``, by default ``"France -> Paris\n"``,
and the prompt ends with the query ``input{arrow}``. Token-level models read the
construction's format (``superpose.setting.tokenize``: BOS, inputs, ARROW, answer, ...).

**Scoring** (``TextScorer``): a candidate answer's probability is
``P(answer_prefix + answer + separator | prompt)``, the product of its teacher-forced
token probabilities *including the end-of-answer boundary* (the separator), so an answer
that is a prefix of another (``1`` and ``12``) does not get the other's probability. The
answer is tokenised in context: prompt + continuation is tokenised as one text and the
continuation's tokens are those after the prompt's own tokens (``split_in_context``; a
tokeniser that merges across the prompt/answer boundary is refused, naming the answer).
Token-level answers have the task set's fixed length, so none is a prefix of another and
no boundary token is needed (the construction's vocabulary has none).

**Metrics** per prompt (``prompt_metrics``), over the *candidates*: the distinct answers of
all the family's tasks on the query, and the answers shown in the prompt's examples (the
usual wrong completion is an answer copied from the context):

* ``kl``: ``KL(shares || answer probabilities)`` in nats, ``superpose.verify.calibration``
  (tasks that share an answer are pooled: the shares of tasks with one answer add up);
* ``r``: how many present tasks (share > 0) have their answer among the model's top-K'
  candidates, K' = the number of distinct answers of the present tasks (an answer is in
  the top K' when fewer than K' candidates are strictly more probable); ``r = K`` is
  perfect coverage;
* ``off_task_mass``: ``1 -`` the probability of the present tasks' distinct answers (mass
  on absent tasks' answers and on anything else).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from itertools import permutations
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from superpose.setting import Example, Prompt, SuperposeError, TaskSet, tokenize
from superpose.verify.calibration import calibration_kl

FAMILY_DIR = Path(__file__).parent / "families"


class LLMEvalError(SuperposeError):
    """Bad input to the LLM measurement (a family, the tasks or shares, a model, the format)."""


class BoundaryError(LLMEvalError):
    """The tokeniser merges the prompt's last token with the answer: the answer cannot be scored alone."""


# --------------------------------------------------------------------------- families

@dataclass(frozen=True)
class Item:
    """One input and each task's answer on it (``answers[k]`` for ``Family.tasks[k]``);
    ``tokens``: the input tokens of a token-level family (``None`` for text families)."""
    input: str
    answers: tuple[str, ...]
    tokens: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Family:
    """Tasks that share their inputs: ``items[i].answers[k]`` is task ``tasks[k]``'s answer on item i."""
    name: str
    description: str
    tasks: tuple[str, ...]
    items: tuple[Item, ...]
    token_tasks: TaskSet | None = None   # the task set of a token-level family

    def task_index(self, name: str) -> int:
        if name not in self.tasks:
            raise LLMEvalError(f"--tasks: family {self.name!r} has no task {name!r} (it has {list(self.tasks)})")
        return self.tasks.index(name)


def family_names() -> list[str]:
    """The bundled families (``verify/families/NAME.json``)."""
    return sorted(p.stem for p in FAMILY_DIR.glob("*.json"))


def _check_keys(obj: Any, allowed: set[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise LLMEvalError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise LLMEvalError(f"{where}: unknown key {unknown[0]!r} (allowed: {sorted(allowed)})")
    missing = sorted(allowed - set(obj))
    if missing:
        raise LLMEvalError(f"{where}: missing key {missing[0]!r}")


def family_from_json(data: Any, name: str) -> Family:
    """A ``Family`` from its JSON object; every key checked (``LLMEvalError`` naming the first problem)."""
    _check_keys(data, {"description", "tasks", "items"}, f"family {name}")
    tasks = data["tasks"]
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) and t for t in tasks):
        raise LLMEvalError(f"family {name}: tasks must be a non-empty list of names")
    if len(set(tasks)) != len(tasks):
        raise LLMEvalError(f"family {name}: tasks repeat a name")
    if not isinstance(data["items"], list) or len(data["items"]) < 2:
        raise LLMEvalError(f"family {name}: items must be a list of at least two items")
    items, seen = [], set()
    for i, raw in enumerate(data["items"]):
        where = f"family {name}: items[{i}]"
        _check_keys(raw, {"input", "answers"}, where)
        _check_keys(raw["answers"], set(tasks), f"{where}.answers")
        text = raw["input"]
        if not isinstance(text, str) or not text:
            raise LLMEvalError(f"{where}.input: expected a non-empty string")
        if text in seen:
            raise LLMEvalError(f"{where}.input: {text!r} appears twice")
        seen.add(text)
        answers = tuple(raw["answers"][t] for t in tasks)
        if not all(isinstance(a, str) and a for a in answers):
            raise LLMEvalError(f"{where}.answers: every answer must be a non-empty string")
        items.append(Item(text, answers))
    if not isinstance(data["description"], str):
        raise LLMEvalError(f"family {name}: description must be a string")
    return Family(name, data["description"], tuple(tasks), tuple(items))


def load_family(name_or_path: str) -> Family:
    """A bundled family by name (``family_names()``), a family JSON file by path, or a ``TASKS.json``
    (``superpose.setting.TaskSet``; recognised by its ``vocab_size``) as its ``token_family``."""
    path = Path(name_or_path)
    if not path.suffix == ".json":
        if name_or_path not in family_names():
            raise LLMEvalError(f"--family: no family {name_or_path!r} (bundled: {', '.join(family_names())}; "
                               "or give a .json file)")
        path = FAMILY_DIR / f"{name_or_path}.json"
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise LLMEvalError(f"--family: cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise LLMEvalError(f"--family: {path} is not valid JSON ({e})") from None
    if isinstance(data, dict) and "vocab_size" in data:  # a TASKS.json: its token-level family
        return token_family(TaskSet.from_json(data), path.stem)
    return family_from_json(data, path.stem)


def token_family(tasks: TaskSet, name: str = "tokens") -> Family:
    """The token-level family of ``tasks``: one item per input tuple of distinct content tokens
    (as the trained models were trained on), answers as token names joined by spaces."""
    if any(len(tasks.name_of(t).split()) != 1 for t in range(tasks.vocab_size)):
        raise LLMEvalError(f"{name}: token names must be non-empty and without spaces (answers of several "
                           "tokens are written with spaces between them)")
    items = []
    for inputs in permutations(range(tasks.vocab_size), tasks.slots):
        answers = tuple(" ".join(tasks.name_of(t) for t in tasks.answer_of(task, inputs)) for task in tasks.tasks)
        items.append(Item(" ".join(tasks.name_of(x) for x in inputs), answers, tuple(inputs)))
    return Family(name, f"token-level tasks of a model: {', '.join(t.name for t in tasks.tasks)}",
                  tuple(t.name for t in tasks.tasks), tuple(items), token_tasks=tasks)


# --------------------------------------------------------------------------- prompts

@dataclass(frozen=True)
class PromptFormat:
    """Text prompt format: lines ``input{arrow}{answer_prefix}answer{separator}``, then ``input{arrow}``.

    The separator after an answer is its end-of-answer boundary (scored with it)."""
    arrow: str = " ->"
    answer_prefix: str = " "
    separator: str = "\n"

    def __post_init__(self):
        if not self.separator:
            raise LLMEvalError("--separator: must not be empty (it is the end-of-answer boundary)")

    def example(self, item_input: str, answer: str) -> str:
        return f"{item_input}{self.arrow}{self.continuation(answer)}"

    def query(self, item_input: str) -> str:
        return f"{item_input}{self.arrow}"

    def continuation(self, answer: str) -> str:
        """What is scored for a candidate answer: the answer with its prefix and boundary."""
        return f"{self.answer_prefix}{answer}{self.separator}"


@dataclass(frozen=True)
class MixedPrompt:
    """Which item and task each example shows (``examples[i] = (item, task)``) and the query item."""
    examples: tuple[tuple[int, int], ...]
    query: int


def example_counts(shares: Sequence[float], n_examples: int) -> list[int]:
    """``n_examples`` split in proportion to ``shares`` (largest remainders; ties to the earlier task)."""
    raw = [s * n_examples for s in shares]
    counts = [math.floor(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda k: (-(raw[k] - counts[k]), k))
    for k in order[:n_examples - sum(counts)]:
        counts[k] += 1
    return counts


def check_shares(shares: Sequence[float], n_tasks: int) -> list[float]:
    """Shares as given (``--shares``), checked: one per task, >= 0, summing to 1 (to 1e-6)."""
    shares = [float(s) for s in shares]
    if len(shares) != n_tasks:
        raise LLMEvalError(f"--shares: {len(shares)} shares for {n_tasks} tasks")
    if not all(math.isfinite(s) and s >= 0 for s in shares):
        raise LLMEvalError(f"--shares: every share must be a finite number >= 0, got {shares}")
    if abs(sum(shares) - 1.0) > 1e-6:
        raise LLMEvalError(f"--shares: must sum to 1, got {sum(shares):g}")
    return shares


def draw_prompt(family: Family, task_ids: Sequence[int], counts: Sequence[int], rng: np.random.Generator,
                ) -> MixedPrompt:
    """A prompt with ``counts[j]`` examples of task ``task_ids[j]`` in random order and a random query.

    Each example's item differs from the query and from the other examples' items (while
    the family has enough items), and its answer under its own task is no other present
    task's answer on that item, so every example shows one task only and the shares of
    the examples are the tasks' shares."""
    n_items = len(family.items)
    query = int(rng.integers(n_items))
    examples: list[tuple[int, int]] = []
    used = {query}
    for task, count in zip(task_ids, counts):
        fitting = [i for i in range(n_items) if i != query and sum(
            family.items[i].answers[k] == family.items[i].answers[task] for k in task_ids) == 1]
        if not fitting:
            raise LLMEvalError(f"family {family.name}: no item shows task {family.tasks[task]!r} alone "
                               f"(its answer is another chosen task's on every item)")
        for _ in range(count):
            fresh = [i for i in fitting if i not in used]
            item = int(rng.choice(fresh if fresh else fitting))
            used.add(item)
            examples.append((item, task))
    order = rng.permutation(len(examples))
    return MixedPrompt(tuple(examples[i] for i in order), query)


def prompt_text(family: Family, prompt: MixedPrompt, fmt: PromptFormat) -> str:
    """The text of the prompt up to and including the query's arrow."""
    lines = [fmt.example(family.items[i].input, family.items[i].answers[k]) for i, k in prompt.examples]
    return "".join(lines) + fmt.query(family.items[prompt.query].input)


# --------------------------------------------------------------------------- scoring

class AnswerScorer(Protocol):
    """Log-probability of each candidate answer (a string of ``Family.items[..].answers``) on a prompt."""

    def answer_logprobs(self, family: Family, prompt: MixedPrompt, candidates: Sequence[str]) -> list[float]:
        ...


class CausalLM(Protocol):
    """What ``TextScorer`` needs of a text model: a tokeniser and teacher-forced log-probabilities."""

    def encode(self, text: str) -> list[int]:
        ...

    def continuation_logprobs(self, prefix: Sequence[int], continuations: Sequence[Sequence[int]],
                              ) -> list[np.ndarray]:
        """``out[c][j] = log P(continuations[c][j] | prefix + continuations[c][:j])``."""
        ...


def split_in_context(encode: Callable[[str], list[int]], prefix: str, continuation: str,
                     ) -> tuple[list[int], list[int]]:
    """The tokens of ``prefix`` and of ``continuation`` as ``prefix + continuation`` is tokenised.

    ``BoundaryError`` if the tokens of the whole text do not start with the prefix's own
    tokens (the tokeniser merged across the boundary; a different ``--arrow`` or answer
    prefix avoids it)."""
    whole = list(encode(prefix + continuation))
    head = list(encode(prefix))
    if whole[:len(head)] != head or len(whole) == len(head):
        raise BoundaryError(f"the tokeniser merges the prompt's end {prefix[-12:]!r} with the answer "
                            f"{continuation!r}: change --arrow or --answer-prefix so that they tokenise apart")
    return head, whole[len(head):]


@dataclass
class TextScorer:
    """Scores answers with a text model: teacher forcing of answer + boundary, tokenised in context."""
    lm: CausalLM
    fmt: PromptFormat = field(default_factory=PromptFormat)

    def answer_logprobs(self, family: Family, prompt: MixedPrompt, candidates: Sequence[str]) -> list[float]:
        text = prompt_text(family, prompt, self.fmt)
        pieces = [split_in_context(self.lm.encode, text, self.fmt.continuation(a)) for a in candidates]
        head = pieces[0][0]
        if any(p[0] != head for p in pieces):  # encode(text) is deterministic; kept as a guard
            raise BoundaryError("the prompt tokenises differently for different answers")
        return [float(np.sum(lp)) for lp in self.lm.continuation_logprobs(head, [p[1] for p in pieces])]


@dataclass
class TokenScorer:
    """Scores answers with a token-level model (constructed or trained) on its own task set.

    ``next_token_probs(tokens [B, T]) -> [B, T, d]``: the model's probability of each content
    token after each position (the constructed model's readout; the trained model's softmax)."""
    next_token_probs: Callable[[np.ndarray], np.ndarray]
    max_examples: int

    def answer_logprobs(self, family: Family, prompt: MixedPrompt, candidates: Sequence[str]) -> list[float]:
        tasks = family.token_tasks
        if tasks is None:
            raise LLMEvalError(f"family {family.name!r} is text; a token-level model reads only its own tasks "
                               "(leave --family out)")
        if len(prompt.examples) > self.max_examples:
            raise LLMEvalError(f"--examples: this model reads at most {self.max_examples} examples, "
                               f"got {len(prompt.examples)}")
        def answer(i: int, k: int):  # a token, or a tuple of answer_length tokens
            tokens = tasks.answer_of(tasks.tasks[k], family.items[i].tokens)
            return tokens[0] if tasks.answer_length == 1 else tokens

        examples = [Example(family.items[i].tokens, answer(i, k)) for i, k in prompt.examples]
        query = family.items[prompt.query].tokens
        by_name = {tasks.name_of(t): t for t in range(tasks.vocab_size)}
        answers = [[by_name[n] for n in candidate.split(" ")] for candidate in candidates]
        # every sequence has the same length (answers are answer_length tokens): one batch
        tokens = np.stack([tokenize(tasks, Prompt(examples, query, a[:-1])) for a in answers])
        probs = np.asarray(self.next_token_probs(tokens), dtype=np.float64)
        start = tokens.shape[1] - tasks.answer_length  # the query's ARROW
        out = []
        for c, a in enumerate(answers):
            p = [probs[c, start + j, t] for j, t in enumerate(a)]
            out.append(float(np.sum(np.log(p))) if all(x > 0 for x in p) else -math.inf)
        return out


# --------------------------------------------------------------------------- metrics

def prompt_metrics(answers: Sequence[str], shares: Sequence[float], candidates: Sequence[str],
                   probabilities: Sequence[float]) -> dict:
    """KL, coverage r and off-task mass of one prompt (definitions in the module docstring).

    ``answers[k]``, ``shares[k]``: task k's answer on the query and share (present tasks
    have share > 0); ``probabilities[c]``: the model's probability of ``candidates[c]``."""
    index = {a: c for c, a in enumerate(candidates)}
    present = [k for k, s in enumerate(shares) if s > 0]
    kl = calibration_kl([shares[k] for k in present], [index[answers[k]] for k in present], probabilities)
    distinct = {answers[k] for k in present}
    top = {a for a in candidates
           if sum(q > probabilities[index[a]] for q in probabilities) < len(distinct)}
    return {
        "kl": kl,
        "r": sum(answers[k] in top for k in present),
        "K": len(present),
        "off_task_mass": 1.0 - sum(probabilities[index[a]] for a in distinct),
    }


def evaluate(scorer: AnswerScorer, family: Family, task_names: Sequence[str], shares: Sequence[float],
             n_examples: int, n_prompts: int, seed: int, model: str = "") -> list[dict]:
    """``n_prompts`` mixed prompts scored by ``scorer``: one record per prompt (the JSONL lines)."""
    task_ids = [family.task_index(t) for t in task_names]
    if len(set(task_ids)) != len(task_ids):
        raise LLMEvalError("--tasks: a task is named twice")
    shares = check_shares(shares, len(task_ids))
    if n_examples < 1 or n_prompts < 1:
        raise LLMEvalError(f"--examples and --prompts must be >= 1, got {n_examples} and {n_prompts}")
    counts = example_counts(shares, n_examples)
    rng = np.random.default_rng(seed)
    records = []
    for p in range(n_prompts):
        prompt = draw_prompt(family, task_ids, counts, rng)
        query = family.items[prompt.query]
        candidates = list(dict.fromkeys([*query.answers, *(family.items[i].answers[k] for i, k in prompt.examples)]))
        logprobs = scorer.answer_logprobs(family, prompt, candidates)
        probabilities = [math.exp(x) for x in logprobs]
        answers = [query.answers[k] for k in task_ids]
        example_shares = [c / n_examples for c in counts]
        metrics = prompt_metrics(answers, example_shares, candidates, probabilities)
        records.append({
            "model": model, "family": family.name, "prompt": p, "seed": seed, "n_examples": n_examples,
            "query": query.input,
            "tasks": [{"name": family.tasks[k], "count": c, "share": s, "answer": a,
                       "probability": probabilities[candidates.index(a)]}
                      for k, c, s, a in zip(task_ids, counts, example_shares, answers)],
            "candidates": dict(zip(candidates, probabilities)),
            **metrics,
        })
    return records


def summarize(records: Sequence[dict]) -> dict:
    """Means over the prompts (``kl`` may be ``inf`` when a present answer got probability 0), and each
    task's mean share and mean answer probability."""
    n = len(records)
    names = [t["name"] for t in records[0]["tasks"]]
    return {"prompts": n, "kl_mean": sum(r["kl"] for r in records) / n,
            "r_mean": sum(r["r"] for r in records) / n, "K": records[0]["K"],
            "off_task_mass_mean": sum(r["off_task_mass"] for r in records) / n,
            "share_mean": {name: sum(r["tasks"][j]["share"] for r in records) / n for j, name in enumerate(names)},
            "probability_mean": {name: sum(r["tasks"][j]["probability"] for r in records) / n
                                 for j, name in enumerate(names)}}


def plot_probability_vs_share(records: Sequence[dict], path: str, title: str = "", image_format: str = "png",
                              ) -> None:
    """Each present task's answer probability against its share (``plot`` extra), the diagonal for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    names = [t["name"] for t in records[0]["tasks"]]
    for name in names:
        pts = [(t["share"], t["probability"]) for r in records for t in r["tasks"] if t["name"] == name]
        ax.scatter([s for s, _ in pts], [q for _, q in pts], s=14, alpha=0.6, label=name)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="share of the in-context examples",
           ylabel="probability of the task's answer", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format=image_format)
    plt.close(fig)
