"""The tracking store made ready for many processes at once: parallel sweeps, several hosts.

MLflow creates an SQLite store's tables on first use, with no lock between processes:
eight `train.py` started together on a fresh `mlflow.db` all fail with alembic's "Online
migration expected to match one row", "duplicate column name" or "table ... already
exists" (measured with mlflow 3.17). Creating an experiment that does not exist yet races
the same way (`RESOURCE_ALREADY_EXISTS` for all but one). `prepare` takes an exclusive
file lock per SQLite file, lets the first process create the tables and the experiment
while the others wait, and then finds both there. Against a tracking server (HTTP) the
server owns its schema; only the experiment creation can race, and the loser reads the
winner's experiment.

"database is locked" after that: MLflow sets SQLite's busy timeout (20 s), but SQLite
answers a lock upgrade that would deadlock at once, without waiting; `retry_locked` retries
those writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import logging
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

log = logging.getLogger(__name__)

T = TypeVar("T")
LOCK_RETRIES = 8
_ALREADY_EXISTS = ErrorCode.Name(RESOURCE_ALREADY_EXISTS)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///...` URI (absolute), or None for other stores."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0]).resolve()


@contextlib.contextmanager
def _initialisation_lock(database: Path | None) -> Iterator[None]:
    """An exclusive lock per SQLite file (in the temporary directory, like MLflow's own
    `db_init_lock-*`, so no stray file lands beside the store); nothing for other stores."""
    if database is None:
        yield
        return
    digest = hashlib.sha256(str(database).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"zoo-mlflow-init-{digest}.lock"
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def is_locked_error(err: Exception) -> bool:
    return "database is locked" in str(err) or "database table is locked" in str(err)


def retry_locked(call: Callable[[], T], what: str) -> T:
    """`call()`, retried with growing random waits while SQLite answers "database is locked"."""
    for attempt in range(LOCK_RETRIES):
        try:
            return call()
        except MlflowException as err:
            if not is_locked_error(err) or attempt == LOCK_RETRIES - 1:
                raise
            wait = random.uniform(0.05, 0.2) * 2**attempt
            log.info("%s: the SQLite store is locked, retrying in %.2f s", what, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _get_or_create_experiment(client: mlflow.MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException as err:
        if err.error_code != _ALREADY_EXISTS:
            raise
        return client.get_experiment_by_name(name).experiment_id  # another process won


def prepare(uri: str | None, experiment: str) -> str:
    """Point MLflow at `uri` (None: MLflow's own default), make sure its tables and
    `experiment` exist, whatever other processes do at the same time; the experiment's id.

    After this, `mlflow.set_experiment(experiment)` only reads.
    """
    if uri:
        mlflow.set_tracking_uri(uri)
    resolved = mlflow.get_tracking_uri()
    database = sqlite_path(resolved)
    if database is not None:  # its slow import (seconds) outside the lock, not one at a time
        importlib.import_module("mlflow.store.tracking.sqlalchemy_store")
    with _initialisation_lock(database):
        client = mlflow.MlflowClient(resolved)  # SQLite: the first one creates the tables
        return retry_locked(
            lambda: _get_or_create_experiment(client, experiment), f"experiment {experiment!r}"
        )
