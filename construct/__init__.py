"""Explicit weights of the seven-layer task-superposition transformer.

``build`` assembles the layers ``layer1_find_answers`` .. ``layer7_weight_and_sum``
(one module per layer, the derivation in each docstring) over the named residual
stream of ``residual.make_layout``; ``bound.error_bound`` bounds the output error.
"""

from .bound import ErrorBound, error_bound
from .build import DEFAULT_MAX_EXAMPLES, DEFAULT_SHARPNESS, ModelConfig, SuperposeModel, build
from .residual import d_model_formula

__all__ = ["build", "SuperposeModel", "ModelConfig", "error_bound", "ErrorBound", "d_model_formula",
           "DEFAULT_SHARPNESS", "DEFAULT_MAX_EXAMPLES"]
