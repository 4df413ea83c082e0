"""MLflow: the one package that knows MLflow exists.

The names below load on first use (PEP 562), so that `zoo.tracking.store`, `.sweeps` and
`.server` import without Keras and TensorFlow: a sweep's main process and the tracking
server never start TensorFlow.
"""

import importlib
from typing import Any

_EXPORTS = {
    "epochs_logged": "runs",
    "flatten": "runs",
    "keras_callback": "runs",
    "last_run_id": "runs",
    "latest_child_dict": "runs",
    "load_keras_model": "models",
    "log_datasets": "datasets",
    "log_dict": "runs",
    "log_exports": "runs",
    "log_figure": "runs",
    "log_metrics": "runs",
    "log_model": "models",
    "log_params": "runs",
    "log_text": "runs",
    "register_model": "runs",
    "resolve_model": "runs",
    "run_config": "runs",
    "run_metrics": "runs",
    "set_tags": "runs",
    "set_tracking_uri": "runs",
    "start_child_run": "runs",
    "start_run": "runs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
