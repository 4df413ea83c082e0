"""Translation robustness: test accuracy as every image is shifted by 0, 1, ..., k pixels.

Each shift is applied in the four axis directions (right, left, down, up), the vacated
border filled with zeros (the background of the pipeline's [0, 1] images), and the
accuracy averaged over the four. Convolution + pooling is claimed to tolerate small
shifts and unshared (locally connected) filters not to: this measures it, for Keras models
and for any classifier given as a function from images to labels (the scikit-learn
baselines).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

Classifier = Callable[[np.ndarray], np.ndarray]  # (n, h, w, c) images -> (n,) labels

DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0))  # (rows, columns): right, left, down, up


def shift_images(images: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Shift `(n, h, w, c)` images by `rows` down and `columns` right, zero-filling."""
    images = np.asarray(images)
    height, width = images.shape[1:3]
    if abs(rows) >= height or abs(columns) >= width:
        raise ValueError(
            f"a shift of ({rows}, {columns}) pixels leaves nothing of {height}x{width} "
            "images; lower robustness.max_shift"
        )
    shifted = np.zeros_like(images)
    source_rows = slice(max(0, -rows), height - max(0, rows))
    target_rows = slice(max(0, rows), height - max(0, -rows))
    source_cols = slice(max(0, -columns), width - max(0, columns))
    target_cols = slice(max(0, columns), width - max(0, -columns))
    shifted[:, target_rows, target_cols] = images[:, source_rows, source_cols]
    return shifted


def keras_classifier(model: keras.Model, batch_size: int = 256) -> Classifier:
    """The model's most probable class per image."""
    return lambda images: np.argmax(model.predict(images, batch_size=batch_size, verbose=0), -1)


def accuracy(classify: Classifier, images: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(classify(images)) == np.asarray(labels)))


def shift_curve(
    model: keras.Model | Classifier,
    images: np.ndarray,
    labels: np.ndarray,
    max_shift: int,
    batch_size: int = 256,
) -> dict[int, float]:
    """`{shift: accuracy}` for shifts 0..max_shift, averaged over the four directions, of a
    Keras model (predicted in batches of `batch_size`) or a `Classifier` function."""
    if max_shift < 0:
        raise ValueError(f"robustness.max_shift must be >= 0, got {max_shift}")
    classify = keras_classifier(model, batch_size) if isinstance(model, keras.Model) else model
    curve = {0: accuracy(classify, images, labels)}
    for shift in range(1, max_shift + 1):
        shifted = [shift_images(images, dr * shift, dc * shift) for dr, dc in DIRECTIONS]
        curve[shift] = float(np.mean([accuracy(classify, s, labels) for s in shifted]))
    return curve


def metrics(curve: dict[int, float], prefix: str = "shift_") -> dict[str, float]:
    """Per-shift accuracy, and the accuracy kept at the largest shift relative to no shift."""
    values = {f"{prefix}{shift}px_accuracy": value for shift, value in curve.items()}
    largest = max(curve)
    values[f"{prefix}retained_at_{largest}px"] = curve[largest] / curve[0] if curve[0] else 0.0
    return values
