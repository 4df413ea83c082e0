"""The small CNN of the seed articles, and the same network with unshared filters (`lcn`)."""

import keras

from zoo.data.spec import DataSpec
from zoo.layers import LocallyConnected2D
from zoo.models.inputs import model_inputs


def build_cnn(
    spec: DataSpec | None = None,
    filters: int = 32,
    kernel_size: int = 3,
    padding: str = "same",
    pool_size: int = 2,
    hidden_units: int = 128,
    activation: str = "relu",
    dropout: float = 0.0,
    locally_connected: bool = False,
    *,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
) -> keras.Model:
    """Conv (or locally connected) -> max pool -> dense -> dense classes.

    With the defaults on 28x28x1 MNIST: the conv has 3*3*1*32 = 288 weights, the hidden
    dense layer 14*14*32*128 = 802,816; with `locally_connected=True` the first layer
    becomes a `LocallyConnected2D` of the same shape (28*28 = 784 filters of 288 weights),
    everything else unchanged. That single flag is the comparison the seeds talk about.

    Args:
        spec: input shape and number of classes (what `train.py` passes), or None and
            `input_shape=`, `num_classes=`.
        filters, kernel_size, padding: the first layer's shape.
        pool_size: max-pooling window and stride.
        hidden_units: width of the hidden dense layer.
        activation: activation of the first and hidden layers.
        dropout: dropout rate before the classifier (0 disables it).
        locally_connected: unshared filters (one per output position) instead of a conv.
        input_shape: `(height, width, channels)` of one image, without a spec.
        num_classes: number of classes, without a spec.

    Returns:
        A model mapping `(batch, *input_shape)` to `(batch, classes)` probabilities.

    Example:
        >>> lcn = build_cnn(input_shape=(28, 28, 1), num_classes=10, locally_connected=True)
        >>> tuple(lcn.get_layer("local").kernel.shape)  # a 3x3x1 filter bank per position
        (784, 9, 32)
    """
    input_shape, num_classes = model_inputs("build_cnn", spec, input_shape, num_classes)
    layer_cls = LocallyConnected2D if locally_connected else keras.layers.Conv2D
    inputs = keras.Input(input_shape, name="image")
    x = layer_cls(
        filters,
        kernel_size,
        padding=padding,
        activation=activation,
        name="local" if locally_connected else "conv",
    )(inputs)
    x = keras.layers.MaxPooling2D(pool_size, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(hidden_units, activation=activation, name="hidden")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="lcn" if locally_connected else "cnn")
