"""What a check returns, and the decorator that times it and turns a failed step into a verdict.

A check is a function decorated with ``@lemma(name, statement)``. Its body proves the
statement step by step and calls ``require(condition, why)`` for every step that must
hold; a step that does not hold raises ``ProofFailure``, which the decorator turns into
``CheckResult(proved=False, detail=why)``. Any other exception is a bug in the checker
and propagates.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Callable

from superpose.setting import SuperposeError


class ProofFailure(Exception):
    """A step of a proof does not hold for the weights or formulas it was given."""


class ProofInputError(SuperposeError):
    """A check was called with something it cannot check (wrong type, unsupported size)."""


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one lemma."""

    name: str          # short name of the lemma
    statement: str     # what it states, in one line
    proved: bool
    seconds: float
    detail: str        # the steps that were proved, or the step that failed
    check: str         # where the check lives: "superpose.proofs.<module>::<function>"

    def line(self) -> str:
        """One line for ``superpose prove``: name, statement, verdict, seconds."""
        verdict = "PROVED" if self.proved else "FAILED"
        return f"{verdict:<6}  {self.seconds:6.2f} s  {self.name}: {self.statement}"


def require(condition: bool, why: str) -> None:
    """Raise ``ProofFailure(why)`` unless ``condition`` holds."""
    if not condition:
        raise ProofFailure(why)


def lemma(name: str, statement: str) -> Callable[[Callable[..., str]], Callable[..., CheckResult]]:
    """Make a proof function (returning a detail string) into a check returning ``CheckResult``."""

    def wrap(prove: Callable[..., str]) -> Callable[..., CheckResult]:
        @functools.wraps(prove)
        def check(*args, **kwargs) -> CheckResult:
            start = time.perf_counter()
            try:
                detail, proved = prove(*args, **kwargs), True
            except ProofFailure as failure:
                detail, proved = str(failure), False
            return CheckResult(name, statement, proved, time.perf_counter() - start, detail,
                               f"{prove.__module__}::{prove.__name__}")

        check.lemma_name = name  # type: ignore[attr-defined]
        check.statement = statement  # type: ignore[attr-defined]
        return check

    return wrap
