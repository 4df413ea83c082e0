"""The training state a resumed run needs, saved every few steps and restored on resume.

One `TrainingState` callback (the last one `fit` calls) owns it: model variables (weights and
the layers' random-seed state), optimizer variables (slots, iteration count, learning
rate), the running metric totals of the current epoch, every stateful callback's attributes
(early-stopping patience and best value and weights, plateau counters, the best
checkpoint's value), Python's and NumPy's global random state, the position (epoch, step
within it) and the epoch history. It also stops training at the first non-finite loss and,
after a SIGTERM/SIGINT, checkpoints at the end of the current step and exits.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from zoo.training import checkpoint
from zoo.training.signals import SignalFlag

log = logging.getLogger(__name__)

_SCALARS = (bool, int, float, str, type(None))
_NOT_STATE = ("params", "model", "validation_data")
_COST_SHARE = 0.05  # checkpointing should take at most 5 % of training time
AUTO, AUTO_START = "auto", 100  # every_steps=auto: start at 100 steps, then measured


class NonFiniteError(RuntimeError):
    """Training produced a NaN or Inf loss (or weights); nothing non-finite was saved."""

    def __init__(self, what: str, epoch: int, step: int) -> None:
        super().__init__(
            f"non-finite {what} at epoch {epoch} step {step}: training stopped, the last "
            "finite checkpoint is kept; lower the learning rate (optimizer.learning_rate) or "
            "check the data"
        )
        self.epoch = epoch
        self.step = step


def _callback_state(callback: keras.callbacks.Callback, prefix: str, arrays: dict) -> dict:
    """Plain attributes of `callback` as JSON; its arrays (and lists of them) into `arrays`."""
    scalars: dict[str, Any] = {}
    lists: dict[str, int] = {}
    for name, value in vars(callback).items():
        if name in _NOT_STATE or name.startswith("_"):  # public attributes are the state
            continue
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, _SCALARS):
            scalars[name] = value
        elif isinstance(value, np.ndarray):
            arrays[f"{prefix}/{name}"] = value
        elif isinstance(value, list) and value and all(isinstance(v, np.ndarray) for v in value):
            lists[name] = len(value)
            arrays.update({f"{prefix}/{name}/{i}": v for i, v in enumerate(value)})
    return {"class": type(callback).__name__, "scalars": scalars, "lists": lists}


def _restore_callback(callback, saved: dict, prefix: str, arrays: dict) -> None:
    if saved["class"] != type(callback).__name__:
        raise ValueError(
            f"the checkpoint's callback {saved['class']} is a {type(callback).__name__} now: "
            "resume with the same trainer.callbacks"
        )
    for name, value in saved["scalars"].items():
        setattr(callback, name, value)
    for name, count in saved["lists"].items():
        setattr(callback, name, [arrays[f"{prefix}/{name}/{i}"] for i in range(count)])
    for key, value in arrays.items():
        name = key.removeprefix(f"{prefix}/")
        if key.startswith(f"{prefix}/") and "/" not in name:
            setattr(callback, name, value)


def _assign(variables: list, arrays: dict, prefix: str, what: str) -> None:
    saved = sorted(
        (k for k in arrays if k.startswith(f"{prefix}/")), key=lambda k: int(k[len(prefix) + 1 :])
    )
    if len(saved) != len(variables):
        raise ValueError(
            f"the checkpoint holds {len(saved)} {what} variables, the model has "
            f"{len(variables)}: resume with the same model and optimizer config"
        )
    for variable, key in zip(variables, saved, strict=True):
        if tuple(variable.shape) != arrays[key].shape:
            raise ValueError(
                f"{what} variable {variable.path} has shape {tuple(variable.shape)}, the "
                f"checkpoint's has {arrays[key].shape}: resume with the same config"
            )
        variable.assign(arrays[key])


class TrainingState(keras.callbacks.Callback):
    """Checkpoint every `every_steps` optimizer steps and at the end; restore `resume_from`.

    A checkpoint is written once `every_steps` steps have passed since the last one (at
    the end of an epoch rather than before its last step, so that it includes validation),
    after the last epoch, and when a signal arrives; a resumed run redoes fewer than
    `every_steps` steps. `every_steps="auto"` measures what a checkpoint costs against
    the steps between two and keeps that share at or under 5 %.

    Args:
        directory: where the checkpoint files go.
        every_steps: optimizer steps between checkpoints, or "auto".
        keep: checkpoints kept (the newest; older ones go once a new one is complete).
        steps_per_epoch: batches per epoch.
        epochs: epochs of the whole training.
        stateful: the callbacks whose state is saved and restored with the model (None in
            place of one that only the writing process runs).
        flag: the signal flag; a raised flag checkpoints and stops at the end of the step.
        resume_from: the checkpoint to restore, or None for a fresh start.
        before_save: called before each epoch-end checkpoint this process writes (flush
            metric logging).
        after_save: called with the global step after each checkpoint this process writes.
        writes: False on the processes other than 0 of a job of several: they restore the
            checkpoints that process 0 writes, and write none.
    """

    def __init__(
        self,
        directory: Path,
        every_steps: int | str,
        keep: int,
        steps_per_epoch: int,
        epochs: int,
        stateful: list[keras.callbacks.Callback],
        flag: SignalFlag,
        resume_from: checkpoint.Checkpoint | None = None,
        before_save: Callable[[], None] | None = None,
        after_save: Callable[[int], None] | None = None,
        writes: bool = True,
    ) -> None:
        super().__init__()
        self.writes = writes
        if every_steps != AUTO and (
            isinstance(every_steps, bool) or not isinstance(every_steps, int) or every_steps < 1
        ):
            raise ValueError(
                "trainer.checkpoint.every_steps must be auto or a whole number >= 1, got "
                f"{every_steps!r}"
            )
        self.directory = Path(directory)
        self.every_steps = every_steps
        self.interval = AUTO_START if every_steps == AUTO else every_steps
        self.keep = keep
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.stateful = stateful
        self.flag = flag
        self.before_save = before_save
        self.after_save = after_save
        self._resume_from = resume_from
        self._restore_metrics = resume_from is not None and resume_from.meta["epoch_step"] > 0
        meta = resume_from.meta if resume_from else {}
        self.epoch: int = meta.get("epoch", 0)
        self.step: int = meta.get("epoch_step", 0)
        self.history: dict[str, list[float]] = meta.get("history", {})
        self._cost_told = False
        self._since_save = time.perf_counter()
        self._saved_at = self.global_step

    @property
    def global_step(self) -> int:
        return self.epoch * self.steps_per_epoch + self.step

    # ------------------------------------------------------------------ restore
    def on_train_begin(self, logs=None) -> None:
        if self._resume_from is None:
            return
        arrays, meta = self._resume_from.arrays, self._resume_from.meta
        _assign(self.model.variables, arrays, "model", "model")
        optimizer = self.model.optimizer
        if not optimizer.built:  # built at the first step otherwise: too late to restore
            optimizer.build(self.model.trainable_variables)
        _assign(optimizer.variables, arrays, "optimizer", "optimizer")
        for index, (callback, saved) in enumerate(
            zip(self.stateful, meta["callbacks"], strict=True)
        ):
            if callback is not None:
                _restore_callback(callback, saved, f"callback/{index}", arrays)
        random.setstate(
            (meta["python_random"][0], tuple(meta["python_random"][1]), meta["python_random"][2])
        )
        np.random.set_state(("MT19937", arrays["numpy_random/keys"], *meta["numpy_random"]))
        log.info(
            "Resumed from %s: epoch %d, step %d of %d",
            self._resume_from.path,
            self.epoch,
            self.step,
            self.steps_per_epoch,
        )
        self._since_save = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        if self._restore_metrics:  # the running totals of the interrupted epoch
            _assign(self.model.metrics_variables, self._resume_from.arrays, "metrics", "metric")
            self._restore_metrics = False
        else:
            self.epoch, self.step = epoch, 0
        self._resume_from = None

    # --------------------------------------------------------------------- save
    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self.step += 1
        loss = float(np.asarray((logs or {}).get("loss", 0.0)))
        if not math.isfinite(loss):
            raise NonFiniteError(f"loss ({loss})", self.epoch, self.step)
        if self.step == self.steps_per_epoch:
            return  # the epoch-end checkpoint follows validation (and acts on a signal)
        if self.flag.received is not None:
            self.save()
            self.flag.check()
        if self.global_step - self._saved_at >= self.interval:
            self.save()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(float(value))
        self.epoch, self.step = epoch + 1, 0
        due = self.global_step - self._saved_at >= self.interval
        if due or self.epoch == self.epochs or self.flag.received is not None:
            if self.before_save and self.writes:
                self.before_save()
            self.save()
        self.flag.check()

    def save(self) -> Path | None:
        """Write the current state as checkpoint `global_step` (never non-finite weights);
        None where this process writes none."""
        if not self.writes:
            self._saved_at = self.global_step
            return None
        started = time.perf_counter()
        arrays: dict[str, np.ndarray] = {}
        for prefix, variables in (
            ("model", self.model.variables),
            ("optimizer", self.model.optimizer.variables),
            ("metrics", self.model.metrics_variables),
        ):
            arrays.update({f"{prefix}/{i}": np.asarray(v.numpy()) for i, v in enumerate(variables)})
        weights = [arrays[f"model/{i}"] for i, v in enumerate(self.model.variables) if v.trainable]
        if not all(np.isfinite(w).all() for w in weights):
            raise NonFiniteError("weights", self.epoch, self.step)
        callbacks = [
            _callback_state(callback, f"callback/{i}", arrays)
            for i, callback in enumerate(self.stateful)
        ]
        version, python_state, gauss = random.getstate()
        _, keys, position, has_gauss, cached = np.random.get_state()
        arrays["numpy_random/keys"] = keys
        meta = {
            "epoch": self.epoch,
            "epoch_step": self.step,
            "steps_per_epoch": self.steps_per_epoch,
            "history": self.history,
            "callbacks": callbacks,
            "python_random": [version, list(python_state), gauss],
            "numpy_random": [int(position), int(has_gauss), float(cached)],
            "time": time.time(),
        }
        path = checkpoint.write(self.directory, self.global_step, arrays, meta, self.keep)
        self._check_cost(time.perf_counter() - started, self.global_step - self._saved_at)
        self._saved_at = self.global_step
        if self.after_save:
            self.after_save(self.global_step)
        return path

    def _check_cost(self, seconds: float, steps: int) -> None:
        """`every_steps=auto`: the interval that keeps checkpoints at 5 %; else warn once
        when they take more."""
        elapsed = time.perf_counter() - self._since_save - seconds
        self._since_save = time.perf_counter()
        if steps < 1 or elapsed <= 0:
            return
        if self.every_steps == AUTO:
            self.interval = max(1, math.ceil(seconds / (_COST_SHARE * elapsed / steps)))
            if not self._cost_told:
                self._cost_told = True
                log.info(
                    "Checkpoint: %.2f s per save, %.3f s per step: one every %d steps "
                    "(trainer.checkpoint.every_steps=auto)",
                    seconds,
                    elapsed / steps,
                    self.interval,
                )
        elif not self._cost_told and seconds > _COST_SHARE * elapsed:
            self._cost_told = True
            log.warning(
                "Checkpointing took %.2f s, %.0f %% of the %.2f s of training since the last "
                "one; raise trainer.checkpoint.every_steps (now %d) or set it to auto",
                seconds,
                100 * seconds / elapsed,
                elapsed,
                self.every_steps,
            )
