"""compile -> fit -> evaluate -> log: the training job behind `train.py`."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from hydra.utils import instantiate
from omegaconf import DictConfig

from zoo import console, plots, tracking
from zoo.data import load_data, load_raw
from zoo.data.spec import DataSplits
from zoo.evaluation import baselines
from zoo.export import check_formats, export_model
from zoo.tracking import lifecycle
from zoo.training import distribution, recipe, resume
from zoo.training.state import TrainingState

log = logging.getLogger(__name__)

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def set_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(
            f"trainer.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}."
        )
    keras.config.set_dtype_policy(precision)


def compile_model(
    model: keras.Model,
    cfg: DictConfig,
    num_classes: int,
    steps_per_epoch: int | None = None,
    weighted: bool = False,
) -> None:
    """Compile with the configured recipe (`zoo.training.recipe`): optimizer, learning-rate
    schedule (it needs `steps_per_epoch`), loss with label smoothing (averaged over sample
    weights when `weighted`: padded batches), accuracy metrics."""
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    if num_classes > 5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy"))
    jit_compile = cfg.trainer.jit_compile
    model.compile(
        optimizer=recipe.build_optimizer(cfg, steps_per_epoch),
        loss=recipe.build_loss(cfg.trainer.get("label_smoothing", 0.0), weighted),
        metrics=metrics,
        jit_compile=jit_compile if jit_compile == "auto" else bool(jit_compile),
    )


def make_callbacks(
    cfg: DictConfig, output_dir: Path, placement: distribution.Placement | None = None
) -> list[keras.callbacks.Callback | None]:
    """The configured Keras callbacks, a best-model checkpoint (`trainer.checkpoint.best`),
    and MLflow's callback. On the processes other than 0 of a job, None in place of
    MLflow's, so that every process's list lines up with the checkpointed states; with
    several processes no best-model checkpoint (`model.save` runs JAX collectives, which
    process 0 cannot run alone; the logged model is the best epoch's with early stopping's
    `restore_best_weights`)."""
    placement = placement or distribution.Placement("single device", 1)
    callbacks = [recipe.LearningRateLog()]
    callbacks += [instantiate(spec) for spec in cfg.trainer.callbacks.values() if spec]
    if cfg.trainer.checkpoint.get("best", True):
        if placement.processes > 1:
            log.info("No best.keras with %d processes (README)", placement.processes)
        else:
            callbacks.append(
                keras.callbacks.ModelCheckpoint(
                    output_dir / "checkpoints" / "best.keras",
                    monitor=cfg.trainer.monitor,
                    mode=cfg.trainer.monitor_mode,
                    save_best_only=True,
                )
            )
    callbacks.append(tracking.keras_callback() if placement.chief else None)
    return callbacks


def set_determinism(deterministic: bool) -> None:
    """`trainer.deterministic`: the same ops in the same order give the same bits, so a
    resumed run ends with the weights of an uninterrupted one (seeds are always set; JAX's
    CPU and GPU kernels are deterministic already)."""
    if deterministic and keras.backend.backend() == "tensorflow":
        tf.config.experimental.enable_op_determinism()


def fit(
    model: keras.Model,
    data: DataSplits,
    cfg: DictConfig,
    callbacks: list,
    session: resume.Session,
) -> dict:
    """`model.fit` from where `session`'s checkpoint left off (or the start), checkpointing
    every `trainer.checkpoint.every_steps` steps and at each epoch end (where `session`
    writes); the epoch history."""
    steps = known_length(data.train) or sum(1 for _ in data.train)
    state = TrainingState(
        session.checkpoint_dir,
        cfg.trainer.checkpoint.every_steps,
        cfg.trainer.checkpoint.keep,
        steps,
        cfg.trainer.epochs,
        stateful=callbacks,
        flag=session.flag,
        resume_from=session.checkpoint,
        before_save=lifecycle.flush,
        writes=session.writes,
    )
    with session.flag.deferred():
        resume.fit_phases(
            model,
            data,
            [*(callback for callback in callbacks if callback is not None), state],
            epoch=state.epoch,
            step=state.step,
            epochs=cfg.trainer.epochs,
            steps_per_epoch=steps,
            verbose=console.keras_verbosity(cfg.trainer.verbose),
        )
    return state.history


def known_length(dataset: tf.data.Dataset) -> int | None:
    """Batches per pass over `dataset`, or None when tf.data cannot tell."""
    length = int(dataset.cardinality())
    return length if length >= 0 else None


def model_summary(model: keras.Model) -> str:
    lines = io.StringIO()
    model.summary(print_fn=lambda line, **_: lines.write(line + "\n"))
    return lines.getvalue()


def sample_batch(data: DataSplits, size: int = 4) -> np.ndarray:
    images = next(iter(data.test.unbatch().batch(size)))[0]  # (images, labels[, weights])
    return images.numpy()


def best_value(history: dict, monitor: str, mode: str) -> float:
    values = history.get(monitor)
    if not values:
        raise ValueError(
            f"trainer.monitor={monitor!r} is not among the logged metrics {sorted(history)}."
        )
    return float(max(values) if mode == "max" else min(values))


def train(cfg: DictConfig, output_dir: Path) -> float:
    """Train `cfg.model` on `cfg.data`, log everything to MLflow, return the best monitor value."""
    distribution.join(cfg.trainer.get("distribution"), cfg.trainer.processes)  # before JAX starts
    keras.utils.set_random_seed(cfg.seed)
    set_determinism(cfg.trainer.get("deterministic", False))
    set_precision(cfg.trainer.precision)
    export_formats = check_formats(list(cfg.export.formats))  # fail before training, not after
    gpus = distribution.accelerators()
    log.info("Backend %s; devices: %s", keras.backend.backend(), ", ".join(gpus) or "CPU only")
    with distribution.scope(cfg.trainer.get("distribution")) as placement:
        tags = {"model": cfg.model.name, "data": cfg.data.name, "device": "GPU" if gpus else "CPU"}
        return _train(cfg, output_dir, export_formats, placement, {**tags, **placement.tags()})


def _record(
    cfg: DictConfig,
    session: resume.Session,
    model: keras.Model,
    data: DataSplits,
    history: dict,
    test: dict | None,
    export_formats: list[str],
    output_dir: Path,
) -> None:
    """Log the trained `model`'s curves, test metrics, baselines, model and exports."""
    if history:
        tracking.log_figure(plots.learning_curves(history), "plots/learning_curves.png")
    if test is None:
        log.info("Identity split: the test split holds unseen people, kept for verification.")
    elif session.resumed and "test_loss" in lifecycle.logged_metrics():
        log.info("Test metrics were logged before the interruption: not logged again.")
    else:
        tracking.log_metrics(test, prefix="test_")
        log.info("Test: %s", ", ".join(f"{k}={v:.4f}" for k, v in test.items()))
        tracking.log_metrics(baselines.identification_metrics(cfg))
    example = sample_batch(data)
    if cfg.tracking.log_model:
        uri = tracking.log_model(model, example, cfg.tracking.registered_model_name)
        log.info("Logged model %s", uri)
    if export_formats:
        results = export_model(model, export_formats, output_dir / "exports", example)
        tracking.log_exports(output_dir / "exports", results)
    log.info("Finished MLflow run %s", session.run_id)


def _train(
    cfg: DictConfig,
    output_dir: Path,
    export_formats: list[str],
    placement: distribution.Placement,
    tags: dict[str, str],
) -> float:
    padded = placement.batch_multiple
    data = load_data(
        cfg.data,
        batch_size=cfg.trainer.batch_size,
        seed=cfg.seed,
        pad_batches_to=padded,
        steps_per_epoch=cfg.trainer.get("steps_per_epoch"),
        processes=placement.processes,
        process_index=placement.process_id,
    )
    model = instantiate(cfg.model.builder)(data.spec)
    compile_model(model, cfg, data.spec.num_classes, known_length(data.train), padded > 1)

    name = f"{cfg.model.name}-{cfg.data.name}"
    with resume.session(cfg, name, tags, output_dir, placement) as session:
        if session.writes and not session.resumed:
            tracking.log_metrics({"parameters": model.count_params()})
            tracking.log_text(model_summary(model), "model_summary.txt")
            tracking.log_datasets(load_raw(cfg.data, seed=cfg.seed), cfg.data.source, cfg.seed)
        callbacks = make_callbacks(cfg, session.output_dir, placement)
        identity = cfg.data.get("split", {}).get("by") == "identity"
        with distribution.together(placement):  # what every process of a job does
            history = fit(model, data, cfg, callbacks, session)
            test = None if identity else model.evaluate(data.test, return_dict=True, verbose=0)
        if session.writes:
            with distribution.process_local(model, placement) as own:
                _record(cfg, session, own, data, history, test, export_formats, output_dir)
    if not history:  # interrupted before the first epoch ended
        return float("nan")
    return best_value(history, cfg.trainer.monitor, cfg.trainer.monitor_mode)
