"""Training runs' lifecycle in MLflow: open or resume, and never RUNNING forever.

MLflow marks a run FAILED when its process raises, but a process killed with SIGKILL (OOM
killer, preemption, a reboot) leaves its run RUNNING for ever. Every training run records
which process owns it (host, pid and the process's start time, so a reused pid is not
mistaken for the owner) and refreshes a heartbeat at each checkpoint. When `train.py`
starts against a store, runs whose process is gone (same host) or whose heartbeat is older
than `stale_after_s` (other hosts) are marked KILLED, with the reason and the last
checkpointed step as tags.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
from mlflow.entities import Run
from omegaconf import DictConfig

from zoo.tracking import store
from zoo.tracking.runs import start_run

log = logging.getLogger(__name__)

HOST, PID, STARTED, HEARTBEAT = "zoo.host", "zoo.pid", "zoo.process_started", "zoo.heartbeat"
CONFIG_DIGEST, CHECKPOINT_DIR, OUTPUT_DIR = (
    "zoo.config_digest",
    "zoo.checkpoint_dir",
    "zoo.output_dir",
)
KILLED_REASON, LAST_STEP = "zoo.killed_reason", "zoo.last_checkpoint_step"
HEARTBEAT_EVERY_S = 30.0


def _process_started(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_tags() -> dict[str, str]:
    """Tags naming this process as the owner of the run."""
    pid = os.getpid()
    return {
        HOST: socket.gethostname(),
        PID: str(pid),
        STARTED: _process_started(pid) or "",
        HEARTBEAT: str(time.time()),
    }


def _death(run: Run, stale_after_s: float) -> str | None:
    """Why the RUNNING `run`'s process is known to be dead, or None if it may be alive."""
    tags = run.data.tags
    if PID not in tags:
        return None  # not a training run of ours: nothing to tell
    if tags.get(HOST) == socket.gethostname():
        started = _process_started(int(tags[PID]))
        if started is None or (tags.get(STARTED) and started != tags[STARTED]):
            return f"process {tags[PID]} on {tags[HOST]} is gone"
        return None
    age = time.time() - float(tags.get(HEARTBEAT, 0))
    if age > stale_after_s:
        return f"no heartbeat from {tags.get(HOST)} for {age:.0f} s (> {stale_after_s:.0f} s)"
    return None


def mark_killed(run: Run, reason: str, last_step: int | None) -> None:
    client = mlflow.MlflowClient()
    client.set_tag(run.info.run_id, KILLED_REASON, reason)
    client.set_tag(run.info.run_id, LAST_STEP, "none" if last_step is None else str(last_step))
    heartbeat = float(run.data.tags.get(HEARTBEAT, time.time()))
    client.set_terminated(run.info.run_id, "KILLED", end_time=int(heartbeat * 1000))
    log.warning(
        "Marked run %s KILLED: %s; last checkpointed step: %s",
        run.info.run_id,
        reason,
        last_step,
    )


def reap_dead_runs(last_step: Callable[[str], int | None], stale_after_s: float) -> list[str]:
    """Mark every RUNNING run of the store whose process is dead KILLED; their ids.

    `last_step(checkpoint_dir)` gives the last checkpointed step found in a run's folder.
    """
    running = mlflow.search_runs(
        search_all_experiments=True,
        filter_string="attributes.status = 'RUNNING'",
        output_format="list",
    )
    reaped = []
    for run in running:
        reason = _death(run, stale_after_s)
        if reason:
            directory = run.data.tags.get(CHECKPOINT_DIR)
            mark_killed(run, reason, last_step(directory) if directory else None)
            reaped.append(run.info.run_id)
    return reaped


def find_run(experiment: str, digest: str, status: str) -> Run | None:
    """The newest run of `experiment` with `status` trained with the config of `digest`."""
    found = mlflow.search_runs(
        experiment_names=[experiment],
        filter_string=f"attributes.status = '{status}' and tags.`{CONFIG_DIGEST}` = '{digest}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return found[0] if found else None


def find_resumable(experiment: str, digest: str) -> str | None:
    """The newest KILLED run of `experiment` trained with the config of `digest`, or None."""
    run = find_run(experiment, digest, "KILLED")
    return run.info.run_id if run else None


def resumable_run(run_id: str, digest: str, stale_after_s: float) -> Run:
    """The run `resume=<run_id>` names, checked: ours, not finished, not alive, same config."""
    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except mlflow.exceptions.MlflowException as err:
        raise ValueError(
            f"resume={run_id!r} is not a run in the tracking store {mlflow.get_tracking_uri()} "
            f"({str(err).splitlines()[0]}); use resume=auto or the id train.py printed"
        ) from None
    tags, status = run.data.tags, run.info.status
    if CHECKPOINT_DIR not in tags:
        raise ValueError(f"resume={run_id!r} is not a training run (no {CHECKPOINT_DIR} tag)")
    if status == "FINISHED":
        raise ValueError(f"resume={run_id!r}: the run FINISHED, there is nothing to resume")
    if status == "RUNNING":
        reason = _death(run, stale_after_s)
        if reason is None:
            raise ValueError(
                f"resume={run_id!r}: the run is still RUNNING in process {tags.get(PID)} on "
                f"{tags.get(HOST)}; stop it first (kill -TERM {tags.get(PID)})"
            )
    if tags.get(CONFIG_DIGEST) != digest:
        raise ValueError(
            f"resume={run_id!r} was trained with another config; resume it with the same "
            "overrides (the command train.py printed when the run started)"
        )
    return run


@contextlib.contextmanager
def open_run(
    cfg: DictConfig,
    run_name: str,
    tags: dict[str, str],
    output_dir: Path,
    resume: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """A new run (config as params, Hydra files as artifacts) or, with `resume`, that run
    again: same params, no new ones, metrics continue where they stopped."""
    if resume is None:
        with (
            start_run(cfg, run_name, {**tags, **process_tags()}, output_dir) as run,
            beating(run.info.run_id),
        ):
            yield run
        return
    with mlflow.start_run(run_id=resume) as run:
        mlflow.set_tags(process_tags())
        log.info("Resuming MLflow run %s at %s", resume, mlflow.get_tracking_uri())
        with beating(run.info.run_id):
            yield run


def end_run(status: str, tags: dict[str, str]) -> None:
    """End the active run with `status` (KILLED, FAILED) and `tags`."""
    mlflow.set_tags(tags)
    mlflow.end_run(status)


@contextlib.contextmanager
def beating(run_id: str, every_s: float = HEARTBEAT_EVERY_S) -> Iterator[None]:
    """Refresh `run_id`'s heartbeat every `every_s` from a thread while the process lives,
    whatever it is doing (listing a million files, a long epoch, evaluation, baselines), so
    that no other host takes a live run for dead."""
    stop = threading.Event()
    client = mlflow.MlflowClient()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                client.set_tag(run_id, HEARTBEAT, str(time.time()))
            except Exception as err:  # a store that is down for a moment: try again later
                log.warning("Heartbeat of run %s not written: %s", run_id, err)

    thread = threading.Thread(target=beat, name="zoo-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def flush() -> None:
    """Write out metrics logged asynchronously, so a checkpoint never runs ahead of them."""
    mlflow.flush_async_logging()


def logged_metrics() -> set[str]:
    """Names of the metrics the active run holds already."""
    run = mlflow.active_run()
    return set(mlflow.MlflowClient().get_run(run.info.run_id).data.metrics)


def connect(cfg: DictConfig) -> None:
    """Point MLflow at `cfg.tracking.uri` (when set) and make its tables and
    `cfg.tracking.experiment` exist, safely with other jobs starting at the same time."""
    store.prepare(cfg.tracking.uri, cfg.tracking.experiment)
