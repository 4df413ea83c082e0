"""The seeds' comparison, measured: mlp vs cnn vs lcn (vs deepface) trained on the same data.

For each model and seed: train with `train.py`'s job (a normal MLflow run, timed), evaluate
it (nested run: accuracy, translation robustness), count parameters and FLOPs from the built
model, and time training steps. The data's scikit-learn baselines are fitted on the same
splits and shifted the same way. A markdown table (mean ± std over seeds, and every run)
and plots are written and logged to a `comparison` MLflow run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
from hydra import compose
from hydra.utils import instantiate
from mlflow.entities import Run
from omegaconf import DictConfig, OmegaConf

from zoo import machine, plots, tracking
from zoo.data import load_data, split_arrays
from zoo.evaluation import baselines, complexity, robustness

log = logging.getLogger(__name__)


def train_step_ms(train_cfg: DictConfig, steps: int) -> float:
    """Median wall time of one training step (forward, backward, update) on a fixed batch."""
    from zoo.training.job import compile_model, known_length

    data = load_data(train_cfg.data, batch_size=train_cfg.trainer.batch_size, seed=train_cfg.seed)
    model = instantiate(train_cfg.model.builder)(data.spec)
    compile_model(model, train_cfg, data.spec.num_classes, known_length(data.train))
    images, labels = next(iter(data.train))
    model.train_on_batch(images, labels)  # trace and compile outside the timing
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(images, labels)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def finished_run(train_cfg: DictConfig) -> Run | None:
    """The newest FINISHED training run of `train_cfg`'s experiment with exactly this config
    (the digest `resume=auto` matches on), e.g. `python train.py model=deepface seed=0` for
    the comparison's deepface at seed 0, or a member of an earlier, interrupted comparison."""
    from zoo.tracking import lifecycle
    from zoo.training.resume import config_digest

    return lifecycle.find_run(train_cfg.tracking.experiment, config_digest(train_cfg), "FINISHED")


def _own_recipes(cfg: DictConfig) -> dict[str, list[str]]:
    """`compare.model_overrides`: model name -> its own `train.py` overrides (non-empty)."""
    return {k: list(v) for k, v in (cfg.compare.get("model_overrides") or {}).items() if v}


def train_overrides(cfg: DictConfig, name: str) -> list[str]:
    """`train.py` overrides of model `name`: the comparison's common ones, then the model's
    own recipe (`compare.model_overrides.<name>`), if it has one."""
    return [*cfg.compare.train_overrides, *_own_recipes(cfg).get(name, [])]


def measure(name: str, seed: int, cfg: DictConfig, output_dir: Path) -> dict[str, float | str]:
    """Train `name` at `seed` with train.py's job (or reuse a finished run of the same config,
    `compare.reuse`), evaluate it, count and time it."""
    from zoo.evaluation import evaluate
    from zoo.training import train

    overrides = [f"model={name}", f"seed={seed}", *train_overrides(cfg, name)]
    if cfg.compare.reuse:  # a member killed in an earlier attempt continues from its checkpoint
        overrides.append("resume=auto")
    train_cfg = compose(config_name="train", overrides=overrides)
    run_dir = output_dir / f"{name}_seed{seed}"
    finished = finished_run(train_cfg) if cfg.compare.reuse else None
    if finished is not None:
        run_id = finished.info.run_id
        train_seconds = (finished.info.end_time - finished.info.start_time) / 1000
        log.info("%s seed %d: reusing finished run %s (same config)", name, seed, run_id)
    else:
        (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        # What Hydra writes for train.py: the run logs it, and evaluation reads its data config.
        OmegaConf.save(train_cfg, run_dir / ".hydra" / "config.yaml")
        start = time.perf_counter()
        train(train_cfg, run_dir)
        train_seconds = time.perf_counter() - start
        run_id = tracking.last_run_id()
    epochs = tracking.epochs_logged(run_id)
    eval_cfg = OmegaConf.merge(cfg, {"run_id": run_id, "compare": None})
    metrics = evaluate(eval_cfg, run_dir)
    spec = load_data(train_cfg.data, batch_size=1, seed=seed).spec
    totals = complexity.totals(instantiate(train_cfg.model.builder)(spec))
    keras.backend.clear_session()
    return {
        "model": name,
        "seed": seed,
        "run_id": run_id,
        **totals,
        "train_step_ms": train_step_ms(train_cfg, cfg.compare.timing_steps),
        "run_s": train_seconds,
        "epochs": epochs,
        "epoch_s": train_seconds / max(epochs, 1),
        "test_accuracy": metrics["test_accuracy"],
        **{k: v for k, v in metrics.items() if k.startswith("shift_") and k.endswith("accuracy")},
    }


def baseline_rows(seed: int, cfg: DictConfig) -> list[dict[str, float | str]]:
    """The data's identification baselines (`conf/baselines/`) on the split of `seed`: test
    accuracy, shift curve, fit time; the split is the one the models of this seed see."""
    train_cfg = compose(
        config_name="train", overrides=[f"seed={seed}", *cfg.compare.train_overrides]
    )
    estimators = (train_cfg.get("baselines") or {}).get("identification") or {}
    if not estimators:
        return []
    data = load_data(train_cfg.data, batch_size=256, seed=seed, augment=False)
    test_images, test_labels = split_arrays(data.test)
    rows = []
    for result in baselines.identification(
        estimators, split_arrays(data.train), (test_images, test_labels)
    ):
        estimator = result.estimator
        curve = robustness.shift_curve(
            lambda images, e=estimator: e.predict(baselines.flat_pixels(images)),
            test_images,
            test_labels,
            cfg.robustness.max_shift,
        )
        rows.append(
            {
                "model": f"{result.name} (baseline)",
                "seed": seed,
                "run_s": result.fit_seconds,
                "test_accuracy": result.metrics["test_accuracy"],
                **{f"shift_{s}px_accuracy": value for s, value in curve.items()},
            }
        )
    return rows


def summarise(runs: list[dict], largest: int) -> list[dict]:
    """One row per model: mean and standard deviation over seeds of every measured number."""
    summary = []
    for name in dict.fromkeys(r["model"] for r in runs):
        mine = [r for r in runs if r["model"] == name]
        row: dict = {"model": name, "seeds": [r["seed"] for r in mine]}
        row["run_ids"] = [r["run_id"] for r in mine if "run_id" in r]
        for key, value in mine[0].items():
            if isinstance(value, int | float) and key != "seed":
                values = np.array([float(r[key]) for r in mine])
                row[key] = float(values.mean())
                row[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        clean, shifted = row["shift_0px_accuracy"], row[f"shift_{largest}px_accuracy"]
        row["shifted_accuracy"] = shifted
        row["retained"] = shifted / clean if clean else 0.0
        summary.append(row)
    return summary


def _count(row: Mapping, key: str) -> str:
    return f"{int(row[key]):,}" if key in row else "—"


def _pm(row: Mapping, key: str, digits: int = 3) -> str:
    if key not in row:
        return "—"
    mean, std = row[key], row.get(f"{key}_std", 0.0)
    return (
        f"{mean:.{digits}f} ± {std:.{digits}f}" if len(row["seeds"]) > 1 else f"{mean:.{digits}f}"
    )


def markdown(summary: list[dict], runs: list[dict], cfg: DictConfig) -> str:
    """The comparison table (mean ± std over seeds) and the per-run table under it."""
    largest = cfg.robustness.max_shift
    shifts = range(largest + 1)
    header = [
        "model",
        "parameters",
        "FLOPs / example",
        "train step (ms)",
        "wall per run (s)",
        "per epoch (s)",
        "test accuracy",
        *(f"{s}px" for s in shifts),
        f"kept at {largest}px",
    ]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for r in summary:
        lines.append(
            f"| {r['model']} | {_count(r, 'parameters')} | {_count(r, 'flops_per_example')} | "
            f"{_pm(r, 'train_step_ms', 1)} | {_pm(r, 'run_s', 0)} | {_pm(r, 'epoch_s', 1)} | "
            f"{_pm(r, 'test_accuracy')} | "
            + " | ".join(_pm(r, f"shift_{s}px_accuracy") for s in shifts)
            + f" | {r['retained']:.0%} |"
        )
    lines += [
        "",
        "| model | seed | test accuracy | wall (s) | epochs | MLflow run |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        run = f"`{r['run_id'][:8]}`" if "run_id" in r else "— (scikit-learn, fit time)"
        epochs = r.get("epochs", "—")
        lines.append(
            f"| {r['model']} | {r['seed']} | {r['test_accuracy']:.4f} | {r['run_s']:.0f} | "
            f"{epochs} | {run} |"
        )
    return "\n".join(lines)


def _recipes_text(cfg: DictConfig) -> str:
    return "".join(f", then for {name} `{extra}`" for name, extra in _own_recipes(cfg).items())


def compare(cfg: DictConfig, output_dir: Path) -> float:
    """Train, evaluate and time every model of `cfg.compare.models` at every seed of
    `cfg.compare.seeds`, with the data's baselines on the same splits; write table and plots."""
    tracking.set_tracking_uri(cfg.tracking.uri)
    seeds = list(cfg.compare.seeds)
    largest = cfg.robustness.max_shift
    runs = [measure(name, seed, cfg, output_dir) for seed in seeds for name in cfg.compare.models]
    runs += [row for seed in seeds for row in baseline_rows(seed, cfg)]
    summary = summarise(runs, largest)
    table = markdown(summary, runs, cfg)
    setup = (
        f"Data `{cfg.compare.data_name}`, seeds {seeds} (each seed its own split, weights and "
        f"augmentation; mean ± sample std over seeds), train overrides "
        f"`{list(cfg.compare.train_overrides)}`{_recipes_text(cfg)}; baselines "
        f"(`conf/baselines/`) fitted on each seed's training split. Shifts averaged over "
        f"right/left/down/up with zero fill. Train step = median of "
        f"{cfg.compare.timing_steps} `train_on_batch` calls; wall per run = the whole training "
        f"job (data, fit, test, baselines, model logging), per epoch = wall / epochs; for "
        f"baselines, wall = their fit. Machine: {machine.describe()}."
    )
    text = f"# {cfg.compare.title}\n\n{setup}\n\n{table}\n"
    output = Path(cfg.compare.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    curves = {
        r["model"]: {s: r[f"shift_{s}px_accuracy"] for s in range(largest + 1)} for r in summary
    }
    spread = {
        r["model"]: {s: r[f"shift_{s}px_accuracy_std"] for s in range(largest + 1)} for r in summary
    }
    models = [r for r in summary if "parameters" in r]
    tags = {
        "job": "compare",
        "models": ",".join(cfg.compare.models),
        "seeds": ",".join(map(str, seeds)),
    }
    with tracking.start_child_run(None, cfg.tracking.experiment, "comparison", tags):
        tracking.log_text(text, "comparison.md")
        figure = plots.comparison(models)
        tracking.log_figure(figure, "plots/comparison.png")
        figure.savefig(output.with_suffix(".png"), dpi=110)
        figure = plots.shift_curves(curves, spread)
        tracking.log_figure(figure, "plots/translation_robustness.png")
        figure.savefig(output.with_name(output.stem + "_shift.png"), dpi=110)
        for r in summary:
            name = r["model"].replace(" (baseline)", "")
            tracking.log_metrics(
                {k: v for k, v in r.items() if isinstance(v, int | float)}, prefix=f"{name}_"
            )
    first = {r["model"]: r["run_id"] for r in runs if r.get("seed") == seeds[0] and "run_id" in r}
    if {"cnn", "lcn"} <= set(first):
        from zoo.evaluation import local_filter_figure

        lcn, cnn = (tracking.load_keras_model(f"runs:/{first[m]}/model") for m in ("lcn", "cnn"))
        figure, _ = local_filter_figure(lcn, conv_model=cnn)
        figure.savefig(output.with_name(output.stem + "_filters.png"), dpi=110)
    log.info("Comparison written to %s\n%s", output, table)
    return float(max(r["test_accuracy"] for r in models))
