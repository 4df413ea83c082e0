"""One tiny training run (lcn on digits, 2 epochs, registered, SavedModel export) shared by
the tracking tests: loading, serving, the run's metrics and datasets, the UI."""

from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from entry_points import run_script

REGISTERED_NAME = "digits-lcn"
EPOCHS = 2


@dataclass(frozen=True)
class TrainedRun:
    directory: Path
    tracking_uri: str
    run_id: str
    output: str
    epochs: int = EPOCHS

    @property
    def model_uri(self) -> str:
        return f"runs:/{self.run_id}/model"

    @property
    def registered_uri(self) -> str:
        return f"models:/{REGISTERED_NAME}/1"


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> TrainedRun:
    directory = tmp_path_factory.mktemp("trained")
    code, output = run_script(
        directory,
        "train.py",
        "model=lcn",
        "data=digits",
        f"trainer.epochs={EPOCHS}",
        f"tracking.registered_model_name={REGISTERED_NAME}",
        "export.formats=[saved_model]",
    )
    assert code == 0, output[-3000:]
    tracking_uri = f"sqlite:///{directory}/mlflow.db"
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("tests")
    (run,) = client.search_runs([experiment.experiment_id])
    return TrainedRun(directory, tracking_uri, run.info.run_id, output)


@pytest.fixture
def tracking_uri(trained, monkeypatch):
    """The trained run's store as this process's (and its children's) tracking URI."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained.tracking_uri)
    mlflow.set_tracking_uri(trained.tracking_uri)
    yield trained.tracking_uri
    mlflow.set_tracking_uri(None)
