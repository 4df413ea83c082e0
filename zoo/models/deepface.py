"""DeepFace (Taigman, Yang, Ranzato and Wolf, CVPR 2014), layer by layer as in its Fig. 2."""

import os

import keras

from zoo.data.spec import DataSpec
from zoo.layers import LocallyConnected2D
from zoo.layers.legacy import load_legacy_weights, read_legacy_h5
from zoo.models.inputs import model_inputs

INPUT_SHAPE = (152, 152, 3)
REPRESENTATION_LAYER = "F7"


def build_deepface(
    spec: DataSpec | None = None,
    representation_units: int = 4096,
    dropout: float = 0.5,
    activation: str = "relu",
    kernel_initializer: str | dict = "glorot_uniform",
    bias_initializer: str | dict = "zeros",
    *,
    num_classes: int | None = None,
) -> keras.Model:
    """The DeepFace network for K identities (`num_classes=`, or a `DataSpec`'s).

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
        spec: input shape (must be 152x152x3) and number of identities K, as `train.py`
            passes them; or None and `num_classes=K`.
        representation_units: width of F7 (4096 in the paper).
        dropout: dropout rate on F7 (the paper's only dropout).
        activation: activation after every layer but F8.
        kernel_initializer, bias_initializer: for every weighted layer. The paper used
            N(0, 0.01) weights and 0.5 biases; the default (Glorot uniform with
            per-position fans in the locally connected layers, zero biases) trains
            from scratch on small data sets without tuning.
        num_classes: K, without a spec.

    Returns:
        The classifier; `deepface_representation(model)` gives the F7 embedding model.

    Example:
        >>> model = build_deepface(num_classes=8631)  # the VGGFace2 identities
        >>> model.output_shape, f"{model.count_params():,}"
        ((None, 8631), '137,774,071')
    """
    input_shape, num_classes = model_inputs(
        "build_deepface", spec, None, num_classes, default_shape=INPUT_SHAPE
    )
    if input_shape != INPUT_SHAPE:
        raise ValueError(
            f"DeepFace is defined for {INPUT_SHAPE[0]}x{INPUT_SHAPE[1]}x{INPUT_SHAPE[2]} "
            f"aligned faces, but data set {spec.name!r} gives {input_shape}. "
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
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="F8", **weights)(x)
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


def load_keras2_deepface(path: str | os.PathLike) -> tuple[keras.Model, keras.Model]:
    """`(classifier, F7 embedding model)` from a Keras 2 DeepFace weights file, in one call.

    The file is the `.h5` of the Sequential the popular Keras DeepFace ports build
    (`C1, M2, C3, L4, L5, L6, F0, F7, D0, F8`), e.g. `VGGFace2_DeepFace_weights_val-0.9034.h5`
    (8631 identities), from `save_weights` or `model.save`. The number of identities and
    the width of F7 are read from the file; the weights go through `load_legacy_weights`
    (layers paired in order, locally connected kernels of any legacy implementation
    converted), so a file of another architecture fails with the layer and both shapes.

    Example, with the file from the DeepFace ports' releases::

        model, embedding = load_keras2_deepface("VGGFace2_DeepFace_weights_val-0.9034.h5")
        model.output_shape      # (None, 8631)
        embedding.output_shape  # (None, 4096): F7, before dropout
    """
    weighted = dict(read_legacy_h5(path))
    missing = [name for name in ("F7", "F8") if name not in weighted]
    if missing:
        raise ValueError(
            f"{os.fspath(path)!r} has no layer(s) {missing} (it has {sorted(weighted)}); "
            "expected the Keras 2 DeepFace Sequential C1, M2, C3, L4, L5, L6, F0, F7, D0, F8."
        )
    model = build_deepface(
        representation_units=weighted["F7"][0].shape[-1], num_classes=weighted["F8"][0].shape[-1]
    )
    load_legacy_weights(model, path)
    return model, deepface_representation(model)
