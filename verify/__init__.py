"""Checks of the construction that do not trust it: the analytic prediction (written
independently of ``superpose.construct``), an independent NumPy executor, and
Hypothesis strategies for fuzzing task mixtures."""

from .analytic import consistent_tasks, output_distribution, predict, task_mixture

__all__ = ["predict", "task_mixture", "consistent_tasks", "output_distribution"]
