"""Classification streams the test split: the figures of the whole split held at once."""

import keras
import numpy as np
import tensorflow as tf

from zoo.evaluation.job import _stream_predictions


def test_streamed_figures_equal_those_of_the_whole_split_at_once():
    rng = np.random.default_rng(0)
    images = rng.random((50, 4, 4, 1), np.float32)
    labels = rng.integers(0, 7, 50).astype(np.int32)
    model = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(7, "softmax")]
    )
    test = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)  # 16, 16, 16, 2
    stream = _stream_predictions(model, test, keep=20, wrong_kept=3)

    probabilities = model.predict(images, verbose=0)  # the whole split at once, by hand
    expected_loss = -np.mean(np.log(probabilities[np.arange(50), labels]))
    predicted = probabilities.argmax(-1)
    np.testing.assert_allclose(stream["loss"], expected_loss, rtol=1e-5)
    np.testing.assert_array_equal(stream["predicted"], predicted)
    np.testing.assert_array_equal(stream["labels"], labels)
    top5 = [label in np.argsort(-row)[:5] for row, label in zip(probabilities, labels, strict=True)]
    np.testing.assert_array_equal(stream["top5"], top5)
    np.testing.assert_array_equal(stream["images"], images[:20])
    np.testing.assert_array_equal(stream["image_labels"], labels[:20])
    wrong = np.flatnonzero(predicted != labels)[:3]
    assert [(t, p) for _, t, p in stream["wrong"]] == [(labels[i], predicted[i]) for i in wrong]
    np.testing.assert_array_equal(stream["wrong"][0][0], images[wrong[0]])
