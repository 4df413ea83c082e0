"""Many processes on one fresh SQLite store: tables and experiment created once, no errors.

Plain MLflow (3.17) fails this: 8 processes starting together on a fresh `mlflow.db` all
die in the schema migration (alembic "Online migration expected to match one row",
"duplicate column name"). The writers here are forked, so no process pays a new Python
and MLflow start-up (seconds of CPU each), and they start within a millisecond of each other.
"""

import gc
import multiprocessing
import time
from pathlib import Path

import mlflow
import mlflow.store.tracking.sqlalchemy_store  # imported once, before the forks
import pytest

from zoo.tracking import store

JOBS, EPOCHS = 8, 3


def _job(uri: str, start_at: float, index: int) -> None:
    gc.disable()  # the parent's objects (TensorFlow's, in a pytest worker) are not ours to free
    while time.time() < start_at:
        time.sleep(0.0005)
    mlflow.set_tracking_uri(None)  # nothing inherited from the parent's MLflow state
    store.prepare(uri, "tests")
    mlflow.set_experiment("tests")
    with mlflow.start_run(run_name=f"job-{index}"):
        mlflow.log_params({f"param_{i}": i for i in range(30)})
        for epoch in range(EPOCHS):
            mlflow.log_metrics({"loss": 1 / (epoch + 1), "index": index}, step=epoch)
        mlflow.log_text(f"job {index}", "job.txt")


def test_parallel_jobs_on_a_fresh_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    context = multiprocessing.get_context("fork")
    start_at = time.time() + 1.0
    jobs = [context.Process(target=_job, args=(uri, start_at, i)) for i in range(JOBS)]
    # A forked child that garbage-collects an inherited TensorFlow function crashes in TF's
    # runtime, whose threads did not survive the fork (seen when another test of the same
    # worker had built one): the parent's objects go into the permanent generation first.
    gc.collect()
    gc.freeze()
    try:
        for job in jobs:
            job.start()
    finally:
        gc.unfreeze()
    for job in jobs:
        job.join(timeout=120)
    assert [job.exitcode for job in jobs] == [0] * JOBS

    client = mlflow.MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "tests"]
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.info.run_name for run in runs) == sorted(f"job-{i}" for i in range(JOBS))
    for run in runs:
        assert run.info.status == "FINISHED"
        assert len(run.data.params) == 30
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted(m.step for m in history) == list(range(EPOCHS))
        index = int(run.info.run_name.removeprefix("job-"))
        assert run.data.metrics["index"] == index
        path = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="job.txt", tracking_uri=uri
        )
        assert Path(path).read_text() == f"job {index}"


def test_locked_writes_are_retried_and_other_errors_are_not():
    attempts = []

    def locked_twice():
        attempts.append(1)
        if len(attempts) < 3:
            raise mlflow.exceptions.MlflowException("(sqlite3.OperationalError) database is locked")
        return "done"

    assert store.retry_locked(locked_twice, "test") == "done"
    assert len(attempts) == 3

    def broken():
        attempts.append(1)
        raise mlflow.exceptions.MlflowException("no such table: runs")

    attempts.clear()
    with pytest.raises(mlflow.exceptions.MlflowException, match="no such table"):
        store.retry_locked(broken, "test")
    assert len(attempts) == 1


def test_sqlite_path_is_absolute_and_other_stores_have_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert store.sqlite_path("sqlite:///mlflow.db") == tmp_path / "mlflow.db"
    assert store.sqlite_path("http://127.0.0.1:5000") is None
