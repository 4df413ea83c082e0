"""MLflow: the one package that knows MLflow exists."""

from zoo.tracking.datasets import log_datasets
from zoo.tracking.models import load_keras_model, log_model
from zoo.tracking.runs import (
    epochs_logged,
    flatten,
    keras_callback,
    last_run_id,
    log_dict,
    log_exports,
    log_figure,
    log_metrics,
    log_params,
    log_text,
    register_model,
    resolve_model,
    run_config,
    run_metrics,
    set_tags,
    set_tracking_uri,
    start_child_run,
    start_run,
)

__all__ = [
    "epochs_logged",
    "flatten",
    "keras_callback",
    "last_run_id",
    "load_keras_model",
    "log_datasets",
    "log_dict",
    "log_exports",
    "log_figure",
    "log_metrics",
    "log_model",
    "log_params",
    "log_text",
    "register_model",
    "resolve_model",
    "run_config",
    "run_metrics",
    "set_tags",
    "set_tracking_uri",
    "start_child_run",
    "start_run",
]
