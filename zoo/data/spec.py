"""The types that travel between data sources, the tf.data pipeline and the model builders."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class DataSpec:
    """What a model builder needs to know about its data, and nothing more.

    Attributes:
        name: the data set's name, e.g. ``"mnist"``.
        input_shape: ``(height, width, channels)`` of one model input, after the pipeline.
        num_classes: number of labels.
        class_names: one readable name per label, in label order.
    """

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class Examples:
    """Labelled images before any split.

    Attributes:
        name: the data set's name.
        images: ``uint8`` array ``(n, height, width, channels)`` held in memory, or a
            string array ``(n,)`` of image file paths decoded by the pipeline.
        labels: ``int64`` array ``(n,)`` with values in ``[0, len(class_names))``.
        class_names: one name per label.
        shapes: for file paths whose sizes the source knows without decoding again (an
            image folder's remembered check): ``{(height, width, channels): first file of
            that shape}``; ``None`` when unknown.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    shapes: Mapping[tuple[int, int, int], str] | None = None

    @property
    def from_files(self) -> bool:
        return self.images.dtype.kind in "US"


@dataclass(frozen=True)
class RawSplits:
    """Unbatched ``(image uint8 [h, w, c], label int64)`` datasets, one per split.

    For file sources the image is a ``tf.string`` file path, decoded by the pipeline, and
    ``shapes`` (when known) is ``Examples.shapes`` over all splits. For sources of records
    (packed shards) the image is an ``int64`` record key and ``read`` turns a batch of keys
    into the images' encoded bytes (JPEG or PNG), decoded by the pipeline; such a source
    always knows its ``shapes``.
    """

    name: str
    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    class_names: tuple[str, ...]
    shapes: Mapping[tuple[int, int, int], str] | None = None
    read: Callable[[tf.Tensor], tf.Tensor] | None = None


@dataclass(frozen=True)
class DataSplits:
    """Batched ``(image float32 [b, h, w, c] in [0, 1], label int32 [b])`` datasets + spec.

    ``train`` reshuffles on every pass; ``train_epochs(first, last, skip)``, when the
    pipeline offers it, gives epochs ``[first, last)`` less the first ``skip`` batches, each
    epoch in an order that depends only on the seed and the epoch (for resuming).
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    spec: DataSpec
    train_epochs: Callable[[int, int, int], tf.data.Dataset] | None = None
