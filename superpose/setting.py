"""The setting of Theorem 1: tasks, prompts, tokens and the typed errors for bad input.

This module is shared by ``superpose.construct`` (which builds weights) and
``superpose.verify`` (which computes the analytic prediction independently of the
weights). It knows nothing about transformers.

Tokens
------
Content tokens are ``0 .. d-1``. Two special tokens follow them:

* ``BOS = d``   -- beginning of sequence, always at position 0;
* ``ARROW = d + 1`` -- ends every example's inputs; the position holding it is a
  *prediction position* (the model's readout there is its answer distribution).

A prompt with examples ``(x^i, y^i)`` and query ``x^q`` is the token sequence::

    BOS, x^1_0 .. x^1_{s-1}, ARROW, y^1, ..., x^m_0 .. x^m_{s-1}, ARROW, y^m,
         x^q_0 .. x^q_{s-1}, ARROW

Every example occupies ``n = s + 2`` positions, so a prompt with ``m`` examples has
``T = 1 + m*(s+2) + (s+1) = (m+1)*(s+2)`` tokens and ``m + 1`` prediction positions.

>>> tasks = TaskSet(vocab_size=4, slots=2, tasks=[Task("copy0", 0, [0, 1, 2, 3])])
>>> prompt = Prompt(examples=[Example([1, 2], 1)], query=[3, 0])
>>> tokenize(tasks, prompt).tolist()
[4, 1, 2, 5, 1, 3, 0, 5]
>>> prediction_positions(tasks, 1).tolist()
[3, 7]
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np


class SuperposeError(ValueError):
    """Base class of every error this package raises for bad input."""


class TaskSetError(SuperposeError):
    """A task set (vocabulary size, slot count or a task) is malformed."""


class PromptError(SuperposeError):
    """A prompt does not fit the task set or the model it is run on."""


class BuildError(SuperposeError):
    """The options given to ``build`` are out of range."""


class WeightsFileError(SuperposeError):
    """A weights file is unreadable, truncated, tampered with or built for something else."""


class InputFileError(SuperposeError):
    """A JSON input file is missing or is not valid JSON of the expected shape."""


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (messages quote user input on one line)."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"a deeply nested {type(value).__name__}"
    return text if len(text) <= limit else text[:limit] + "..."


def _require_int(value: Any, where: str, error: type[SuperposeError]) -> int:
    # bool is an int subclass; reject it so `true` in JSON is not silently token 1.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise error(f"{where}: expected an integer, got {_short(value)}")
    return int(value)


def _check_keys(obj: dict, allowed: Sequence[str], required: Sequence[str], where: str,
                error: type[SuperposeError]) -> None:
    """Reject a key of ``obj`` outside ``allowed`` (suggesting the closest known one) or a missing required key.

    >>> _check_keys({"exampels": []}, ("examples", "query"), (), "prompt", PromptError)
    Traceback (most recent call last):
    ...
    superpose.setting.PromptError: prompt: unknown field 'exampels' (did you mean "examples"?)
    """
    for key in obj:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else f" (known fields: {', '.join(allowed)})"
            raise error(f"{where}: unknown field {str(key)[:80]!r}{hint}")
    for key in required:
        if key not in obj:
            raise error(f"{where}: missing field {key!r}")


def _require_token(value: Any, where: str, vocab_size: int, error: type[SuperposeError]) -> int:
    token = _require_int(value, where, error)
    if not 0 <= token < vocab_size:
        raise error(f"{where}: token {token} is outside the vocabulary 0..{vocab_size - 1}")
    return token


#: Most input slots one task may read (its table is nested this deep).
MAX_ARITY = 64

#: Longest answer, in tokens (``answer_length``): each answer position adds heads and units.
MAX_ANSWER_LENGTH = 16

#: Largest total number of input combinations ``sum_k d^(r_k)`` a task set may have. The
#: construction spends one hidden unit per combination in layers 2 and 7 (and a table of
#: that many entries is held in memory), so larger task sets are refused up front.
MAX_TABLE_ENTRIES = 1_000_000


@dataclass(frozen=True)
class Task:
    """Task ``f(x) = table[x[a_1]][x[a_2]]...[x[a_r]]``: read the input slots ``slots = (a_1..a_r)``.

    ``slots`` is one slot index (r = 1) or a sequence of r distinct slot indices, and
    ``table`` is a nested sequence (or an integer NumPy array) of depth r and side ``d``,
    holding the answer token for every combination of the r input tokens. Copy and
    retrieval tasks use the identity table; ``slot=`` is accepted for ``slots=`` with one slot.
    Tables are checked against a task set's vocabulary by ``TaskSet``.

    >>> add = Task("A+B", slots=[0, 1], table=[[(a + b) % 3 for b in range(3)] for a in range(3)])
    >>> add.slots, add.arity, add([2, 2])
    ((0, 1), 2, 1)
    >>> Task("copy", 0, [0, 1, 2]).slots
    (0,)
    """

    name: str
    slots: tuple[int, ...]
    table: tuple

    def __init__(self, name: str, slots: Any = None, table: Any = None, *, slot: Any = None):
        if isinstance(table, (dict, set, frozenset)) or not isinstance(name, str):  # a dict would be read as its keys
            raise TaskSetError(f"task {_short(name)}: " + ("name: expected a string" if not isinstance(name, str)
                               else f"table is a {type(table).__name__}; expected a nested list of tokens "
                                    "(table[w_1]...[w_r] = answer)"))
        if slot is not None:
            if slots is not None:
                raise TaskSetError(f"task {name!r}: give slot= or slots=, not both")
            slots = slot
        if slots is None or table is None:
            raise TaskSetError(f"task {name!r}: needs slots and a table")
        if isinstance(slots, (str, bytes, dict)):
            raise TaskSetError(f"task {name!r}: slots must be an integer or a list of integers, got {slots!r}")
        slot_tuple = tuple(slots) if isinstance(slots, (Sequence, np.ndarray)) else (slots,)
        object.__setattr__(self, "name", str(name))
        object.__setattr__(self, "slots", slot_tuple)
        object.__setattr__(self, "table", _freeze(table))

    @property
    def arity(self) -> int:
        """r: how many input slots the task reads."""
        return len(self.slots)

    def __call__(self, inputs: Sequence[int]) -> int:
        entry = self.table
        for a in self.slots:
            entry = entry[inputs[a]]
        return entry

    def table_array(self) -> np.ndarray:
        """The table as an integer array of shape ``(d,) * r``."""
        return np.asarray(self.table, dtype=np.int64)

    def to_json(self) -> dict:
        if self.arity == 1:
            return {"name": self.name, "slot": self.slots[0], "table": list(self.table)}
        return {"name": self.name, "slots": list(self.slots), "table": _thaw(self.table)}


def _freeze(table: Any, depth: int = 0) -> Any:
    """Nested tuples from nested sequences or arrays (entries are left for ``TaskSet`` to check).

    Below ``MAX_ARITY + 1`` levels (slots, then the answer) nothing is frozen: a deeper table is
    malformed whatever it holds, and ``TaskSet`` says so without recursing further."""
    if depth > MAX_ARITY + 1:
        return table
    if isinstance(table, np.ndarray):
        return table.tolist() if table.ndim == 0 else tuple(_freeze(x, depth + 1) for x in table)
    if isinstance(table, (str, bytes, dict)) or not isinstance(table, (Sequence, range)):
        return table
    return tuple(_freeze(x, depth + 1) for x in table)


def _thaw(table: Any) -> Any:
    return [_thaw(x) for x in table] if isinstance(table, tuple) else table


def _check_answer(answer: Any, where: str, d: int, length: int, error: type[SuperposeError]) -> Any:
    """A token (``length`` 1) or a list of ``length`` tokens (returned as a tuple)."""
    if length == 1:
        return _require_token(answer, where, d, error)
    if isinstance(answer, (str, bytes, dict)) or not isinstance(answer, (Sequence, np.ndarray)):
        raise error(f"{where}: expected a list of {length} answer tokens (answer_length = {length}), "
                    f"got {_short(answer)}")
    if len(answer) != length:
        raise error(f"{where}: has {len(answer)} answer tokens, expected answer_length = {length}")
    return tuple(_require_token(y, f"{where}[{j}]", d, error) for j, y in enumerate(answer))


def _check_table(table: Any, depth: int, d: int, where: str, answer_length: int = 1) -> Any:
    """Validate a nested table of ``depth`` levels of length ``d`` whose leaves are answers; return nested tuples."""
    if depth == 0:
        return _check_answer(table, where, d, answer_length, TaskSetError)
    if not isinstance(table, tuple):
        level = "a list of tokens" if depth == 1 else f"a list nested {depth} deep"
        raise TaskSetError(f"{where}: expected {level} (one entry per content token), got {table!r:.60}")
    if len(table) != d:
        raise TaskSetError(f"{where}: has length {len(table)}, expected vocab_size = {d}")
    return tuple(_check_table(x, depth - 1, d, f"{where}[{i}]", answer_length) for i, x in enumerate(table))


def _check_task(task: Any, k: int, d: int, s: int, answer_length: int = 1) -> Task:
    if not isinstance(task, Task):
        raise TaskSetError(f"tasks[{k}]: expected a Task, got {type(task).__name__}")
    if len(task.slots) == 0:
        raise TaskSetError(f"tasks[{k}].slots: a task reads at least one slot")
    field_name = f"tasks[{k}].slot" if len(task.slots) == 1 else f"tasks[{k}].slots"
    slots = tuple(_require_int(a, field_name, TaskSetError) for a in task.slots)
    if len(slots) > s:
        raise TaskSetError(f"{field_name}: reads {len(slots)} slots, but examples have only slots = {s}")
    if len(slots) > MAX_ARITY:
        raise TaskSetError(f"{field_name}: reads {len(slots)} slots; a task reads at most {MAX_ARITY} (MAX_ARITY)")
    for a in slots:
        if not 0 <= a < s:
            raise TaskSetError(f"{field_name}: {a} is outside 0..{s - 1} (slots = {s})")
    if len(set(slots)) != len(slots):
        raise TaskSetError(f"{field_name}: {list(slots)} repeats a slot; a task reads distinct slots")
    table = _check_table(task.table, len(slots), d, f"tasks[{k}].table", answer_length)
    return Task(task.name, slots, table)


@dataclass(frozen=True)
class TaskSet:
    """K tasks over content tokens ``0..vocab_size-1`` on examples with ``slots`` inputs.

    Validation runs in the constructor, so a ``TaskSet`` that exists is well formed.

    >>> TaskSet(vocab_size=3, slots=1, tasks=[Task("inc", 0, [1, 2, 0])]).K
    1
    >>> TaskSet(vocab_size=3, slots=1, tasks=[Task("bad", 1, [0, 1, 2])])
    Traceback (most recent call last):
    ...
    superpose.setting.TaskSetError: tasks[0].slot: 1 is outside 0..0 (slots = 1)
    """

    vocab_size: int
    slots: int
    tasks: tuple[Task, ...]
    token_names: tuple[str, ...] | None = None
    answer_length: int = 1   # tokens per answer (A); tables' leaves are lists of A tokens when A > 1

    def __init__(self, vocab_size: int, slots: int, tasks: Sequence[Task],
                 token_names: Sequence[str] | None = None, answer_length: int = 1):
        d = _require_int(vocab_size, "vocab_size", TaskSetError)
        s = _require_int(slots, "slots", TaskSetError)
        A = _require_int(answer_length, "answer_length", TaskSetError)
        if not 1 <= A <= MAX_ANSWER_LENGTH:
            raise TaskSetError(f"answer_length: must lie in 1..{MAX_ANSWER_LENGTH}, got {A}")
        if d < 1:
            raise TaskSetError(f"vocab_size: must be at least 1, got {d}")
        if s < 1:
            raise TaskSetError(f"slots: must be at least 1, got {s}")
        if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence):
            raise TaskSetError(f"tasks: expected a list of tasks, got {type(tasks).__name__}")
        if len(tasks) == 0:
            raise TaskSetError("tasks: K = 0; at least one task is required")
        for k, t in enumerate(tasks):   # sizes first: nothing large is walked before it is refused
            if isinstance(t, Task) and d ** len(t.slots) > MAX_TABLE_ENTRIES:
                raise TaskSetError(f"tasks[{k}].table: d^r = {d}^{len(t.slots)} = {d ** len(t.slots):,} entries "
                                   f"exceeds the limit of {MAX_TABLE_ENTRIES:,} (MAX_TABLE_ENTRIES)")
        total = sum(d ** len(t.slots) for t in tasks if isinstance(t, Task))
        if total > MAX_TABLE_ENTRIES:
            raise TaskSetError(f"tasks: the tables hold sum_k d^r_k = {total:,} entries, more than the limit of "
                               f"{MAX_TABLE_ENTRIES:,} (MAX_TABLE_ENTRIES)")
        checked = [_check_task(task, k, d, s, A) for k, task in enumerate(tasks)]
        if token_names is not None:
            if isinstance(token_names, (str, bytes)) or not isinstance(token_names, Sequence) \
                    or len(token_names) != d or not all(isinstance(n, str) for n in token_names):
                raise TaskSetError(f"token_names: expected a list of {d} strings (one per content token)")
            token_names = tuple(token_names)
        for field_name, names in (("tasks", [t.name for t in checked]), ("token_names", token_names or ())):
            first = {}
            for i, name in enumerate(names):
                if name in first:
                    raise TaskSetError(f"{field_name}: the name {name[:80]!r} is used twice (at {first[name]} and {i})")
                first[name] = i
        object.__setattr__(self, "vocab_size", d)
        object.__setattr__(self, "slots", s)
        object.__setattr__(self, "tasks", tuple(checked))
        object.__setattr__(self, "token_names", token_names)
        object.__setattr__(self, "answer_length", A)

    @property
    def K(self) -> int:
        return len(self.tasks)

    @property
    def slots_read(self) -> tuple[int, ...]:
        """The distinct input slots read by any task, in increasing order (S = len of this)."""
        return tuple(sorted({a for t in self.tasks for a in t.slots}))

    @property
    def example_length(self) -> int:
        """n = s + 1 + A positions per example: s inputs, ARROW, A answer tokens."""
        return self.slots + 1 + self.answer_length

    def answer_of(self, task: Task, inputs: Any) -> tuple[int, ...]:
        """Task's answer on ``inputs`` as a tuple of ``answer_length`` tokens."""
        answer = task(inputs)
        return answer if isinstance(answer, tuple) else (answer,)

    @property
    def bos(self) -> int:
        return self.vocab_size

    @property
    def arrow(self) -> int:
        return self.vocab_size + 1

    @property
    def n_tokens(self) -> int:
        """Size of the model's input vocabulary: d content tokens + BOS + ARROW."""
        return self.vocab_size + 2

    def name_of(self, token: int) -> str:
        """Display name of a token id (content, BOS or ARROW)."""
        if token == self.bos:
            return "BOS"
        if token == self.arrow:
            return "->"
        return self.token_names[token] if self.token_names else str(token)

    def prompt_length(self, n_examples: int, prefix_length: int = 0) -> int:
        """Tokens in a prompt with ``n_examples`` examples and a query with ``prefix_length`` answer
        tokens after its ARROW: ``1 + m n + s + 1 + prefix`` (``(m+1)(s+2)`` for one-token answers)."""
        p = _require_int(prefix_length, "prefix_length", PromptError)
        if not 0 <= p < self.answer_length:
            raise PromptError(f"prefix_length: must lie in 0..{self.answer_length - 1}, got {p}")
        m = _require_int(n_examples, "n_examples", PromptError)
        if m < 0:
            raise PromptError(f"n_examples: must be >= 0, got {m}")
        return 1 + m * self.example_length + self.slots + 1 + p

    def max_prompt_length(self, n_examples: int) -> int:
        """The longest prompt with ``n_examples`` examples: a query with ``answer_length - 1`` answer
        tokens generated (the context a model built for ``n_examples`` examples needs)."""
        return self.prompt_length(n_examples, self.answer_length - 1)

    def to_json(self) -> dict:
        data = {"vocab_size": self.vocab_size, "slots": self.slots, "tasks": [t.to_json() for t in self.tasks]}
        if self.answer_length > 1:
            data["answer_length"] = self.answer_length
        if self.token_names is not None:
            data["token_names"] = list(self.token_names)
        return data

    @classmethod
    def from_json(cls, data: Any) -> "TaskSet":
        """Parse ``{"vocab_size": d, "slots": s, "tasks": [task, ...]}`` (optionally ``"token_names"``).

        A task is ``{"name", "slot": a, "table": [d tokens]}`` or, reading r slots,
        ``{"name", "slots": [a_1, ..., a_r], "table": T}`` with ``T`` nested r deep.
        """
        if not isinstance(data, dict):
            raise TaskSetError(f"task set: expected a JSON object, got {type(data).__name__}")
        _check_keys(data, ("vocab_size", "slots", "tasks", "token_names", "answer_length"),
                    ("vocab_size", "slots", "tasks"),
                    "task set", TaskSetError)
        raw_tasks = data["tasks"]
        if not isinstance(raw_tasks, list):
            raise TaskSetError("tasks: expected a list of task objects")
        tasks = []
        for k, t in enumerate(raw_tasks):
            if not isinstance(t, dict):
                raise TaskSetError(f"tasks[{k}]: expected an object with slot (or slots) and table")
            _check_keys(t, ("name", "slot", "slots", "table"), (), f"tasks[{k}]", TaskSetError)
            if ("slot" in t) == ("slots" in t):
                raise TaskSetError(f"tasks[{k}]: give exactly one of 'slot' (one input) or 'slots' (a list)")
            if "table" not in t:
                raise TaskSetError(f"tasks[{k}]: missing field 'table'")
            if "slots" in t and not isinstance(t["slots"], list):
                raise TaskSetError(f"tasks[{k}].slots: expected a list of slot indices")
            if not isinstance(t["table"], list):
                raise TaskSetError(f"tasks[{k}].table: expected a list of tokens")
            tasks.append(Task(t.get("name", f"task{k}"), t["slot"] if "slot" in t else t["slots"], t["table"]))
        return cls(data["vocab_size"], data["slots"], tasks, data.get("token_names"), data.get("answer_length", 1))


def _token_tuple(tokens: Any, where: str) -> tuple:
    """``tuple(tokens)`` for a list-like of tokens; ``PromptError`` for None, a string, a dict or a set."""
    if isinstance(tokens, (str, bytes, dict, set, frozenset)) or not isinstance(tokens, Iterable):
        raise PromptError(f"{where}: expected a list of tokens, got {type(tokens).__name__}")
    return tuple(tokens)


@dataclass(frozen=True)
class Example:
    """One in-context example: ``s`` input tokens and the answer: a token, or a list of
    ``answer_length`` tokens when the task set's answers are longer than one token."""

    inputs: tuple[int, ...]
    answer: Any

    def __init__(self, inputs: Sequence[int], answer: Any):
        object.__setattr__(self, "inputs", _token_tuple(inputs, "inputs"))
        is_tokens = not isinstance(answer, (str, bytes, dict, set)) and isinstance(answer, (Sequence, np.ndarray))
        object.__setattr__(self, "answer", tuple(answer) if is_tokens else answer)

    @property
    def answer_tokens(self) -> tuple:
        """The answer as a tuple of tokens (one token for one-token answers)."""
        return self.answer if isinstance(self.answer, tuple) else (self.answer,)


@dataclass(frozen=True)
class Prompt:
    """In-context examples followed by a query: its inputs and, for answers of several tokens,
    the answer tokens generated so far (``query_prefix``, fewer than ``answer_length``)."""

    examples: tuple[Example, ...] = field(default_factory=tuple)
    query: tuple[int, ...] = ()
    query_prefix: tuple[int, ...] = ()

    def __init__(self, examples: Sequence[Example], query: Sequence[int], query_prefix: Sequence[int] = ()):
        if isinstance(examples, (str, bytes, dict, set, Example)) or not isinstance(examples, Iterable):
            raise PromptError(f"examples: expected a list of Example, got {type(examples).__name__}")
        examples = tuple(examples)
        for i, example in enumerate(examples):
            if not isinstance(example, Example):
                raise PromptError(f"examples[{i}]: expected an Example(inputs, answer), got {type(example).__name__}")
        object.__setattr__(self, "examples", examples)
        object.__setattr__(self, "query", _token_tuple(query, "query"))
        object.__setattr__(self, "query_prefix", _token_tuple(query_prefix, "query_prefix"))

    @property
    def n_examples(self) -> int:
        return len(self.examples)

    def inputs_at(self, i: int) -> tuple[int, ...]:
        """Inputs read at prediction position ``i`` (example i's, or the query's for i = m)."""
        return self.examples[i].inputs if i < len(self.examples) else self.query

    def to_json(self) -> dict:
        data = {
            "examples": [{"inputs": list(e.inputs), "answer": list(e.answer) if isinstance(e.answer, tuple)
                          else e.answer} for e in self.examples],
            "query": list(self.query),
        }
        if self.query_prefix:
            data["query_prefix"] = list(self.query_prefix)
        return data

    @classmethod
    def from_json(cls, data: Any) -> "Prompt":
        """Parse ``{"examples": [{"inputs": [...], "answer": y}, ...], "query": [...]}`` (answers of several
        tokens are lists; optionally ``"query_prefix": [...]``, answer tokens already generated)."""
        if not isinstance(data, dict):
            raise PromptError(f"prompt: expected a JSON object, got {type(data).__name__}")
        _check_keys(data, ("examples", "query", "query_prefix"), ("examples", "query"), "prompt", PromptError)
        raw = data["examples"]
        if not isinstance(raw, list):
            raise PromptError("examples: expected a list of example objects")
        examples = []
        for i, e in enumerate(raw):
            if not isinstance(e, dict):
                raise PromptError(f"examples[{i}]: expected an object with 'inputs' and 'answer'")
            _check_keys(e, ("inputs", "answer"), ("inputs", "answer"), f"examples[{i}]", PromptError)
            if not isinstance(e["inputs"], list):
                raise PromptError(f"examples[{i}].inputs: expected a list of tokens")
            examples.append(Example(e["inputs"], e["answer"]))
        if not isinstance(data["query"], list):
            raise PromptError("query: expected a list of tokens")
        if not isinstance(data.get("query_prefix", []), list):
            raise PromptError("query_prefix: expected a list of tokens")
        return cls(examples, data["query"], data.get("query_prefix", []))


def validate_prompt(tasks: TaskSet, prompt: Prompt, max_examples: int | None = None) -> None:
    """Raise ``PromptError`` naming the first field of ``prompt`` that does not fit ``tasks``."""
    if not isinstance(prompt, Prompt):
        raise PromptError(f"prompt: expected a Prompt, got {type(prompt).__name__}")
    d, s = tasks.vocab_size, tasks.slots

    def check_inputs(inputs: Sequence[int], where: str) -> None:
        if len(inputs) != s:
            raise PromptError(f"{where}: has {len(inputs)} input tokens, expected slots = {s}")
        for j, x in enumerate(inputs):
            _require_token(x, f"{where}[{j}]", d, PromptError)

    A = tasks.answer_length
    for i, example in enumerate(prompt.examples):
        check_inputs(example.inputs, f"examples[{i}].inputs")
        _check_answer(example.answer, f"examples[{i}].answer", d, A, PromptError)
    check_inputs(prompt.query, "query")
    if len(prompt.query_prefix) >= A:
        raise PromptError(f"query_prefix: has {len(prompt.query_prefix)} tokens; the answer has {A} "
                          f"(answer_length), so at most {A - 1} may be given")
    for j, y in enumerate(prompt.query_prefix):
        _require_token(y, f"query_prefix[{j}]", d, PromptError)
    if max_examples is not None and prompt.n_examples > max_examples:
        raise PromptError(
            f"examples: prompt has {prompt.n_examples} examples "
            f"({tasks.prompt_length(prompt.n_examples, len(prompt.query_prefix))} tokens); the model was built "
            f"for at most {max_examples} ({tasks.max_prompt_length(max_examples)} tokens)"
        )


def tokenize(tasks: TaskSet, prompt: Prompt) -> np.ndarray:
    """Token ids of ``prompt`` (validated against ``tasks``) as an int32 array."""
    validate_prompt(tasks, prompt)
    ids = [tasks.bos]
    for example in prompt.examples:
        ids.extend(example.inputs)
        ids.append(tasks.arrow)
        ids.extend(example.answer_tokens)
    ids.extend(prompt.query)
    ids.append(tasks.arrow)
    ids.extend(prompt.query_prefix)
    return np.asarray(ids, dtype=np.int32)


def prediction_sites(tasks: TaskSet, n_examples: int, prefix_length: int = 0) -> list[tuple[int, int]]:
    """``(example, answer_token)`` of every prediction position, in order: for each example the ARROW
    (answer token 0) and its first ``A - 1`` answer tokens (tokens 1..A-1); for the query (example
    ``n_examples``) the ARROW and its ``prefix_length`` generated tokens. One site per example for
    one-token answers."""
    sites = [(i, j) for i in range(n_examples) for j in range(tasks.answer_length)]
    return sites + [(n_examples, j) for j in range(prefix_length + 1)]


def prediction_positions(tasks: TaskSet, n_examples: int, prefix_length: int = 0) -> np.ndarray:
    """Token positions of the prediction sites (``prediction_sites``), query last: the ARROW of each
    example and the answer tokens that precede another answer token."""
    n = tasks.example_length
    return np.asarray([i * n + tasks.slots + 1 + j for i, j in prediction_sites(tasks, n_examples, prefix_length)],
                      dtype=np.int64)


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def load_json_file(path: str, what: str) -> Any:
    """Read a JSON file, turning I/O and syntax problems into ``InputFileError``.

    A key that occurs twice in one object, nesting too deep for the parser and integers
    too long to convert are errors too (not a silently kept last value or a ``RecursionError``).
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f, object_pairs_hook=_unique_keys)
    except FileNotFoundError:
        raise InputFileError(f"{what}: file not found: {path}") from None
    except json.JSONDecodeError as e:
        where = f"line {e.lineno}, column {e.colno}"
        raise InputFileError(f"{what}: {path} is not valid JSON ({e.msg}; {where})") from None
    except UnicodeDecodeError as e:
        raise InputFileError(f"{what}: {path} is not UTF-8 text (byte {e.start})") from None
    except _DuplicateKey as e:
        raise InputFileError(f"{what}: {path} has the key {str(e.args[0])[:80]!r} twice in one object") from None
    except RecursionError:
        raise InputFileError(f"{what}: {path} is nested too deeply to be a {what} file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(f"{what}: cannot read {path}: {e}") from None
    except (ValueError, MemoryError) as e:  # an integer of more than 4300 digits raises ValueError
        reason = "it holds an integer too long to convert" if "digits" in str(e) else type(e).__name__
        raise InputFileError(f"{what}: {path} cannot be read as JSON ({reason})") from None
