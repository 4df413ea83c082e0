"""TFDS as a source, offline: a tiny data set generated into a temporary data_dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from data_helpers import PEOPLE, TINY_CLASSES, TINY_SHAPE, person_of, take_all, tiny_image

from zoo.data.pipeline import build_datasets
from zoo.data.splits import split_examples
from zoo.data.tfds_source import load_tfds, load_tfds_examples


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch: pytest.MonkeyPatch):
    """Any attempt to download makes the test fail instead of reaching for the network."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download")

    for method in ("download", "download_and_extract", "download_kaggle_data"):
        monkeypatch.setattr(tfds.download.DownloadManager, method, refuse, raising=False)


def test_train_split_sliced_for_validation(tfds_dir: Path):
    raw = load_tfds("zoo_tiny_shapes", data_dir=str(tfds_dir), validation_fraction=0.1)
    assert raw.name == "zoo_tiny_shapes"
    assert raw.class_names == TINY_CLASSES
    assert raw.train.element_spec == (
        tf.TensorSpec(TINY_SHAPE, tf.uint8),
        tf.TensorSpec((), tf.int64),
    )
    train, validation, test = (take_all(s) for s in (raw.train, raw.validation, raw.test))
    assert (len(train[1]), len(validation[1]), len(test[1])) == (36, 4, 8)
    for images, labels in (train, validation, test):
        index = images[:, 0, 0, 0] // 3  # The generator wrote pixel value 3 * index.
        assert labels.tolist() == (index % len(TINY_CLASSES)).tolist()
        np.testing.assert_array_equal(images, np.stack([tiny_image(i) for i in index]))
    train_ids = set((train[0][:, 0, 0, 0] // 3).tolist())
    validation_ids = set((validation[0][:, 0, 0, 0] // 3).tolist())
    assert train_ids | validation_ids == set(range(40)) and not train_ids & validation_ids
    assert set((test[0][:, 0, 0, 0] // 3).tolist()) == set(range(40, 48))


def test_own_validation_split_is_used(tfds_dir: Path):
    raw = load_tfds("zoo_tiny_shapes_with_validation", data_dir=str(tfds_dir))
    sizes = [len(take_all(s)[1]) for s in (raw.train, raw.validation, raw.test)]
    assert sizes == [40, 6, 8]


def test_version_pin(tfds_dir: Path):
    raw = load_tfds("zoo_tiny_shapes:1.0.0", data_dir=str(tfds_dir))
    assert raw.name == "zoo_tiny_shapes"
    with pytest.raises(ValueError, match=r"zoo_tiny_shapes:9\.9\.9"):
        load_tfds("zoo_tiny_shapes:9.9.9", data_dir=str(tfds_dir))


def test_feeds_the_pipeline(tfds_dir: Path):
    raw = load_tfds("zoo_tiny_shapes", data_dir=str(tfds_dir))
    data = build_datasets(raw, batch_size=16, image_size=(12, 10), channels=3)
    images, labels = next(iter(data.train))
    assert images.shape == (16, 12, 10, 3) and images.dtype == tf.float32
    assert labels.dtype == tf.int32
    assert data.spec.input_shape == (12, 10, 3)
    assert data.spec.class_names == TINY_CLASSES


def test_not_prepared_gives_one_clear_error(tmp_path: Path):
    with pytest.raises(ValueError) as error:
        load_tfds("mnist", data_dir=str(tmp_path), download=False)
    message = str(error.value)
    for fact in ("'mnist'", str(tmp_path), "download=true", "tfds build mnist"):
        assert fact in message
    assert error.value.__context__ is None  # No chained 30-line traceback.


def test_unknown_name(tmp_path: Path):
    with pytest.raises(ValueError, match="'no_such_data_set' is unknown"):
        load_tfds("no_such_data_set", data_dir=str(tmp_path))


def test_bad_split_and_fraction(tfds_dir: Path):
    with pytest.raises(ValueError, match=r"no split\(s\) \['holdout'\]"):
        load_tfds("zoo_tiny_shapes", data_dir=str(tfds_dir), test_split="holdout")
    with pytest.raises(ValueError, match="validation_fraction must be in"):
        load_tfds("zoo_tiny_shapes", data_dir=str(tfds_dir), validation_fraction=1.0)


def test_named_people_load_as_examples(tfds_dir: Path, caplog: pytest.LogCaptureFixture):
    """An LFW-shaped set (one split, person names as Text labels) as in-memory Examples."""
    with caplog.at_level("INFO"):
        people = load_tfds_examples("zoo_tiny_people", data_dir=str(tfds_dir), min_per_class=4)
    kept = sorted(name for name, count in PEOPLE.items() if count >= 4)
    assert people.class_names == tuple(kept)  # "cyd" has 2 images: dropped
    assert len(people.labels) == sum(PEOPLE[name] for name in kept)
    assert people.images.dtype == np.uint8 and people.images.shape[1:] == (8, 8, 3)
    index = people.images[:, 0, 0, 0].astype(int) // 5  # the generator wrote 5 * index
    assert [people.class_names[label] for label in people.labels] == [person_of(i) for i in index]
    assert "26 of 28 examples kept, 5 classes with >= 4 examples" in caplog.text


def test_named_people_split_by_identity(tfds_dir: Path):
    people = load_tfds_examples("zoo_tiny_people", data_dir=str(tfds_dir), min_per_class=4)
    raw = split_examples(people, validation=0.2, test=0.4, by="identity", seed=0)
    train_names = set(raw.class_names)
    _, test_labels = take_all(raw.test)
    test_names = {people.class_names[label] for label in test_labels}
    assert test_names and train_names and not test_names & train_names
    assert train_names | test_names == set(people.class_names)


def test_class_label_sets_load_as_examples_too(tfds_dir: Path):
    shapes = load_tfds_examples("zoo_tiny_shapes", data_dir=str(tfds_dir))
    assert shapes.class_names == tuple(sorted(TINY_CLASSES))
    index = shapes.images[:, 0, 0, 0].astype(int) // 3
    names = [shapes.class_names[label] for label in shapes.labels]
    assert names == [TINY_CLASSES[i % len(TINY_CLASSES)] for i in index]


def test_min_per_class_too_high_is_clear(tfds_dir: Path):
    with pytest.raises(ValueError, match=r"no class has min_per_class=50 examples.*largest has 6"):
        load_tfds_examples("zoo_tiny_people", data_dir=str(tfds_dir), min_per_class=50)
    with pytest.raises(ValueError, match="min_per_class must be >= 1, got 0"):
        load_tfds_examples("zoo_tiny_people", data_dir=str(tfds_dir), min_per_class=0)
