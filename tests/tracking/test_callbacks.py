"""Per-epoch metrics: one name per quantity, one value per epoch, equal to Keras' History."""

import keras
import mlflow
import numpy as np

from zoo.tracking.callbacks import EpochMetrics


def test_fit_logs_each_keras_metric_once_per_epoch(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    # MLflow remembers the active experiment across stores: name this store's own.
    mlflow.set_experiment("callbacks")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype("float32"), rng.integers(0, 3, 64)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    with mlflow.start_run() as run:
        history = model.fit(
            x, y, validation_split=0.25, epochs=3, callbacks=[EpochMetrics()], verbose=0
        )
    client = mlflow.MlflowClient()
    logged = client.get_run(run.info.run_id).data.metrics
    assert set(logged) == set(history.history)  # loss, accuracy, val_loss, val_accuracy
    for name, values in history.history.items():
        points = client.get_metric_history(run.info.run_id, name)
        assert [p.step for p in points] == [0, 1, 2], name
        np.testing.assert_allclose([p.value for p in points], values, rtol=1e-6)
    mlflow.set_tracking_uri(None)


def test_training_run_has_no_duplicate_names_or_step_zero_bars(trained, tracking_uri):
    client = mlflow.MlflowClient()
    run = client.get_run(trained.run_id)
    assert not [name for name in run.data.params if name.startswith("optimizer_")]
    assert run.data.params["optimizer.learning_rate"] == "0.002"  # the config's spelling
    assert not [name for name in run.data.metrics if name.startswith("validation_")]
    per_epoch = ("loss", "accuracy", "top5_accuracy", "val_loss", "val_accuracy", "learning_rate")
    for name in per_epoch:
        steps = [p.step for p in client.get_metric_history(trained.run_id, name)]
        assert steps == list(range(trained.epochs)), name


def test_training_log_has_one_line_per_epoch_and_no_cuda_probe(trained):
    # train.py's stdout is a pipe here: Keras' verbose=2, no progress-bar redraws or colours
    assert "\r" not in trained.output and "\x1b[" not in trained.output
    assert [line for line in trained.output.splitlines() if line.startswith("Epoch ")] == [
        f"Epoch {epoch}/{trained.epochs}" for epoch in range(1, trained.epochs + 1)
    ]
    assert "cuInit" not in trained.output
