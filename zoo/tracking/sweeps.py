"""A hyper-parameter search in MLflow: one parent run, each trial a training run under it.

The parent run (`sweep-<study name>`, tag `zoo.sweep`) is opened by the sweeper before the
first trial; every trial's `train.py` is started with `tracking.parent_run_id=<its id>` and
the tag `trial=<number>`, so MLflow's UI nests the trials under it. When the search ends,
the parent gets the best trial's parameters (`best.<key>`), its value (`best_value`), the
run id of the best trial (tag `zoo.best_run_id`) and the number of finished trials.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import mlflow

from zoo.tracking import store

SWEEP, BEST_RUN, TRIAL = "zoo.sweep", "zoo.best_run_id", "trial"


def _now_ms() -> int:
    return int(time.time() * 1000)


def open_sweep(uri: str | None, experiment: str, name: str, tags: Mapping[str, str]) -> str:
    """Create the sweep's parent run (RUNNING, not active in this process); its id."""
    experiment_id = store.prepare(uri, experiment)
    client = mlflow.MlflowClient()
    run = client.create_run(experiment_id, run_name=f"sweep-{name}", tags={SWEEP: name, **tags})
    return run.info.run_id


def trial_run_id(parent_run_id: str, number: int) -> str | None:
    """The id of the training run of trial `number` under the sweep `parent_run_id`."""
    client = mlflow.MlflowClient()
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    found = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.`{TRIAL}` = '{number}'"
        ),
        max_results=1,
    )
    return found[0].info.run_id if found else None


def close_sweep(
    parent_run_id: str,
    best_params: Mapping[str, Any] | None,
    best_value: float | None,
    best_number: int | None,
    trials_done: int,
) -> str | None:
    """Record the best trial on the parent run and end it FINISHED; the best trial's run id."""
    client = mlflow.MlflowClient()
    client.log_metric(parent_run_id, "trials_completed", trials_done)
    best_run = None
    if best_params is not None:
        client.log_batch(
            parent_run_id,
            params=[
                mlflow.entities.Param(f"best.{key}", str(value))
                for key, value in best_params.items()
            ],
            metrics=[mlflow.entities.Metric("best_value", float(best_value), _now_ms(), 0)],
        )
        best_run = trial_run_id(parent_run_id, best_number)
        if best_run:
            client.set_tag(parent_run_id, BEST_RUN, best_run)
    client.set_terminated(parent_run_id, "FINISHED")
    return best_run
