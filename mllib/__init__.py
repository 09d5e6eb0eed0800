"""mllib: train, evaluate and serve a model.py from one CLI, locally, in Docker or on GPU agents.

What model code uses: Param, log_metric, log_metrics, log_artifact, artifact_dir, create,
BadRequest (predict() refusing a request).
What notebooks and scripts call: train, evaluate, predict, rerun, tune (the CLI's own functions).
"""

from mllib._version import __version__
from mllib.errors import BadRequest, MllibError
from mllib.params import Param, create
from mllib.tracking import artifact_dir, current_run, log_artifact, log_metric, log_metrics

__all__ = [
    "BadRequest",
    "MllibError",
    "Param",
    "__version__",
    "artifact_dir",
    "create",
    "current_run",
    "evaluate",
    "log_artifact",
    "log_metric",
    "log_metrics",
    "predict",
    "rerun",
    "train",
    "tune",
]

_API = {"train", "evaluate", "predict", "rerun"}


def __getattr__(name: str):
    # The run API pulls in the registry and runtimes; load it only when a notebook asks for it.
    if name in _API:
        from mllib.runs import api

        return getattr(api, name)
    if name == "tune":  # Optuna is imported when a study starts, not before
        from mllib.tuning.api import tune

        return tune
    raise AttributeError(f"module 'mllib' has no attribute {name!r}")
