"""The zoo layers against the Keras 2 layers they replace (tf-keras, a test-only dependency)."""

import keras
import numpy as np
import pytest
import tf_keras
from conftest import gradients
from keras import ops

from zoo.layers import LocallyConnected1D, LocallyConnected2D
from zoo.layers.legacy import convert_legacy_weights, load_legacy_weights

CASES_2D = [
    # (implementation, data_format, padding, strides, kernel_size, input spatial)
    (1, "channels_last", "valid", (1, 1), (3, 3), (7, 6)),
    (1, "channels_first", "valid", (2, 1), (3, 2), (8, 7)),
    (2, "channels_last", "same", (1, 1), (3, 3), (6, 5)),
    (2, "channels_first", "valid", (2, 2), (3, 3), (7, 7)),
    (3, "channels_last", "valid", (1, 2), (2, 3), (6, 7)),
    (3, "channels_first", "same", (2, 2), (3, 3), (7, 9)),
]


def _legacy_and_zoo(
    implementation, data_format, padding, strides, kernel_size, spatial, rng, rank=2
):
    channels, filters = 3, 4
    shape = (*spatial, channels) if data_format == "channels_last" else (channels, *spatial)
    legacy_cls = (
        tf_keras.layers.LocallyConnected2D if rank == 2 else (tf_keras.layers.LocallyConnected1D)
    )
    zoo_cls = LocallyConnected2D if rank == 2 else LocallyConnected1D
    legacy = legacy_cls(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        data_format=data_format,
        implementation=implementation,
    )
    legacy.build((None, *shape))
    legacy.set_weights([rng.normal(size=w.shape).astype("float32") for w in legacy.weights])
    layer = zoo_cls(filters, kernel_size, strides=strides, padding=padding, data_format=data_format)
    layer.build((None, *shape))
    layer.set_weights(convert_legacy_weights(layer, legacy.get_weights()))
    x = rng.normal(size=(2, *shape)).astype("float32")
    return legacy, layer, x


@pytest.mark.parametrize("case", CASES_2D, ids=str)
def test_outputs_match_legacy_2d(case, rng):
    legacy, layer, x = _legacy_and_zoo(*case, rng)
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(x)), legacy(x).numpy(), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    "implementation,data_format,padding",
    [
        (1, "channels_last", "valid"),
        (1, "channels_first", "valid"),
        (2, "channels_last", "same"),
        (3, "channels_first", "same"),
    ],
)
def test_outputs_match_legacy_1d(implementation, data_format, padding, rng):
    legacy, layer, x = _legacy_and_zoo(
        implementation, data_format, padding, 2, 3, (9,), rng, rank=1
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(x)), legacy(x).numpy(), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_gradients_match_legacy(data_format, rng):
    import tensorflow as tf

    legacy, layer, x = _legacy_and_zoo(1, data_format, "valid", (2, 1), (3, 2), (8, 7), rng)
    upstream = rng.normal(size=legacy.compute_output_shape(x.shape)).astype("float32")
    x_tf = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_tf)
        loss = tf.reduce_sum(legacy(x_tf) * upstream)
    legacy_grads = tape.gradient(loss, [x_tf, legacy.kernel, legacy.bias])

    def zoo_loss(inputs, kernel, bias):
        outputs, _ = layer.stateless_call([kernel, bias], [], inputs)
        return ops.sum(outputs * ops.convert_to_tensor(upstream))

    kernel, bias = layer.get_weights()
    x_grad, kernel_grad, bias_grad = gradients(zoo_loss, x, kernel, bias)
    # The conversion is a re-indexing, so it maps legacy gradients to the zoo layout too.
    expected_kernel, expected_bias = convert_legacy_weights(
        layer, [legacy_grads[1].numpy(), legacy_grads[2].numpy()]
    )
    np.testing.assert_allclose(x_grad, legacy_grads[0].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(kernel_grad, expected_kernel, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bias_grad, expected_bias, rtol=1e-4, atol=1e-4)


def _legacy_model(data_format="channels_last"):
    shape = (13, 13, 1) if data_format == "channels_last" else (1, 13, 13)
    return tf_keras.Sequential(
        [
            tf_keras.Input(shape),
            tf_keras.layers.LocallyConnected2D(4, 3, activation="relu", data_format=data_format),
            tf_keras.layers.LocallyConnected2D(
                3, 3, strides=2, padding="same", implementation=2, data_format=data_format
            ),
            tf_keras.layers.LocallyConnected2D(2, 2, implementation=3, data_format=data_format),
            tf_keras.layers.Flatten(),
            tf_keras.layers.Dense(5),
        ]
    )


def _zoo_model(data_format="channels_last", first_filters=4):
    shape = (13, 13, 1) if data_format == "channels_last" else (1, 13, 13)
    return keras.Sequential(
        [
            keras.Input(shape),
            LocallyConnected2D(first_filters, 3, activation="relu", data_format=data_format),
            LocallyConnected2D(3, 3, strides=2, padding="same", data_format=data_format),
            LocallyConnected2D(2, 2, data_format=data_format),
            keras.layers.Flatten(),
            keras.layers.Dense(5),
        ]
    )


def _randomise_legacy(model, rng):
    model.set_weights(
        [rng.normal(size=w.shape).astype("float32") * 0.3 for w in model.get_weights()]
    )


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("save", ["weights", "model"])
def test_keras2_h5_file_loads_and_predicts_the_same(tmp_path, data_format, save, rng):
    legacy = _legacy_model(data_format)
    _randomise_legacy(legacy, rng)
    path = tmp_path / "legacy.h5"
    if save == "weights":
        legacy.save_weights(path)
    else:
        legacy.save(path)
    model = _zoo_model(data_format)
    load_legacy_weights(model, path)
    x = rng.normal(size=(3, *legacy.input_shape[1:])).astype("float32")
    np.testing.assert_allclose(
        model.predict(x, verbose=0), legacy.predict(x, verbose=0), rtol=1e-4, atol=1e-5
    )


def test_plain_keras_load_weights_reads_a_mode_1_file(tmp_path, rng):
    """Mode 1, channels_last: the layout is the legacy one, so Keras's own loader works."""
    legacy = tf_keras.Sequential(
        [
            tf_keras.Input((9, 9, 2)),
            tf_keras.layers.LocallyConnected2D(4, 3, strides=2),
            tf_keras.layers.Flatten(),
            tf_keras.layers.Dense(2),
        ]
    )
    _randomise_legacy(legacy, rng)
    legacy.save_weights(tmp_path / "legacy.h5")
    model = keras.Sequential(
        [
            keras.Input((9, 9, 2)),
            LocallyConnected2D(4, 3, strides=2),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    model.load_weights(tmp_path / "legacy.h5")
    x = rng.normal(size=(2, 9, 9, 2)).astype("float32")
    np.testing.assert_allclose(
        model.predict(x, verbose=0), legacy.predict(x, verbose=0), rtol=1e-4, atol=1e-5
    )


def test_mismatched_file_names_the_layer_and_shapes(tmp_path, rng):
    legacy = _legacy_model()
    legacy.save_weights(tmp_path / "legacy.h5")
    model = _zoo_model(first_filters=6)
    with pytest.raises(
        ValueError,
        match=r"has shape \(121, 9, 6\), but the file holds "
        r"\(121, 9, 4\)",
    ):
        load_legacy_weights(model, tmp_path / "legacy.h5")


def test_layer_count_mismatch_and_missing_file_are_clear(tmp_path):
    legacy = _legacy_model()
    legacy.save_weights(tmp_path / "legacy.h5")
    short = keras.Sequential([keras.Input((13, 13, 1)), LocallyConnected2D(4, 3)])
    with pytest.raises(ValueError, match="holds weights for 4 layers"):
        load_legacy_weights(short, tmp_path / "legacy.h5")
    with pytest.raises(FileNotFoundError, match=r"missing\.h5"):
        load_legacy_weights(short, tmp_path / "missing.h5")


def test_unrepresentable_legacy_same_padding_is_refused(rng):
    """Legacy 'same' centres windows at k // 2; Conv's 'same' pads less for even inputs and
    stride 2, so those weights cannot be loaded exactly and must not be loaded silently."""
    legacy = tf_keras.layers.LocallyConnected2D(2, 3, strides=2, padding="same", implementation=2)
    legacy.build((None, 8, 8, 1))
    layer = LocallyConnected2D(2, 3, strides=2, padding="same")
    layer.build((None, 8, 8, 1))
    with pytest.raises(ValueError, match="cannot be represented exactly"):
        convert_legacy_weights(layer, legacy.get_weights())
