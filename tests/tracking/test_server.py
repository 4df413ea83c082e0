"""The team tracking server for real: PostgreSQL (a throw-away cluster on a loopback port),
`mlflow server --app-name basic-auth` with served artifacts, an Optuna sweep of 4 parallel
training jobs (joblib) that lands completely although the server restarts in the middle."""

import base64
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pytest
from entry_points import ROOT
from mlflow.server import get_app_client
from omegaconf import OmegaConf

from zoo.tracking.server import TrackingServer

ADMIN, TRAINER = ("admin", "admin-password-1"), ("alice", "alice-password-1")
READER, SWEEPER = ("bob", "bob-password-1"), ("carol", "carol-password-1")
TRIALS, EPOCHS = 4, 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    # Not under pytest's tmp_path: its parents are root-only, and PostgreSQL runs as `postgres`.
    directory = Path(tempfile.mkdtemp(prefix="zoo-server-test-"))
    directory.chmod(0o711)
    team = TrackingServer(
        directory, port=free_port(), db_port=free_port(), workers=1, admin_password=ADMIN[1]
    )
    try:
        team.start(log_file=directory / "mlflow-server.log")
        yield team
    finally:
        team.stop()
        shutil.rmtree(directory, ignore_errors=True)


def as_user(monkeypatch, user: tuple[str, str]) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", user[1])


def status_of(url: str, user: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if user:
        token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_credentials_and_permissions(server, monkeypatch):
    search = f"{server.url}/api/2.0/mlflow/experiments/search?max_results=5"
    assert status_of(search) == 401
    assert status_of(search, ("admin", "wrong")) == 401
    assert status_of(search, ADMIN) == 200

    as_user(monkeypatch, ADMIN)
    users = get_app_client("basic-auth", tracking_uri=server.url)
    users.create_user(*TRAINER)
    users.create_user(*READER)

    as_user(monkeypatch, TRAINER)
    trainer = mlflow.MlflowClient(server.url)
    experiment_id = trainer.create_experiment("alice-private")
    run = trainer.create_run(experiment_id)
    trainer.log_metric(run.info.run_id, "loss", 1.0)

    as_user(monkeypatch, READER)  # default permission READ: reads, cannot write
    reader = mlflow.MlflowClient(server.url)
    assert reader.get_run(run.info.run_id).data.metrics == {"loss": 1.0}
    with pytest.raises(mlflow.exceptions.MlflowException) as denied:
        reader.log_metric(run.info.run_id, "loss", 2.0)
    assert denied.value.get_http_status_code() == 403
    with pytest.raises(mlflow.exceptions.MlflowException) as denied:
        reader.create_run(experiment_id)
    assert denied.value.get_http_status_code() == 403


def _restart_once_a_trial_runs(server, experiment: str, restarted: threading.Event) -> None:
    """Restart the server as soon as a trial's run exists (training under way)."""
    client = mlflow.MlflowClient(server.url)
    while not restarted.is_set():
        found = client.get_experiment_by_name(experiment)
        if found and client.search_runs([found.experiment_id], "tags.trial != ''"):
            server.stop_mlflow()
            server.start_mlflow(server.directory / "mlflow-server.log")
            server.wait_ready()
            restarted.set()
            return
        threading.Event().wait(0.5)


def _trial_log(run, server, sweep_output: str) -> str:
    """What a trial that did not finish printed, the sweep's last lines (where a trial's error
    is reported), and the server's last lines."""
    log = Path(run.data.tags.get("zoo.output_dir", "")) / "train.log"
    own = log.read_text()[-3000:] if log.is_file() else f"(no {log})"
    served = server.directory / "mlflow-server.log"
    return (
        f"{own}\n--- sweep ---\n"
        + sweep_output[-3000:]
        + "\n--- server ---\n"
        + (served.read_text()[-1500:] if served.is_file() else "")
    )


def test_optuna_sweep_of_parallel_jobs_survives_a_server_restart(server, monkeypatch, tmp_path):
    as_user(monkeypatch, ADMIN)
    get_app_client("basic-auth", tracking_uri=server.url).create_user(*SWEEPER)
    as_user(monkeypatch, SWEEPER)  # a plain user; the experiment she creates is hers
    experiment = "team-sweep"
    restarted = threading.Event()
    watcher = threading.Thread(
        target=_restart_once_a_trial_runs, args=(server, experiment, restarted), daemon=True
    )
    watcher.start()
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        "hydra/sweeper=optuna",
        "hydra/launcher=joblib",
        f"hydra.sweeper.n_trials={TRIALS}",
        f"hydra.sweeper.n_jobs={TRIALS}",
        f"hydra.launcher.n_jobs={TRIALS}",
        f"tracking.uri={server.url}",
        f"tracking.experiment={experiment}",
        "model=mlp",
        "data=digits",
        f"trainer.epochs={EPOCHS}",
        "trainer.checkpoint.best=false",
        "tracking.log_model=false",  # CI time; logged models are tested in test_logged_models
        "baselines=none",
    ]
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=os.environ
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    watcher.join(timeout=60)
    assert restarted.is_set(), "the sweep ended before the server could be restarted"

    client = mlflow.MlflowClient(server.url)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id])
    (parent,) = [run for run in runs if "zoo.sweep" in run.data.tags]
    trials = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(int(run.data.tags["trial"]) for run in trials) == list(range(TRIALS))
    best = {}
    for run in trials:
        assert run.info.status == "FINISHED", _trial_log(run, server, result.stdout + result.stderr)
        for name in ("loss", "val_loss", "val_accuracy", "learning_rate"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, name)]
            assert steps == list(range(EPOCHS)), (name, steps)
        assert {"test_accuracy", "parameters"} <= set(run.data.metrics)
        assert 1e-4 <= float(run.data.params["optimizer.learning_rate"]) <= 1e-2
        artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
        assert {"hydra", "model_summary.txt", "plots"} <= artifacts  # served by the server
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        best[run.info.run_id] = max(m.value for m in history)
    stored = list((server.directory / "artifacts").rglob("model_summary.txt"))
    assert len(stored) == TRIALS  # on the server's disk, not the client's
    assert not any(tmp_path.glob("mlruns"))
    best_run = max(best, key=best.get)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["zoo.best_run_id"] == best_run
    assert parent.data.metrics["best_value"] == pytest.approx(best[best_run])
    (results_file,) = tmp_path.glob("multirun/*/*/optimization_results.yaml")
    results = OmegaConf.load(results_file)
    assert results.best_run_id == best_run
    assert results.trials_completed == TRIALS
