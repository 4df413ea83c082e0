"""The resumable train order: each epoch a permutation fixed by (seed, epoch), skippable."""

import numpy as np
import tensorflow as tf
from data_helpers import take_all

from zoo.data.pipeline import build_datasets, epoch_seed
from zoo.data.spec import RawSplits


def _data(seed: int = 3, augment: dict | None = None):
    images = np.random.default_rng(0).integers(1, 256, (23, 5, 5, 1), dtype=np.uint8)
    split = tf.data.Dataset.from_tensor_slices((images, np.arange(23, dtype=np.int64)))
    raw = RawSplits("arrays", split, split, split, tuple(str(i) for i in range(23)))
    return build_datasets(raw, batch_size=4, augment=augment, seed=seed)


def _batches(dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(images, labels) for images, labels in dataset.as_numpy_iterator()]


def test_every_epoch_is_a_permutation_that_depends_on_seed_and_epoch_only():
    data = _data()
    batches = _batches(data.train_epochs(0, 3, 0))
    assert len(batches) == 3 * 6  # 23 examples in batches of 4: 6 per epoch, the last of 3
    epochs = [np.concatenate([b[1] for b in batches[6 * e : 6 * e + 6]]) for e in range(3)]
    for labels in epochs:
        assert sorted(labels.tolist()) == list(range(23))  # nothing twice, nothing missed
    assert len({tuple(labels) for labels in epochs}) == 3  # reshuffled every epoch
    again = _data()  # a new process builds the same pipeline: same orders
    assert take_all(again.train_epochs(1, 2, 0))[1].tolist() == epochs[1].tolist()
    assert take_all(_data(seed=4).train_epochs(1, 2, 0))[1].tolist() != epochs[1].tolist()
    assert epoch_seed(3, 1) != epoch_seed(3, 2) != epoch_seed(4, 1)


def test_a_resumed_stream_is_the_tail_of_the_uninterrupted_one_augmentation_included():
    augment = {"horizontal_flip": True, "max_shift": 1}
    full = _batches(_data(augment=augment).train_epochs(0, 3, 0))
    resumed = _batches(_data(augment=augment).train_epochs(1, 3, 4))  # epoch 1, batch 4 on
    assert len(resumed) == len(full) - 6 - 4
    for (want_images, want_labels), (images, labels) in zip(full[10:], resumed, strict=True):
        np.testing.assert_array_equal(labels, want_labels)
        np.testing.assert_array_equal(images, want_images)
