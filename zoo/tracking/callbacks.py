"""Per-epoch metrics of `model.fit`, logged to the active MLflow run."""

from __future__ import annotations

from typing import Any

import keras
import mlflow


class EpochMetrics(keras.callbacks.Callback):
    """One value per metric per epoch: `loss`, `val_loss`, ..., at step = the epoch index.

    Replaces `mlflow.keras.MlflowCallback`, which also logs the optimizer config as
    `optimizer_*` params (the config is logged already, with its own spellings and without
    float32 noise) and logs every per-epoch validation pass a second time as
    `validation_*` at step 0. Keras' logs already hold each epoch's train and `val_`
    metrics (and `learning_rate`), so this logs exactly those, under Keras' names; the
    step is Keras' 0-based epoch index, which stays right when training resumes at
    `initial_epoch`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._logged_epochs = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        # A resumed run can redo an epoch whose metrics are in the store already (its newest
        # checkpoint was damaged, or the process died between logging and checkpointing);
        # the redone epoch gives the same values, so they are not logged twice.
        run_id = mlflow.active_run().info.run_id
        history = mlflow.MlflowClient().get_metric_history(run_id, "loss")
        self._logged_epochs = 1 + max((metric.step for metric in history), default=-1)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs and epoch >= self._logged_epochs:
            mlflow.log_metrics({name: float(value) for name, value in logs.items()}, step=epoch)
