"""A job that exits from a signal handler (submitit requeueing it at its SLURM time limit)
leaves a KILLED run, which the requeued job's `resume=auto` finds."""

import mlflow
import pytest
from entry_points import ROOT
from hydra import compose, initialize_config_dir

from zoo.tracking import lifecycle
from zoo.training import resume


def test_system_exit_marks_the_run_killed_and_resumable(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["model=mlp", "data=digits", f"tracking.uri={uri}", "tracking.experiment=t"],
        )
    previous = mlflow.get_tracking_uri()
    try:
        with (
            pytest.raises(SystemExit),
            resume.session(cfg, "mlp-digits", {}, tmp_path) as session,
        ):
            raise SystemExit(-1)  # what submitit's SIGUSR2 handler does after requeueing
        run = mlflow.MlflowClient(uri).get_run(session.run_id)
        assert run.info.status == "KILLED"
        assert run.data.tags["interrupted"] == "SystemExit(-1)"
        assert lifecycle.find_resumable("t", resume.config_digest(cfg)) == session.run_id
    finally:
        mlflow.set_tracking_uri(previous)
