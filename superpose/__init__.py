"""superpose: explicit transformers that in-context learn several tasks in superposition.

>>> from superpose import Task, TaskSet, Prompt, Example, build, predict
>>> tasks = TaskSet(vocab_size=3, slots=1, tasks=[Task("id", 0, [0, 1, 2]), Task("inc", 0, [1, 2, 0])])
>>> prompt = Prompt([Example([0], 0), Example([1], 2)], query=[2])
>>> model = build(tasks, max_examples=4)
>>> model.run(prompt, dtype="float64")[0][-1].round(12).tolist(), predict(tasks, prompt)[-1].tolist()
([0.5, 0.0, 0.5], [0.5, 0.0, 0.5])
"""

from superpose.setting import (
    BuildError,
    Example,
    InputFileError,
    Prompt,
    PromptError,
    SuperposeError,
    Task,
    TaskSet,
    TaskSetError,
    WeightsFileError,
    prediction_positions,
    prediction_sites,
    tokenize,
)
from superpose.construct import ErrorBound, ModelConfig, SuperposeModel, build, d_model_formula, error_bound
from superpose.verify import predict, task_mixture
from superpose.model import run
from superpose.io import load, save
from superpose.files import OutputFileError
from superpose.resources import ResourceError

__all__ = [
    "Task", "TaskSet", "Example", "Prompt", "tokenize", "prediction_positions", "prediction_sites",
    "build", "SuperposeModel", "ModelConfig", "run", "predict", "task_mixture",
    "error_bound", "ErrorBound", "d_model_formula", "save", "load",
    "SuperposeError", "TaskSetError", "PromptError", "BuildError", "WeightsFileError", "InputFileError",
    "OutputFileError", "ResourceError",
]
