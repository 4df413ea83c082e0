"""`train.py` end to end, in a subprocess, on offline data; then the MLflow store is checked."""

import mlflow
import numpy as np
import pytest
from entry_points import list_artifacts, run_script
from mlflow.tracking import MlflowClient

from zoo.training import checkpoint


def _train(tmp_path, *overrides, multirun=False):
    code, output = run_script(tmp_path, "train.py", *overrides, multirun=multirun)
    assert code == 0, output[-3000:]
    return output


def _runs(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("tests")
    return client, client.search_runs([experiment.experiment_id], order_by=["start_time ASC"])


def _check_run(client, run, model, data, epochs, output):
    assert run.info.status == "FINISHED"
    assert run.info.run_id in output  # the console names the run
    assert (run.data.tags["model"], run.data.tags["data"]) == (model, data)
    params = run.data.params
    assert (params["model.name"], params["data.name"]) == (model, data)
    assert params["trainer.epochs"] == str(epochs)
    for metric in ("accuracy", "val_accuracy", "loss", "val_loss"):
        history = client.get_metric_history(run.info.run_id, metric)
        assert len(history) == epochs, metric
    for metric in ("test_accuracy", "test_loss", "parameters"):
        assert metric in run.data.metrics
    assert 0.0 <= run.data.metrics["test_accuracy"] <= 1.0
    artifacts = set(list_artifacts(client, run.info.run_id))
    assert {
        "hydra/config.yaml",
        "hydra/overrides.yaml",
        "plots/learning_curves.png",
        "model_summary.txt",
    } <= artifacts


def _reload_and_predict(run, tmp_path, shape):
    import zoo.layers  # noqa: F401  (registers the custom layer for loading)

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    model = mlflow.keras.load_model(f"runs:/{run.info.run_id}/model")
    probabilities = model.predict(np.zeros((2, *shape), "float32"), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    return model


@pytest.mark.slow
def test_multirun_trains_mlp_cnn_lcn_one_run_each(tmp_path):
    output = _train(tmp_path, "model=mlp,cnn,lcn", "data=digits", "trainer.epochs=2", multirun=True)
    client, runs = _runs(tmp_path)
    assert [r.data.tags["model"] for r in runs] == ["mlp", "cnn", "lcn"]
    for run in runs:
        _check_run(client, run, run.data.tags["model"], "digits", 2, output)
        assert run.data.metrics["test_accuracy"] > 0.5  # 10 digits: chance is 0.1
        loss = [m.value for m in client.get_metric_history(run.info.run_id, "loss")]
        assert loss[-1] < loss[0]  # the default recipe trains
        for baseline in ("logistic_regression", "rbf_svm"):  # beside it, on the same split
            assert run.data.metrics[f"baseline_{baseline}_test_accuracy"] > 0.9
        # FINISHED: not resumable, so its resume checkpoints are gone (keep_finished=false)
        assert checkpoint.list_checkpoints(run.data.tags["zoo.checkpoint_dir"]) == []
    assert output.count("resume checkpoint(s) in") == 3
    model = _reload_and_predict(runs[2], tmp_path, (8, 8, 1))
    assert any(type(layer).__name__ == "LocallyConnected2D" for layer in model.layers)
    signature = mlflow.models.get_model_info(f"runs:/{runs[0].info.run_id}/model").signature
    assert signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 8, 8, 1)


@pytest.mark.slow
def test_deepface_trains_on_orl_faces(tmp_path):
    # No baselines: eigenfaces on 152x152x3 pixels cost half a minute; the digit baselines
    # are checked by the multirun test, the face ones by tests/evaluation.
    output = _train(
        tmp_path,
        "model=deepface",
        "trainer.epochs=1",
        "model.builder.representation_units=256",
        "baselines=none",
    )
    client, (run,) = _runs(tmp_path)
    _check_run(client, run, "deepface", "orl_faces", 1, output)
    assert run.data.params["data.image_size"] == "[152, 152]"
    assert run.data.metrics["parameters"] > 74_000_000  # L4 + L5 + L6 + C1 + C3 alone
    assert "ORL faces: 400 files read: 248 clean, 150 repaired" in output
    _reload_and_predict(run, tmp_path, (152, 152, 3))
