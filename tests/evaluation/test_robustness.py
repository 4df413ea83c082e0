"""Translation robustness against hand-worked shifts of a hand-built classifier."""

import keras
import numpy as np
import pytest

from zoo.evaluation import robustness


def test_shift_images_moves_pixels_and_zero_fills():
    image = np.arange(1, 10, dtype="float32").reshape(1, 3, 3, 1)
    right = robustness.shift_images(image, 0, 1)[0, ..., 0]
    np.testing.assert_array_equal(right, [[0, 1, 2], [0, 4, 5], [0, 7, 8]])
    up = robustness.shift_images(image, -2, 0)[0, ..., 0]
    np.testing.assert_array_equal(up, [[7, 8, 9], [0, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match=r"lower robustness\.max_shift"):
        robustness.shift_images(image, 3, 0)


def _left_or_right_model() -> keras.Model:
    """Class 0 when the image's mass is in the left two columns of 4x4, else class 1."""
    inputs = keras.Input((4, 4, 1))
    dense = keras.layers.Dense(2)
    outputs = dense(keras.layers.Flatten()(inputs))
    left = np.tile([1.0, 1.0, 0.0, 0.0], 4)
    dense.set_weights([np.stack([left, 1 - left], axis=1), np.array([0.0, 0.1])])
    return keras.Model(inputs, outputs)


def test_shift_curve_of_a_hand_worked_case():
    image = np.zeros((1, 4, 4, 1), "float32")
    image[0, 1, 1, 0] = 1.0  # left half: class 0
    # 1 px: right -> column 2 (wrong), left/down/up stay in the left half: 3/4.
    # 2 px: right -> column 3 (wrong), left and up leave the image (empty -> class 1, wrong),
    # down -> row 3, column 1 (right): 1/4.
    curve = robustness.shift_curve(_left_or_right_model(), image, np.array([0]), max_shift=2)
    assert curve == {0: 1.0, 1: 0.75, 2: 0.25}
    metrics = robustness.metrics(curve)
    assert metrics["shift_1px_accuracy"] == 0.75
    assert metrics["shift_retained_at_2px"] == 0.25


def test_a_classifier_function_gets_the_same_curve_as_the_equivalent_model():
    image = np.zeros((1, 4, 4, 1), "float32")
    image[0, 1, 1, 0] = 1.0

    def left_or_right(images: np.ndarray) -> np.ndarray:  # what a scikit-learn baseline gives
        left, right = images[:, :, :2].sum(axis=(1, 2, 3)), images[:, :, 2:].sum(axis=(1, 2, 3))
        return np.where(left > right, 0, 1)

    curve = robustness.shift_curve(left_or_right, image, np.array([0]), max_shift=2)
    assert curve == robustness.shift_curve(_left_or_right_model(), image, np.array([0]), 2)
    assert curve == {0: 1.0, 1: 0.75, 2: 0.25}
