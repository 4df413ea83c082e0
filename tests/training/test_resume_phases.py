"""A run resumed mid-epoch trains in phases: training begins and ends once, as uninterrupted."""

import keras
import numpy as np
import tensorflow as tf

from zoo.data.spec import DataSpec, DataSplits
from zoo.training.resume import fit_phases


class Record(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append("begin")

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(f"epoch {epoch}")

    def on_train_end(self, logs=None):
        self.events.append("end")


def test_a_resume_mid_epoch_begins_and_ends_training_once():
    rng = np.random.default_rng(0)
    images = rng.random((20, 2, 2, 1), np.float32)
    labels = rng.integers(0, 2, 20).astype(np.int32)
    batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)  # 5 per epoch

    def train_epochs(first, last, skip=0):
        return batches.repeat(last - first).skip(skip)

    spec = DataSpec("toy", (2, 2, 1), 2, ("a", "b"))
    data = DataSplits(batches, batches, batches, spec, train_epochs)
    model = keras.Sequential(
        [keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(2)]
    )
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    record = Record()
    fit_phases(model, data, [record], epoch=1, step=3, epochs=3, steps_per_epoch=5, verbose=0)
    assert record.events == ["begin", "epoch 1", "epoch 2", "end"]
