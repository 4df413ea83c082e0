"""MLflow runs: start, log, resolve and load what the zoo records."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import keras
import matplotlib.pyplot as plt
import mlflow
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from zoo.tracking.callbacks import EpochMetrics

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

    Tags: `tags`, `cfg.tracking.tags`, and `mlflow.parentRunId` from
    `cfg.tracking.parent_run_id`. Params: the resolved config, flattened
    (`model.builder.hidden_units`, ...). Artifacts:
    Hydra's `config.yaml`, `overrides.yaml` and `hydra.yaml` from `output_dir/.hydra`.
    """
    if cfg.tracking.uri:
        mlflow.set_tracking_uri(cfg.tracking.uri)
    mlflow.set_experiment(cfg.tracking.experiment)
    tags = {**tags, **{str(k): str(v) for k, v in (cfg.tracking.get("tags") or {}).items()}}
    if cfg.tracking.get("parent_run_id"):  # a sweep's trial: nested under the sweep's run
        tags["mlflow.parentRunId"] = cfg.tracking.parent_run_id
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
    """The callback that logs `fit`'s per-epoch metrics to the active run."""
    return EpochMetrics()


def set_tags(tags: dict[str, str]) -> None:
    mlflow.set_tags(tags)


def log_metrics(metrics: Mapping[str, float], prefix: str = "") -> None:
    mlflow.log_metrics({f"{prefix}{name}": float(value) for name, value in metrics.items()})


def log_figure(figure: Figure, path: str) -> None:
    mlflow.log_figure(figure, path)
    plt.close(figure)


def log_text(text: str, path: str) -> None:
    mlflow.log_text(text, path)


def log_exports(directory: Path, results: Mapping[str, Any]) -> None:
    """Exported files under the run's `exports/<format>/`, and each format's max difference."""
    mlflow.log_artifacts(str(directory), artifact_path="exports")
    log_metrics(
        {f"export_{fmt}_max_abs_diff": result.max_abs_diff for fmt, result in results.items()}
    )


# ------------------------------------------------------------------ evaluation side
def set_tracking_uri(uri: str | None) -> None:
    if uri:
        mlflow.set_tracking_uri(uri)


def _get_run(run_id: str) -> mlflow.entities.Run:
    try:
        return mlflow.MlflowClient().get_run(run_id)
    except mlflow.exceptions.MlflowException as err:
        raise ValueError(
            f"run_id={run_id!r} is not a run in the tracking store {mlflow.get_tracking_uri()} "
            f"({str(err).splitlines()[0]}). List runs with `mlflow runs list --experiment-id "
            "<id>` or `mlflow ui`; set tracking.uri if the runs live elsewhere."
        ) from None


def resolve_model(run_id: str | None, model_uri: str | None) -> tuple[str, str | None]:
    """`(model URI, id of the run that produced it or None)` from a run id or a model URI.

    `runs:/<id>/<path>` gives its run; `models:/<name>/<version>` (or `@alias`) is looked
    up in the registry; other URIs (file paths, ...) have no run.
    """
    if run_id:
        _get_run(run_id)
        return f"runs:/{run_id}/model", run_id
    if model_uri.startswith("runs:/"):
        source = model_uri.removeprefix("runs:/").split("/", 1)[0]
        _get_run(source)
        return model_uri, source
    if model_uri.startswith("models:/"):
        client = mlflow.MlflowClient()
        reference = model_uri.removeprefix("models:/")
        try:
            if "@" in reference:
                name, alias = reference.split("@", 1)
                version = client.get_model_version_by_alias(name, alias)
            else:
                name, number = reference.rsplit("/", 1)
                version = client.get_model_version(name, number)
        except (ValueError, mlflow.exceptions.MlflowException) as err:
            raise ValueError(
                f"model_uri={model_uri!r} is not in the model registry at "
                f"{mlflow.get_tracking_uri()} ({str(err).splitlines()[0]}); use "
                "models:/<name>/<version> of a registered model, or run_id=<id>."
            ) from None
        return model_uri, version.run_id
    return model_uri, None


def run_config(run_id: str) -> DictConfig | None:
    """The Hydra config (`hydra/config.yaml` artifact) the run was trained with, if logged."""
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="hydra/config.yaml")
    except (OSError, mlflow.exceptions.MlflowException):
        return None
    return OmegaConf.load(path)


def latest_child_dict(parent_run_id: str, artifact_path: str) -> tuple[str, dict] | None:
    """`(child run id, contents)` of the JSON artifact `artifact_path` of the newest run
    nested under `parent_run_id` that has it (e.g. its latest evaluation), or None."""
    experiment_id = _get_run(parent_run_id).info.experiment_id
    children = mlflow.MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
        order_by=["attributes.start_time DESC"],
    )
    for child in children:
        try:
            data = mlflow.artifacts.load_dict(f"runs:/{child.info.run_id}/{artifact_path}")
        except (OSError, mlflow.exceptions.MlflowException):
            continue
        return child.info.run_id, data
    return None


@contextlib.contextmanager
def start_child_run(
    parent_run_id: str | None, experiment: str, run_name: str, tags: dict[str, str]
) -> Iterator[mlflow.ActiveRun]:
    """A run nested under `parent_run_id` (in its experiment), or a top-level run in
    `experiment` when there is no parent (e.g. a model from a `.keras` file).

    The parent is linked by the `mlflow.parentRunId` tag (what the UI nests by) and never
    re-opened: a finished training run's status and times do not change, whatever
    happens to its evaluation.
    """
    if parent_run_id:
        experiment_id = _get_run(parent_run_id).info.experiment_id  # the child lives beside it
        child_tags = {**tags, "mlflow.parentRunId": parent_run_id}
        with mlflow.start_run(
            run_name=run_name, tags=child_tags, experiment_id=experiment_id
        ) as run:
            yield run
        return
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        yield run


def log_params(params: Mapping[str, Any]) -> None:
    mlflow.log_params({key: str(value)[:6000] for key, value in params.items()})


def log_dict(data: Mapping[str, Any], path: str) -> None:
    mlflow.log_dict(dict(data), path)


def register_model(model_uri: str, name: str) -> str:
    """Register `model_uri` under `name`; returns `models:/<name>/<version>`."""
    version = mlflow.register_model(model_uri, name)
    return f"models:/{name}/{version.version}"


def last_run_id() -> str:
    run = mlflow.last_active_run()
    if run is None:
        raise RuntimeError("no MLflow run has finished in this process")
    return run.info.run_id


def run_metrics(run_id: str) -> dict[str, float]:
    return dict(_get_run(run_id).data.metrics)


def epochs_logged(run_id: str, client: mlflow.MlflowClient | None = None) -> int:
    """How many training epochs the run logged (one `loss` value per epoch)."""
    return len((client or mlflow.MlflowClient()).get_metric_history(run_id, "loss"))
