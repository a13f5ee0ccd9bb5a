"""Checks of the construction that do not trust it.

``analytic`` (the prediction, written independently of ``superpose.construct``),
``numpy_forward`` (an independent executor), ``strategies`` (Hypothesis strategies),
``compare`` (the model against the prediction, per prediction position),
``sweep``/``sampling``/``batched`` (sharded sweeps), ``calibration`` and ``plots``,
``export``/``lens`` (safetensors and TransformerLens). The benchmark program lives in
the repository's ``benchmarks/``."""

from .analytic import consistent_tasks, output_distribution, predict, task_mixture
from .compare import Comparison, compare

__all__ = ["predict", "task_mixture", "consistent_tasks", "output_distribution", "compare", "Comparison"]
