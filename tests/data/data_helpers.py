"""Helpers shared by the data tests: a tiny local TFDS data set and dataset readers."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

TINY_CLASSES = ("circle", "square", "triangle", "star")
TINY_SHAPE = (6, 5, 1)


def tiny_image(index: int) -> np.ndarray:
    """The generator's image ``index``: every pixel equals ``3 * index``."""
    return np.full(TINY_SHAPE, 3 * index, dtype=np.uint8)


class ZooTinyShapes(tfds.core.GeneratorBasedBuilder):
    """A 48-example TFDS data set generated locally: train (40) and test (8), no validation."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=TINY_SHAPE),
                    "label": tfds.features.ClassLabel(names=TINY_CLASSES),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 40), "test": self._generate_examples(40, 48)}

    def _generate_examples(self, start: int, stop: int):
        for index in range(start, stop):
            yield index, {"image": tiny_image(index), "label": index % len(TINY_CLASSES)}


class ZooTinyShapesWithValidation(ZooTinyShapes):
    """The same, plus its own 6-example validation split."""

    def _split_generators(self, dl_manager):
        return {
            "train": self._generate_examples(0, 40),
            "validation": self._generate_examples(40, 46),
            "test": self._generate_examples(46, 54),
        }


PEOPLE = {"ada": 6, "bob": 5, "cyd": 2, "dee": 4, "eve": 6, "fay": 5}  # images per person
PERSON_SHAPE = (8, 8, 3)


def person_image(index: int) -> np.ndarray:
    """The people generator's image ``index``: every pixel equals ``5 * index``."""
    return np.full(PERSON_SHAPE, 5 * index, dtype=np.uint8)


def person_of(index: int) -> str:
    """Whose image ``index`` is (images are numbered person by person, in PEOPLE's order)."""
    for name, count in PEOPLE.items():
        if index < count:
            return name
        index -= count
    raise IndexError(index)


class ZooTinyPeople(tfds.core.GeneratorBasedBuilder):
    """Shaped like TFDS ``lfw``: one ``train`` split, labels are person names (``Text``)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {"image": tfds.features.Image(shape=PERSON_SHAPE), "label": tfds.features.Text()}
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for index in range(sum(PEOPLE.values())):
            yield index, {"image": person_image(index), "label": person_of(index)}


def take_all(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """All ``(images, labels)`` of an unbatched or batched dataset, as NumPy arrays."""
    images, labels = [], []
    for image, label in dataset.as_numpy_iterator():
        images.append(image)
        labels.append(label)
    if images and np.ndim(labels[0]) == 1:
        return np.concatenate(images), np.concatenate(labels)
    return np.asarray(images), np.asarray(labels)
