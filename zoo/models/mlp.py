"""The fully connected baseline: flatten -> dense -> dense classes."""

import keras

from zoo.data.spec import DataSpec


def build_mlp(
    spec: DataSpec, hidden_units: int = 128, activation: str = "relu", dropout: float = 0.0
) -> keras.Model:
    """The seed example's MLP. On 28x28 MNIST its first layer has 784 * 128 = 100,352 weights.

    Args:
        spec: input shape and number of classes.
        hidden_units: width of the hidden layer.
        activation: activation of the hidden layer.
        dropout: dropout rate after the hidden layer (0 disables it).

    Returns:
        A model mapping `(batch, *spec.input_shape)` images to `(batch, classes)` softmax
        probabilities.
    """
    inputs = keras.Input(spec.input_shape, name="image")
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dense(hidden_units, activation=activation, name="hidden")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(spec.num_classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="mlp")
