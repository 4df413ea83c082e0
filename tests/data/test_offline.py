"""The offline loaders against the raw package files and hand counts."""

from __future__ import annotations

import csv
import gzip

import numpy as np
from skimage.data import lfw_subset
from sklearn.datasets import load_digits as sklearn_digits

from zoo.data.offline import load_digits, load_lfw_subset, mnist_csv_path
from zoo.data.spec import Examples


def test_mnist_counts_shape_and_range(mnist: Examples):
    assert mnist.name == "mnist"
    assert mnist.images.shape == (5000, 28, 28, 1)
    assert mnist.images.dtype == np.uint8
    assert mnist.images.min() == 0 and mnist.images.max() == 255
    assert mnist.labels.dtype == np.int64
    assert np.bincount(mnist.labels).tolist() == [500] * 10
    assert mnist.class_names == tuple("0123456789")


def test_mnist_matches_the_csv_rows(mnist: Examples):
    with gzip.open(mnist_csv_path(), "rt") as lines:
        rows = [row for _, row in zip(range(3), csv.reader(lines), strict=False)]
    for index, row in enumerate(rows):
        assert len(row) == 785
        assert mnist.labels[index] == int(row[-1])
        assert mnist.images[index].ravel().tolist() == [int(v) for v in row[:-1]]


def test_mnist_is_row_major(mnist: Examples):
    """A handwritten 1 is a tall, narrow stroke: spread along rows beats spread along columns."""
    ones = mnist.images[mnist.labels == 1, ..., 0].astype(np.float64)

    def spread(profile: np.ndarray) -> float:
        weights = profile / profile.sum()
        position = np.arange(len(profile))
        mean = (weights * position).sum()
        return float(np.sqrt((weights * (position - mean) ** 2).sum()))

    rows = np.mean([spread(image.sum(axis=1)) for image in ones])
    columns = np.mean([spread(image.sum(axis=0)) for image in ones])
    assert rows > 2 * columns


def test_digits_rescaled_to_uint8():
    digits = load_digits()
    reference = sklearn_digits()
    assert digits.images.shape == (1797, 8, 8, 1)
    assert digits.images.dtype == np.uint8
    assert digits.labels.tolist() == reference.target.tolist()
    assert len(digits.labels) == 1797
    # 0..16 → 0..255: 16 → 255, 8 → 128 (127.5 rounded half to even), 0 → 0.
    expected = np.round(reference.data.reshape(-1, 8, 8, 1) * 255 / 16)
    np.testing.assert_array_equal(digits.images, expected)
    assert digits.images.max() == 255


def test_lfw_subset_labels_and_full_uint8_range():
    faces = load_lfw_subset()
    raw = lfw_subset()  # float64 in [0, 1]
    assert faces.images.shape == (200, 25, 25, 1)
    assert faces.images.dtype == np.uint8
    assert faces.labels.tolist() == [1] * 100 + [0] * 100
    assert faces.class_names[1] == "face" and faces.class_names[0] == "non_face"
    assert faces.images.max() >= 250  # Not a 0/1 image from a careless cast.
    np.testing.assert_allclose(faces.images[..., 0], raw * 255, atol=0.5)
