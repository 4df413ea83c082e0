"""`load_keras2_deepface` on the Sequential of the popular Keras 2 DeepFace ports, built and
saved by tf_keras here; every layer's weights are compared with tf_keras' own.

Weights, not outputs: a tf_keras forward pass through L4 (3,025 positions, its mode-1 loop)
takes minutes on two cores, and tests/layers/test_legacy.py already checks the converted
layers' outputs against tf_keras. Mode-1 channels_last kernels keep their layout.
"""

import numpy as np
import pytest
import tf_keras

from zoo.models import load_keras2_deepface

IDENTITIES, F7_UNITS = 7, 32  # the real file has 8631 and 4096; the file says which


def _keras2_deepface() -> tf_keras.Sequential:
    """The ports' network, layer names and all (C1, M2, C3, L4, L5, L6, F0, F7, D0, F8)."""
    layers = tf_keras.layers
    return tf_keras.Sequential(
        [
            layers.Conv2D(32, 11, activation="relu", name="C1", input_shape=(152, 152, 3)),
            layers.MaxPooling2D(pool_size=3, strides=2, padding="same", name="M2"),
            layers.Conv2D(16, 9, activation="relu", name="C3"),
            layers.LocallyConnected2D(16, 9, activation="relu", name="L4"),
            layers.LocallyConnected2D(16, 7, strides=2, activation="relu", name="L5"),
            layers.LocallyConnected2D(16, 5, activation="relu", name="L6"),
            layers.Flatten(name="F0"),
            layers.Dense(F7_UNITS, activation="relu", name="F7"),
            layers.Dropout(rate=0.5, name="D0"),
            layers.Dense(IDENTITIES, activation="softmax", name="F8"),
        ]
    )


@pytest.mark.slow
def test_keras2_deepface_file_loads_in_one_call(tmp_path):
    rng = np.random.default_rng(0)
    legacy = _keras2_deepface()
    legacy.set_weights(
        [(rng.normal(size=w.shape) * 0.05).astype("float32") for w in legacy.get_weights()]
    )
    path = tmp_path / "deepface_keras2.h5"
    legacy.save_weights(path)

    model, embedding = load_keras2_deepface(path)
    assert model.output_shape == (None, IDENTITIES)
    assert embedding.output_shape == (None, F7_UNITS)
    for name in ("C1", "C3", "L4", "L5", "L6", "F7", "F8"):
        for ours, theirs in zip(
            model.get_layer(name).get_weights(), legacy.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(ours, theirs, err_msg=name)
    assert embedding.get_layer("F7") is model.get_layer("F7")


def test_a_file_without_f7_and_f8_names_what_it_has(tmp_path):
    small = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(2, name="head")])
    small.save_weights(tmp_path / "other.h5")
    with pytest.raises(ValueError, match=r"no layer\(s\) \['F7', 'F8'\].*\['head'\]"):
        load_keras2_deepface(tmp_path / "other.h5")
