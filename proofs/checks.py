"""Every lemma of ``proofs/theorem.md`` and the check that proves it, in the order of the proof.

``superpose prove`` runs them in this order; each check can also be called on its own,
with the gadget, model or function to check as an argument.
"""

from __future__ import annotations

from typing import Callable

from .bound_lemmas import (check_error_bound_formula, check_error_bound_leak, check_exact_flat_regions,
                           check_positional_leak)
from .exact_run import check_exact_run, check_sharpness_scales_scores
from .gadget_lemmas import (check_conjunction, check_integer_indicator, check_passthrough, check_snap,
                            check_snap_in_place)
from .layer_lemmas import (check_dimensions, check_embedding_and_readout, check_layer1, check_layer2, check_layer3,
                           check_layer4, check_layer5, check_layer6, check_layer7)
from .positional_lemmas import check_gap_lemma, check_look_back_score
from .result import CheckResult
from .softmax_lemmas import check_hard_attention_limit, check_softmax_leakage, check_tally_leak

ALL_CHECKS: tuple[Callable[[], CheckResult], ...] = (
    check_dimensions,
    check_snap,
    check_integer_indicator,
    check_conjunction,
    check_passthrough,
    check_snap_in_place,
    check_gap_lemma,
    check_look_back_score,
    check_softmax_leakage,
    check_hard_attention_limit,
    check_sharpness_scales_scores,
    check_embedding_and_readout,
    check_layer1,
    check_layer2,
    check_layer3,
    check_layer4,
    check_layer5,
    check_layer6,
    check_layer7,
    check_tally_leak,
    check_positional_leak,
    check_exact_flat_regions,
    check_error_bound_leak,
    check_error_bound_formula,
    check_exact_run,
)


def lemma_id(check: Callable) -> str:
    """The short id of a check's lemma (``"G1"``, ``"L3"``, ``"X"``, ...)."""
    return check.lemma_name.split()[0]  # type: ignore[attr-defined]
