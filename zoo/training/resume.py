"""Resuming: which run to continue, the command that resumes it, and `fit` in phases.

A run resumed in the middle of epoch `e` at step `k` trains in two `fit` calls: the rest of
epoch `e` (its last `steps_per_epoch - k` batches), then epochs `e + 1 ...`. To the
callbacks this is one training: `PhasedCallbacks` calls their `on_train_begin` only in the
first phase and their `on_train_end` only in the last, so early stopping, plateau counters
and the best checkpoint carry on as if training had never stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
from omegaconf import DictConfig, OmegaConf

from zoo.data.spec import DataSplits
from zoo.tracking import lifecycle
from zoo.training import checkpoint, distribution, signals
from zoo.training.state import NonFiniteError

log = logging.getLogger(__name__)

AUTO = "auto"
_NOT_CONFIG = ("resume",)  # keys that may differ between a run and its resumption


def config_digest(cfg: DictConfig) -> str:
    """sha256 of the resolved config without `resume`: the same training, the same digest."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in _NOT_CONFIG:
        plain.pop(key, None)
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()


def resume_command(run_id: str, argv: list[str] | None = None) -> str:
    """This process's command line with `resume=<run_id>` in place of any `resume=...`.

    In `evaluate.py experiment=compare...` (a comparison trains its members in-process), the
    same command line: run again, the comparison resumes its KILLED member (`compare.reuse`).
    """
    argv = list(sys.argv if argv is None else argv)
    if Path(argv[0]).name == "evaluate.py":
        return shlex.join(["python", *argv])
    kept = [arg for arg in argv[1:] if not arg.lstrip("+~").startswith("resume=")]
    return shlex.join(["python", argv[0], *kept, f"resume={run_id}"])


@dataclass(frozen=True)
class Phase:
    """One `fit` call: epochs `[first, last)`, the first `skip` batches of `first` done."""

    first: int
    last: int
    skip: int


def phases(epoch: int, step: int, epochs: int) -> list[Phase]:
    """The `fit` calls that train from (`epoch`, `step`) to the end of epoch `epochs - 1`."""
    if step == 0:
        return [Phase(epoch, epochs, 0)] if epoch < epochs else []
    rest = [Phase(epoch + 1, epochs, 0)] if epoch + 1 < epochs else []
    return [Phase(epoch, epoch + 1, step), *rest]


class PhasedCallbacks(keras.callbacks.CallbackList):
    """A `CallbackList` for one phase: `on_train_begin` / `on_train_end` only where training
    as a whole begins / ends."""

    def __init__(self, callbacks: list, *, begins: bool, ends: bool, **kwargs) -> None:
        super().__init__(callbacks, **kwargs)
        self.begins = begins
        self.ends = ends

    # Keras counts begins and ends per list (and fails an end without its begin): a phase
    # that skips one still counts it, so that a phase may end without having begun.
    def on_train_begin(self, logs=None) -> None:
        if self.begins:
            super().on_train_begin(logs)
        else:
            self._on_begin()

    def on_train_end(self, logs=None) -> None:
        if self.ends:
            super().on_train_end(logs)
        else:
            self._on_end()


def fit_phases(
    model: keras.Model,
    data: DataSplits,
    callbacks: list[keras.callbacks.Callback],
    *,
    epoch: int,
    step: int,
    epochs: int,
    steps_per_epoch: int,
    verbose: str | int,
) -> None:
    """Train from (`epoch`, `step`) to `epochs` on `data.train_epochs`, the data order of
    an uninterrupted run, in as many `fit` calls as `phases` says."""
    plan = phases(epoch, step, epochs)
    if not plan:  # trained to the end already: restore, then end training as fit would
        finished = PhasedCallbacks(callbacks, begins=True, ends=True, model=model)
        finished.on_train_begin()
        finished.on_train_end()
        return
    if plan and plan[0].skip:  # the interrupted epoch's metric totals go into built metrics
        images, labels = next(iter(data.validation))[:2]  # [2]: padded batches' weights
        model.compute_metrics(images, labels, model(images, training=False), sample_weight=None)
    history = keras.callbacks.History()  # `fit` returns `model.history`, which this sets
    for index, phase in enumerate(plan):
        steps = steps_per_epoch - phase.skip
        ends = index == len(plan) - 1
        phased = PhasedCallbacks(
            [*callbacks, history],
            begins=index == 0,
            ends=ends,
            add_progbar=verbose not in (0, "0"),
            verbose=1 if verbose == "auto" else int(verbose),
            epochs=phase.last,
            steps=steps,
            model=model,
        )
        model.fit(
            data.train_epochs(phase.first, phase.last, phase.skip),
            validation_data=data.validation,
            epochs=phase.last,
            initial_epoch=phase.first,
            steps_per_epoch=steps,
            shuffle=False,  # the order is the pipeline's, a function of (seed, epoch)
            callbacks=phased,
            verbose=verbose,
        )
        if model.stop_training and not ends:  # early stopping in the resumed epoch
            phased.ends = True
            phased._on_begin()  # fit's own end of this phase was counted already
            phased.on_train_end()
            return


@dataclass
class Session:
    """A training run opened for `train`: new, or resumed from its newest intact checkpoint.

    Attributes:
        run_id: the MLflow run.
        resumed: True when continuing an earlier process's run.
        output_dir: the run's own folder (the first process's, when resumed).
        checkpoint_dir: where its checkpoints go.
        checkpoint: the checkpoint to restore, or None to start from scratch.
        flag: SIGTERM/SIGINT flag the checkpointing callback watches.
        command: the command line that resumes this run.
        writes: False on the processes other than 0 of a job of several: they write
            nothing (no MLflow, no checkpoint, no output).
    """

    run_id: str
    resumed: bool
    output_dir: Path
    checkpoint_dir: Path
    checkpoint: checkpoint.Checkpoint | None
    flag: signals.SignalFlag
    command: str
    writes: bool = True


def last_checkpointed_step(directory: str) -> int | None:
    """The step of the newest checkpoint file in `directory` (by name), or None."""
    found = checkpoint.list_checkpoints(Path(directory))
    return checkpoint.step_of(found[0]) if found else None


def _resume_target(cfg: DictConfig, digest: str) -> str | None:
    requested = cfg.get("resume")
    if requested in (None, ""):
        return None
    if requested != AUTO:
        return str(requested)
    run_id = lifecycle.find_resumable(cfg.tracking.experiment, digest)
    if run_id is None:
        log.info("resume=auto: no KILLED run with this config; starting a new run")
    return run_id


@contextlib.contextmanager
def _follow(placement: distribution.Placement) -> Iterator[Session]:
    """Process 0's session, on another process of the job: the same run and checkpoint to
    restore, nothing written."""
    shared = distribution.share(None, placement)
    path = shared["checkpoint"]
    with signals.handle_signals() as flag:
        yield Session(
            shared["run_id"],
            shared["resumed"],
            Path(shared["output_dir"]),
            Path(shared["checkpoint_dir"]),
            checkpoint.read(Path(path)) if path else None,
            flag,
            shared["command"],
            writes=False,
        )


@contextlib.contextmanager
def session(
    cfg: DictConfig,
    run_name: str,
    tags: dict[str, str],
    output_dir: Path,
    placement: distribution.Placement | None = None,
) -> Iterator[Session]:
    """Open (or resume) the MLflow run of `cfg`, with SIGTERM/SIGINT handled.

    Before anything else, runs of the store whose process died are marked KILLED. On
    `Interrupted`, `SystemExit` (submitit's requeue) or `ProcessLostError` (another process
    of the job stopped) the run ends KILLED (tag `interrupted`), on `NonFiniteError` FAILED
    (tag `non_finite`); both say how to resume or what to fix, then propagate. In a job of
    several processes (`placement`) only process 0 opens the run; it tells the others which
    run and checkpoint. A run that ends FINISHED deletes its resume checkpoints (it cannot be
    resumed) unless `trainer.checkpoint.keep_finished`.
    """
    placement = placement or distribution.Placement("single device", 1)
    if not placement.chief:
        with _follow(placement) as followed:
            yield followed
        return
    settings = cfg.trainer.checkpoint
    lifecycle.connect(cfg)
    lifecycle.reap_dead_runs(last_checkpointed_step, settings.stale_after_s)
    digest = config_digest(cfg)
    run_id = _resume_target(cfg, digest)
    latest = None
    if run_id is None:
        checkpoint_dir = Path(settings.dir or output_dir / "checkpoints" / "state").resolve()
        tags = {
            **tags,
            lifecycle.CONFIG_DIGEST: digest,
            lifecycle.CHECKPOINT_DIR: str(checkpoint_dir),
            lifecycle.OUTPUT_DIR: str(Path(output_dir).resolve()),
        }
    else:
        run = lifecycle.resumable_run(run_id, digest, settings.stale_after_s)
        output_dir = Path(run.data.tags[lifecycle.OUTPUT_DIR])
        checkpoint_dir = Path(run.data.tags[lifecycle.CHECKPOINT_DIR])
        latest = checkpoint.read_latest(checkpoint_dir)
        if latest is None:
            log.warning(
                "Run %s has no intact checkpoint in %s: training from the start",
                run_id,
                checkpoint_dir,
            )
    with (
        signals.handle_signals() as flag,
        lifecycle.open_run(cfg, run_name, tags, output_dir, resume=run_id) as run,
    ):
        command = resume_command(run.info.run_id)
        log.info("Run %s; to resume it if it stops: %s", run.info.run_id, command)
        shared = {
            "run_id": run.info.run_id,
            "resumed": run_id is not None,
            "output_dir": str(output_dir),
            "checkpoint_dir": str(checkpoint_dir),
            "checkpoint": str(latest.path) if latest else None,
            "command": command,
        }
        distribution.share(shared, placement)
        try:
            yield Session(
                run.info.run_id,
                run_id is not None,
                output_dir,
                checkpoint_dir,
                latest,
                flag,
                command,
            )
        except signals.Interrupted as err:
            step = last_checkpointed_step(str(checkpoint_dir))
            lifecycle.end_run("KILLED", {"interrupted": err.name, lifecycle.LAST_STEP: str(step)})
            log.warning(
                "Stopped by %s, checkpointed at step %s; resume with: %s", err.name, step, command
            )
            raise
        except NonFiniteError as err:
            lifecycle.end_run("FAILED", {"non_finite": f"epoch {err.epoch} step {err.step}"})
            raise
        except distribution.ProcessLostError:
            step = last_checkpointed_step(str(checkpoint_dir))
            lifecycle.end_run(
                "KILLED", {"interrupted": "process lost", lifecycle.LAST_STEP: str(step)}
            )
            log.warning("Run ended KILLED, checkpointed at step %s; resume with: %s", step, command)
            raise
        except SystemExit as err:
            # submitit requeues a SLURM job at its time limit, then exits from its SIGUSR2
            # handler: KILLED, so that the requeued job's resume=auto continues this run.
            step = last_checkpointed_step(str(checkpoint_dir))
            reason = f"SystemExit({err.code})"
            lifecycle.end_run("KILLED", {"interrupted": reason, lifecycle.LAST_STEP: str(step)})
            log.warning("%s, checkpointed at step %s; resume with: %s", reason, step, command)
            raise
    # A FINISHED run cannot be resumed: its resume state is gigabytes of nothing (DeepFace).
    if not settings.get("keep_finished", False) and (
        removed := checkpoint.remove_all(checkpoint_dir)
    ):
        log.info("Run finished: its %d resume checkpoint(s) in %s deleted", removed, checkpoint_dir)
