"""A training recipe from config: optimizer with its learning-rate schedule, and the loss.

Everything is Keras's own: `keras.optimizers.*` (AdamW's decoupled weight decay, SGD's
momentum) from `conf/optimizer/`, `keras.optimizers.schedules.CosineDecay` with linear
warm-up from `conf/schedule/`, and Keras's cross-entropy with label smoothing.
"""

from __future__ import annotations

import logging

import keras
from hydra.utils import instantiate
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def cosine_with_warmup(
    learning_rate: float,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: float = 0.0,
    final_fraction: float = 0.0,
) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up from ~0 to `learning_rate` over `warmup_epochs`, then a cosine decay
    to `final_fraction * learning_rate` at the end of the last epoch.

    A warm-up as long as the run (a one-epoch smoke test of a recipe made for thirty) is
    cut to the first half of the run, with a log line saying so.

    Args:
        learning_rate: the peak rate (the optimizer config's `learning_rate`).
        steps_per_epoch: optimizer steps in one epoch.
        epochs: epochs of the whole run (`trainer.epochs`).
        warmup_epochs: length of the warm-up, in epochs (may be fractional).
        final_fraction: the rate at the end, as a fraction of the peak.
    """
    total = steps_per_epoch * epochs
    warmup = round(warmup_epochs * steps_per_epoch)
    if warmup < 0:
        raise ValueError(f"schedule.warmup_epochs must be >= 0, got {warmup_epochs}")
    if warmup >= total:
        warmup = total // 2
        log.info(
            "schedule.warmup_epochs=%s is not shorter than trainer.epochs=%s: warming up "
            "over the first %d of %d steps instead",
            warmup_epochs,
            epochs,
            warmup,
            total,
        )
    if not 0.0 <= final_fraction <= 1.0:
        raise ValueError(f"schedule.final_fraction must lie in [0, 1], got {final_fraction}")
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=learning_rate / max(warmup, 1) if warmup else learning_rate,
        decay_steps=total - warmup,
        alpha=final_fraction,
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def build_optimizer(cfg: DictConfig, steps_per_epoch: int | None) -> keras.optimizers.Optimizer:
    """`cfg.optimizer`, its learning rate driven by `cfg.schedule` when one is chosen.

    A schedule needs the number of steps per epoch; data sets of unknown length (some
    TFDS builds) must then state it (`trainer.steps_per_epoch`).
    """
    schedule = cfg.get("schedule")
    if not schedule:
        return instantiate(cfg.optimizer)
    if cfg.trainer.callbacks.get("reduce_lr"):
        raise ValueError(
            "a learning-rate schedule and the reduce_lr callback both set the learning rate; "
            "drop one: schedule=null, or ~trainer.callbacks.reduce_lr"
        )
    steps = steps_per_epoch or cfg.trainer.get("steps_per_epoch")
    if not steps:
        raise ValueError(
            "schedule needs the number of steps per epoch, but the training data's length is "
            "unknown; set trainer.steps_per_epoch=<batches per epoch>"
        )
    rate = instantiate(
        schedule,
        learning_rate=cfg.optimizer.learning_rate,
        steps_per_epoch=int(steps),
        epochs=cfg.trainer.epochs,
    )
    return instantiate(cfg.optimizer, learning_rate=rate)


@keras.saving.register_keras_serializable(package="zoo")
class SparseCategoricalCrossentropy(keras.losses.Loss):
    """Keras's cross-entropy on integer labels, with label smoothing.

    Keras's own `SparseCategoricalCrossentropy` has no `label_smoothing` (its dense twin
    has); this one one-hot encodes the labels and calls the dense one, so labels stay
    integers for the metrics and the pipeline.

    Args:
        label_smoothing: the weight moved from the true class to a uniform distribution.
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f"trainer.label_smoothing must lie in [0, 1), got {label_smoothing!r}"
            )
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        classes = keras.ops.shape(y_pred)[-1]
        labels = keras.ops.reshape(y_true, (-1,))
        labels = keras.ops.one_hot(keras.ops.cast(labels, "int32"), classes)
        return keras.losses.categorical_crossentropy(
            labels, y_pred, label_smoothing=self.label_smoothing
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def build_loss(label_smoothing: float = 0.0, weighted: bool = False) -> keras.losses.Loss:
    """Keras's own sparse cross-entropy, or the smoothed one when `label_smoothing` > 0.

    `weighted`: average over the sample weights (`mean_with_sample_weight`) instead of the
    batch size, so zero-weight padding (`zoo.data.pipeline.pad_batches`) changes nothing.
    """
    reduction = "mean_with_sample_weight" if weighted else "sum_over_batch_size"
    if label_smoothing:
        return SparseCategoricalCrossentropy(label_smoothing, reduction=reduction)
    return keras.losses.SparseCategoricalCrossentropy(reduction=reduction)


class LearningRateLog(keras.callbacks.Callback):
    """Puts the optimizer's current learning rate into each epoch's logs (`learning_rate`),
    so the tracking callback records the schedule as it does every other per-epoch value
    (Keras's own `ReduceLROnPlateau` does the same; a schedule alone does not)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            rate = self.model.optimizer.learning_rate
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))
