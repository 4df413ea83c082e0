"""The reference architectures against the seed articles' and the DeepFace paper's hand counts."""

import doctest

import keras
import numpy as np
import pytest

from zoo.data.spec import DataSpec
from zoo.layers import LocallyConnected2D
from zoo.models import build_cnn, build_deepface, build_mlp, deepface_representation
from zoo.models import cnn as cnn_module
from zoo.models import deepface as deepface_module
from zoo.models import mlp as mlp_module


def _spec(shape, classes, name="test"):
    return DataSpec(name, shape, classes, tuple(str(i) for i in range(classes)))


MNIST = _spec((28, 28, 1), 10, "mnist")


def _weights(layer):
    return int(np.prod(layer.kernel.shape))


def test_mlp_matches_the_seed_counts():
    model = build_mlp(MNIST)
    assert _weights(model.get_layer("hidden")) == 784 * 128 == 100_352
    assert model.output_shape == (None, 10)


def test_cnn_matches_the_seed_counts():
    model = build_cnn(MNIST)
    assert _weights(model.get_layer("conv")) == 3 * 3 * 1 * 32 == 288
    assert _weights(model.get_layer("hidden")) == 14 * 14 * 32 * 128 == 802_816
    assert _weights(model.get_layer("classes")) == 128 * 10 == 1_280


def test_lcn_is_the_cnn_with_unshared_filters():
    cnn, lcn = build_cnn(MNIST), build_cnn(MNIST, locally_connected=True)
    local = lcn.get_layer("local")
    assert isinstance(local, LocallyConnected2D)
    assert local.output.shape == cnn.get_layer("conv").output.shape == (None, 28, 28, 32)
    assert _weights(local) == 28 * 28 * 288  # one 3x3x1x32 filter bank per position
    others = [layer.name for layer in cnn.layers if layer.name != "conv"]
    assert others == [layer.name for layer in lcn.layers if layer.name != "local"]
    for name in ("hidden", "classes"):
        assert lcn.get_layer(name).count_params() == cnn.get_layer(name).count_params()


# (name, output shape, weights + biases) from the paper's Fig. 2 / shared/reference/deepface.md
DEEPFACE_TABLE = [
    ("C1", (142, 142, 32), 11_648),
    ("M2", (71, 71, 32), 0),
    ("C3", (63, 63, 16), 41_488),
    ("L4", (55, 55, 16), 62_774_800),
    ("L5", (25, 25, 16), 7_850_000),
    ("L6", (21, 21, 16), 2_829_456),
    ("F7", (4096,), 28_905_472),
    ("F8", (4030,), 16_510_910),
]


def test_deepface_matches_the_paper_layer_by_layer():
    model = build_deepface(_spec((152, 152, 3), 4030))
    for name, shape, parameters in DEEPFACE_TABLE:
        layer = model.get_layer(name)
        assert layer.output.shape[1:] == shape, name
        assert layer.count_params() == parameters, name
    assert model.count_params() == sum(p for _, _, p in DEEPFACE_TABLE)
    local = sum(model.get_layer(n).count_params() for n in ("L4", "L5", "L6", "F7", "F8"))
    assert local / model.count_params() > 0.95  # "more than 95% from local and fc layers"
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert [d.name for d in dropouts] == ["F7_dropout"]


def test_deepface_representation_is_f7():
    model = build_deepface(_spec((152, 152, 3), 7), representation_units=32)
    representation = deepface_representation(model)
    faces = np.random.default_rng(0).uniform(size=(2, 152, 152, 3)).astype("float32")
    features = representation.predict(faces, verbose=0)
    assert features.shape == (2, 32)
    assert (features >= 0).all()  # F7 is a ReLU output
    assert representation.get_layer("F7") is model.get_layer("F7")  # shared weights


def test_deepface_rejects_other_sizes_with_the_fix():
    with pytest.raises(ValueError, match=r"gives \(112, 92, 1\).*data.image_size=\[152,152\]"):
        build_deepface(_spec((112, 92, 1), 40, "orl_faces"))


def test_builders_take_plain_arguments_instead_of_a_spec():
    mlp = build_mlp(input_shape=(28, 28, 1), num_classes=10)
    assert mlp.count_params() == (784 * 128 + 128) + (128 * 10 + 10)
    lcn = build_cnn(input_shape=(28, 28, 1), num_classes=10, locally_connected=True)
    assert lcn.count_params() == build_cnn(MNIST, locally_connected=True).count_params()
    deepface = build_deepface(num_classes=4030)
    assert deepface.count_params() == sum(p for _, _, p in DEEPFACE_TABLE)


def test_builders_refuse_a_spec_and_plain_arguments_together_or_neither():
    with pytest.raises(
        ValueError, match=r"build_mlp: pass a DataSpec or input_shape=/num_classes="
    ):
        build_mlp(MNIST, num_classes=3)
    fix = r"e\.g\. build_cnn\(num_classes=10, input_shape=\(28, 28, 1\)\)"
    with pytest.raises(ValueError, match=rf"build_cnn needs num_classes and input_shape .*{fix}"):
        build_cnn(num_classes=10)
    with pytest.raises(ValueError, match=r"e\.g\. build_deepface\(num_classes=10\)"):
        build_deepface()
    with pytest.raises(ValueError, match=r"num_classes must be a positive integer, got 0"):
        build_mlp(input_shape=(8, 8, 1), num_classes=0)


@pytest.mark.parametrize("module", [mlp_module, cnn_module, deepface_module])
def test_docstring_examples_run(module):
    results = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert results.attempted > 0 and results.failed == 0, results
