"""DeepFace (Taigman, Yang, Ranzato and Wolf, CVPR 2014), layer by layer as in its Fig. 2."""

import keras

from zoo.data.spec import DataSpec
from zoo.layers import LocallyConnected2D

INPUT_SHAPE = (152, 152, 3)
REPRESENTATION_LAYER = "F7"


def build_deepface(
    spec: DataSpec,
    representation_units: int = 4096,
    dropout: float = 0.5,
    activation: str = "relu",
    kernel_initializer: str | dict = "glorot_uniform",
    bias_initializer: str | dict = "zeros",
) -> keras.Model:
    """The DeepFace network for `spec.num_classes` identities.

    | layer | what                                   | output      |
    |-------|----------------------------------------|-------------|
    | C1    | conv 32 x 11x11, valid                 | 142x142x32  |
    | M2    | max pool 3x3, stride 2, same           | 71x71x32    |
    | C3    | conv 16 x 9x9, valid                   | 63x63x16    |
    | L4    | locally connected 16 x 9x9             | 55x55x16    |
    | L5    | locally connected 16 x 7x7, stride 2   | 25x25x16    |
    | L6    | locally connected 16 x 5x5             | 21x21x16    |
    | F7    | dense 4096, dropout: the representation| 4096        |
    | F8    | dense K, softmax                       | K           |

    ReLU follows every layer but F8. The network is defined for aligned 152x152x3
    faces; other image sizes are resized by the data pipeline (`data.image_size`),
    not by changing the network.

    Args:
        spec: input shape (must be 152x152x3) and number of identities K.
        representation_units: width of F7 (4096 in the paper).
        dropout: dropout rate on F7 (the paper's only dropout).
        activation: activation after every layer but F8.
        kernel_initializer, bias_initializer: for every weighted layer. The paper used
            N(0, 0.01) weights and 0.5 biases; the default (Glorot uniform with
            per-position fans in the locally connected layers, zero biases) trains
            from scratch on small data sets without tuning.

    Returns:
        The classifier; `deepface_representation(model)` gives the F7 embedding model.
    """
    if tuple(spec.input_shape) != INPUT_SHAPE:
        raise ValueError(
            f"DeepFace is defined for {INPUT_SHAPE[0]}x{INPUT_SHAPE[1]}x{INPUT_SHAPE[2]} "
            f"aligned faces, but data set {spec.name!r} gives {tuple(spec.input_shape)}. "
            f"Resize in the pipeline: data.image_size=[152,152] data.channels=3 (the "
            f"model=deepface config sets both)."
        )
    weights = {"kernel_initializer": kernel_initializer, "bias_initializer": bias_initializer}
    inputs = keras.Input(INPUT_SHAPE, name="face")
    x = keras.layers.Conv2D(32, 11, activation=activation, name="C1", **weights)(inputs)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="M2")(x)
    x = keras.layers.Conv2D(16, 9, activation=activation, name="C3", **weights)(x)
    x = LocallyConnected2D(16, 9, activation=activation, name="L4", **weights)(x)
    x = LocallyConnected2D(16, 7, strides=2, activation=activation, name="L5", **weights)(x)
    x = LocallyConnected2D(16, 5, activation=activation, name="L6", **weights)(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(
        representation_units, activation=activation, name=REPRESENTATION_LAYER, **weights
    )(x)
    x = keras.layers.Dropout(dropout, name="F7_dropout")(x)
    outputs = keras.layers.Dense(spec.num_classes, activation="softmax", name="F8", **weights)(x)
    return keras.Model(inputs, outputs, name="deepface")


def deepface_representation(model: keras.Model) -> keras.Model:
    """The F7 representation of a DeepFace classifier: `(batch, 152, 152, 3) -> (batch, 4096)`.

    The output is F7's ReLU activation (before dropout), sharing weights with `model`;
    the paper's normalisation (divide by the training-set maximum, then L2) belongs to
    the verification code, because it needs training-set statistics.
    """
    return keras.Model(
        model.input,
        model.get_layer(REPRESENTATION_LAYER).output,
        name=f"{model.name}_representation",
    )
