"""MLflow: the one module that knows MLflow exists."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import keras
import matplotlib.pyplot as plt
import mlflow
import mlflow.keras
import numpy as np
from matplotlib.figure import Figure
from mlflow.models import infer_signature
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`; lists stay values (MLflow params are strings)."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


@contextlib.contextmanager
def start_run(
    cfg: DictConfig, run_name: str, tags: dict[str, str], output_dir: Path | None = None
) -> Iterator[mlflow.ActiveRun]:
    """Open an MLflow run in `cfg.tracking.experiment` and record the whole config.

    Params: the resolved config, flattened (`model.builder.hidden_units`, ...). Artifacts:
    Hydra's `config.yaml`, `overrides.yaml` and `hydra.yaml` from `output_dir/.hydra`.
    """
    if cfg.tracking.uri:
        mlflow.set_tracking_uri(cfg.tracking.uri)
    mlflow.set_experiment(cfg.tracking.experiment)
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        log.info(
            "MLflow run %s in experiment %r at %s (browse with: mlflow ui --backend-store-uri %s)",
            run.info.run_id,
            cfg.tracking.experiment,
            mlflow.get_tracking_uri(),
            mlflow.get_tracking_uri(),
        )
        params = flatten(OmegaConf.to_container(cfg, resolve=True))
        mlflow.log_params({key: str(value)[:6000] for key, value in params.items()})
        hydra_dir = output_dir / ".hydra" if output_dir else None
        if hydra_dir and hydra_dir.is_dir():
            mlflow.log_artifacts(str(hydra_dir), artifact_path="hydra")
        yield run


def keras_callback() -> keras.callbacks.Callback:
    """MLflow's own Keras callback: per-epoch metrics of the active run."""
    return mlflow.keras.MlflowCallback()


def set_tags(tags: dict[str, str]) -> None:
    mlflow.set_tags(tags)


def log_metrics(metrics: Mapping[str, float], prefix: str = "") -> None:
    mlflow.log_metrics({f"{prefix}{name}": float(value) for name, value in metrics.items()})


def log_figure(figure: Figure, path: str) -> None:
    mlflow.log_figure(figure, path)
    plt.close(figure)


def log_text(text: str, path: str) -> None:
    mlflow.log_text(text, path)


def log_artifacts(directory: Path, path: str) -> None:
    mlflow.log_artifacts(str(directory), artifact_path=path)


def log_model(
    model: keras.Model, example: np.ndarray, registered_model_name: str | None = None
) -> str:
    """Log `model` as an MLflow Keras model with an input/output signature; returns its URI."""
    signature = infer_signature(example, model.predict(example, verbose=0))
    info = mlflow.keras.log_model(
        model,
        name="model",
        signature=signature,
        registered_model_name=registered_model_name,
        pip_requirements=[f"keras=={keras.__version__}", _tensorflow_requirement()],
    )
    return info.model_uri


def _tensorflow_requirement() -> str:
    import tensorflow as tf

    return f"tensorflow=={tf.__version__}"
