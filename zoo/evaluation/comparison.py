"""The seeds' comparison, measured: mlp vs cnn vs lcn (vs deepface) trained on the same data.

For each model: train with `train.py`'s job (a normal MLflow run), evaluate it (nested run:
accuracy, translation robustness), count parameters and FLOPs from the built model, and
time training steps. One markdown table and one plot are written and logged to a
`comparison` MLflow run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import keras
import numpy as np
from hydra import compose
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from zoo import plots, tracking
from zoo.data import load_data
from zoo.evaluation import complexity

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


def measure(name: str, cfg: DictConfig, output_dir: Path) -> dict[str, float | str]:
    from zoo.evaluation import evaluate
    from zoo.training import train

    overrides = [f"model={name}", *cfg.compare.train_overrides]
    train_cfg = compose(config_name="train", overrides=overrides)
    run_dir = output_dir / name
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    # What Hydra writes for train.py: the run logs it, and evaluation reads its data config.
    OmegaConf.save(train_cfg, run_dir / ".hydra" / "config.yaml")
    train(train_cfg, run_dir)
    run_id = tracking.last_run_id()
    eval_cfg = OmegaConf.merge(cfg, {"run_id": run_id, "compare": None})
    metrics = evaluate(eval_cfg, run_dir)
    spec = load_data(train_cfg.data, batch_size=1, seed=train_cfg.seed).spec
    totals = complexity.totals(instantiate(train_cfg.model.builder)(spec))
    keras.backend.clear_session()
    largest = cfg.robustness.max_shift
    return {
        "model": name,
        "run_id": run_id,
        **totals,
        "train_step_ms": train_step_ms(train_cfg, cfg.compare.timing_steps),
        "test_accuracy": metrics["test_accuracy"],
        "shifted_accuracy": metrics[f"shift_{largest}px_accuracy"],
        "retained": metrics[f"shift_retained_at_{largest}px"],
        **{k: v for k, v in metrics.items() if k.startswith("shift_") and k.endswith("accuracy")},
    }


def markdown(rows: list[dict], cfg: DictConfig) -> str:
    largest = cfg.robustness.max_shift
    shifts = range(largest + 1)
    header = (
        "| model | parameters | FLOPs / example | train step (ms) | test accuracy | "
        + " | ".join(f"{s}px" for s in shifts)
        + f" | kept at {largest}px | MLflow run |"
    )
    lines = [header, "|---" * (6 + len(shifts)) + "|---|"]
    for r in rows:
        shifted = " | ".join(f"{r[f'shift_{s}px_accuracy']:.3f}" for s in shifts)
        lines.append(
            f"| {r['model']} | {r['parameters']:,} | {r['flops_per_example']:,} | "
            f"{r['train_step_ms']:.2f} | {r['test_accuracy']:.3f} | {shifted} | "
            f"{r['retained']:.0%} | `{r['run_id'][:8]}` |"
        )
    return "\n".join(lines)


def compare(cfg: DictConfig, output_dir: Path) -> float:
    """Train, evaluate and time every model of `cfg.compare.models`; write table and plot."""
    tracking.set_tracking_uri(cfg.tracking.uri)
    rows = [measure(name, cfg, output_dir) for name in cfg.compare.models]
    table = markdown(rows, cfg)
    setup = (
        f"Data `{cfg.compare.data_name}`, train overrides `{list(cfg.compare.train_overrides)}`, "
        f"shifts averaged over right/left/down/up with zero fill; step time = median of "
        f"{cfg.compare.timing_steps} `train_on_batch` calls on this machine's CPU."
    )
    text = f"# {cfg.compare.title}\n\n{setup}\n\n{table}\n"
    output = Path(cfg.compare.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    curves = {
        r["model"]: {s: r[f"shift_{s}px_accuracy"] for s in range(cfg.robustness.max_shift + 1)}
        for r in rows
    }
    tags = {"job": "compare", "models": ",".join(cfg.compare.models)}
    with tracking.start_child_run(None, cfg.tracking.experiment, "comparison", tags):
        tracking.log_text(text, "comparison.md")
        tracking.log_figure(plots.comparison(rows), "plots/comparison.png")
        tracking.log_figure(plots.shift_curves(curves), "plots/translation_robustness.png")
        figure = plots.comparison(rows)
        figure.savefig(output.with_suffix(".png"), dpi=110)
        plots.shift_curves(curves).savefig(output.with_name(output.stem + "_shift.png"), dpi=110)
        for r in rows:
            tracking.log_metrics(
                {k: v for k, v in r.items() if isinstance(v, int | float)}, prefix=f"{r['model']}_"
            )
    by_name = {r["model"]: r["run_id"] for r in rows}
    if {"cnn", "lcn"} <= set(by_name):
        from zoo.evaluation import local_filter_figure

        lcn, cnn = (tracking.load_keras_model(f"runs:/{by_name[m]}/model") for m in ("lcn", "cnn"))
        figure, _ = local_filter_figure(lcn, conv_model=cnn)
        figure.savefig(output.with_name(output.stem + "_filters.png"), dpi=110)
    log.info("Comparison written to %s\n%s", output, table)
    return float(max(r["test_accuracy"] for r in rows))
