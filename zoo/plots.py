"""Figures the zoo logs: one function per figure, each returning a matplotlib Figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def learning_curves(history: dict[str, list[float]]) -> Figure:
    """Training and validation curves per epoch, one panel per metric (loss, accuracy, ...)."""
    metrics = [name for name in history if not name.startswith("val_") and name != "learning_rate"]
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for axis, name in zip(axes[0], metrics, strict=True):
        epochs = range(1, len(history[name]) + 1)
        axis.plot(epochs, history[name], marker="o", label="train")
        if f"val_{name}" in history:
            axis.plot(epochs, history[f"val_{name}"], marker="o", label="validation")
        axis.set_xlabel("epoch")
        axis.set_title(name)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return figure


def confusion_matrix(matrix: np.ndarray, class_names: Sequence[str]) -> Figure:
    """Counts of true (rows) against predicted (columns) classes, annotated when small."""
    size = max(4.0, 0.45 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(matrix, cmap="Blues")
    ticks = range(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=90 if len(class_names) > 10 else 0)
    axis.set_yticks(ticks, class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(class_names) <= 20:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (row, column), count in np.ndenumerate(matrix):
            colour = "white" if count > threshold else "black"
            axis.text(column, row, int(count), ha="center", va="center", color=colour, fontsize=8)
    figure.colorbar(image, ax=axis, fraction=0.046)
    axis.set_title("confusion matrix (test)")
    figure.tight_layout()
    return figure


def image_grid(images: np.ndarray, titles: Sequence[str], columns: int = 4) -> Figure:
    """Images `(n, h, w, c)` in [0, 1], one title each (e.g. 'true 3 / predicted 8')."""
    count = max(len(images), 1)
    rows = int(np.ceil(count / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.6 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, title in zip(axes.flat, images, titles, strict=False):
        axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
        axis.set_title(title, fontsize=9)
    if not len(images):
        axes[0, 0].text(0.5, 0.5, "no misclassified examples", ha="center", va="center")
    figure.tight_layout()
    return figure


def roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]]) -> Figure:
    """ROC curves of verifiers, `{name: (fpr, tpr, auc)}`, with the chance diagonal."""
    figure, axis = plt.subplots(figsize=(4.6, 4.2))
    for label, (fpr, tpr, auc) in curves.items():
        axis.plot(fpr, tpr, label=f"{label} AUC = {auc:.3f}")
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axis.set_xlabel("false positive rate (different people accepted)")
    axis.set_ylabel("true positive rate (same person accepted)")
    axis.set_title("verification ROC, all test pairs")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    figure.tight_layout()
    return figure


def shift_curves(
    curves: Mapping[str, Mapping[int, float]],
    spread: Mapping[str, Mapping[int, float]] | None = None,
) -> Figure:
    """Test accuracy against shift in pixels, one line per model; a band of ± `spread`
    (e.g. the standard deviation over seeds) around each line where given."""
    figure, axis = plt.subplots(figsize=(5.2, 3.8))
    for name, curve in curves.items():
        shifts = sorted(curve)
        values = np.array([curve[s] for s in shifts])
        (line,) = axis.plot(shifts, values, marker="o", label=name)
        if spread and name in spread:
            band = np.array([spread[name][s] for s in shifts])
            axis.fill_between(
                shifts, values - band, values + band, color=line.get_color(), alpha=0.2
            )
    axis.set_xlabel("shift (pixels, mean of right/left/down/up)")
    axis.set_ylabel("test accuracy")
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    axis.legend()
    axis.set_title("translation robustness")
    figure.tight_layout()
    return figure


def position_specific_filters(
    local_kernels: np.ndarray,
    positions: Sequence[tuple[int, int]],
    spread: np.ndarray,
    conv_kernel: np.ndarray | None,
    title: str,
) -> Figure:
    """One locally connected filter at several positions, next to a (shared) conv filter.

    Args:
        local_kernels: `(len(positions), kh, kw)` the filter's kernel at each position
            (channel-averaged).
        positions: the `(row, column)` output position of each kernel.
        spread: `(out_h, out_w)` distance of each position's kernel from the mean kernel.
        conv_kernel: `(kh, kw)` a conv filter (identical at every position), or None.
        title: figure title.
    """
    columns = len(positions) + 2
    figure, axes = plt.subplots(1, columns, figsize=(2.2 * columns, 2.8))
    limit = float(np.max(np.abs(local_kernels))) or 1.0
    for axis, kernel, (row, column) in zip(axes, local_kernels, positions, strict=False):
        axis.imshow(kernel, cmap="coolwarm", vmin=-limit, vmax=limit)
        axis.set_title(f"position ({row},{column})", fontsize=9)
        axis.axis("off")
    conv_axis, spread_axis = axes[-2], axes[-1]
    if conv_kernel is not None:
        conv_limit = float(np.max(np.abs(conv_kernel))) or 1.0
        conv_axis.imshow(conv_kernel, cmap="coolwarm", vmin=-conv_limit, vmax=conv_limit)
        conv_axis.set_title("conv filter\n(same at every position)", fontsize=9)
    else:
        conv_axis.text(0.5, 0.5, "no conv layer", ha="center", va="center")
    conv_axis.axis("off")
    image = spread_axis.imshow(spread, cmap="viridis")
    spread_axis.set_title("|kernel - mean kernel|\nper position", fontsize=9)
    spread_axis.axis("off")
    figure.colorbar(image, ax=spread_axis, fraction=0.046)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def comparison(rows: Sequence[Mapping[str, float | str]]) -> Figure:
    """Parameters, FLOPs, step time and accuracy (clean and at the largest shift) per model,
    with error bars where a row has `<key>_std` (over seeds)."""
    names = [str(r["model"]) for r in rows]
    panels = [
        ("parameters", "parameters", True),
        ("flops_per_example", "FLOPs / example", True),
        ("train_step_ms", "training step (ms)", False),
        ("test_accuracy", "test accuracy", False),
        ("shifted_accuracy", "accuracy at largest shift", False),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for axis, (key, label, log_scale) in zip(axes, panels, strict=True):
        values = [float(r.get(key, np.nan)) for r in rows]
        errors = [float(r.get(f"{key}_std", 0.0)) for r in rows]
        axis.bar(names, values, yerr=errors, capsize=3, color=plt.cm.tab10(np.arange(len(names))))
        if log_scale:
            axis.set_yscale("log")
        axis.set_title(label, fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure
