"""The fully connected baseline: flatten -> dense -> dense classes."""

import keras

from zoo.data.spec import DataSpec
from zoo.models.inputs import model_inputs


def build_mlp(
    spec: DataSpec | None = None,
    hidden_units: int = 128,
    activation: str = "relu",
    dropout: float = 0.0,
    *,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
) -> keras.Model:
    """The seed example's MLP. On 28x28 MNIST its first layer has 784 * 128 = 100,352 weights.

    Args:
        spec: input shape and number of classes (what `train.py` passes), or None and
            `input_shape=`, `num_classes=`.
        hidden_units: width of the hidden layer.
        activation: activation of the hidden layer.
        dropout: dropout rate after the hidden layer (0 disables it).
        input_shape: `(height, width, channels)` of one image, without a spec.
        num_classes: number of classes, without a spec.

    Returns:
        A model mapping `(batch, *input_shape)` images to `(batch, classes)` softmax
        probabilities.

    Example:
        >>> model = build_mlp(input_shape=(28, 28, 1), num_classes=10)
        >>> model.output_shape
        (None, 10)
        >>> tuple(model.get_layer("hidden").kernel.shape)
        (784, 128)
    """
    input_shape, num_classes = model_inputs("build_mlp", spec, input_shape, num_classes)
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dense(hidden_units, activation=activation, name="hidden")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="mlp")
