"""The fused AdamW and SGD against `keras.optimizers.AdamW` and `SGD`, the references they
must equal."""

import keras
import numpy as np
import pytest

from zoo.training import optimizers


def _run(optimizer_class, steps=6, **kwargs):
    rng = np.random.default_rng(0)
    shapes = [(50, 30), (30,), (4, 3, 2)]
    variables = [
        keras.Variable(rng.normal(size=s).astype("float32"), name=f"w{i}")
        for i, s in enumerate(shapes)
    ]
    optimizer = optimizer_class(**kwargs)
    for _ in range(steps):
        grads = [keras.ops.convert_to_tensor(rng.normal(size=s).astype("float32")) for s in shapes]
        optimizer.apply_gradients(zip(grads, variables, strict=True))
    return [v.numpy() for v in variables], optimizer


ADAMW = (keras.optimizers.AdamW, optimizers.AdamW)
SGD = (keras.optimizers.SGD, optimizers.SGD)


@pytest.mark.parametrize(
    ("classes", "kwargs"),
    [
        (ADAMW, {"learning_rate": 1e-2, "weight_decay": 0.05}),
        (ADAMW, {"learning_rate": 3e-3, "weight_decay": 0.0, "beta_1": 0.8, "epsilon": 1e-4}),
        (
            ADAMW,
            {
                "learning_rate": keras.optimizers.schedules.CosineDecay(1e-2, decay_steps=4),
                "weight_decay": 0.1,
            },
        ),
        (ADAMW, {"learning_rate": 1e-2, "weight_decay": 0.05, "amsgrad": True}),  # Keras's own
        (SGD, {"learning_rate": 1e-2, "momentum": 0.9}),
        (SGD, {"learning_rate": 1e-2, "momentum": 0.8, "nesterov": True}),
        (SGD, {"learning_rate": 5e-2}),  # no momentum slot: plain gradient descent
        (
            SGD,
            {
                "learning_rate": keras.optimizers.schedules.CosineDecay(1e-2, decay_steps=4),
                "momentum": 0.9,
                "weight_decay": 0.01,  # Keras's own decoupled decay, before the fused step
            },
        ),
    ],
    ids=[
        "adamw-decay",
        "adamw-no-decay-other-betas",
        "adamw-schedule",
        "adamw-amsgrad",
        "sgd-momentum",
        "sgd-nesterov",
        "sgd-plain",
        "sgd-schedule-decay",
    ],
)
def test_fused_optimizer_equals_keras_own(classes, kwargs):
    reference, fused_class = classes
    expected, _ = _run(reference, **kwargs)
    fused, optimizer = _run(fused_class, **kwargs)
    assert int(optimizer.iterations) == 6
    for want, got in zip(expected, fused, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_excluded_variables_are_not_decayed():
    def run(cls):
        variables = [keras.Variable(np.ones(3, "float32"), name=n) for n in ("kernel", "bias")]
        optimizer = cls(learning_rate=0.1, weight_decay=0.5)
        optimizer.exclude_from_weight_decay(var_names=["bias"])
        zero = keras.ops.zeros(3)
        optimizer.apply_gradients([(zero, variables[0]), (zero, variables[1])])
        return [v.numpy() for v in variables]

    kernel, bias = run(optimizers.AdamW)
    np.testing.assert_allclose(kernel, 0.95)  # 1 - lr * weight_decay
    np.testing.assert_allclose(bias, 1.0)
    for want, got in zip(run(keras.optimizers.AdamW), (kernel, bias), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-7)


@pytest.mark.parametrize(
    ("reference_class", "fused_class", "kwargs"),
    [(*ADAMW, {}), (*SGD, {"momentum": 0.9})],
    ids=["adamw", "sgd"],
)
def test_a_model_trained_and_saved_with_it_resumes_identically(
    tmp_path, reference_class, fused_class, kwargs
):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(64, 8)).astype("float32"), rng.integers(0, 3, 64)

    def model(cls):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8,))
        net = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(16)(inputs)))
        net.compile(
            optimizer=cls(learning_rate=1e-2, **kwargs), loss="sparse_categorical_crossentropy"
        )
        return net

    reference, fused = model(reference_class), model(fused_class)
    for net in (reference, fused):
        net.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    fused.save(tmp_path / "fused.keras")
    loaded = keras.saving.load_model(tmp_path / "fused.keras")
    assert type(loaded.optimizer) is fused_class
    for net in (reference, loaded):
        net.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for want, got in zip(reference.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_docstring_example_runs():
    import doctest

    result = doctest.testmod(optimizers, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_sparse_gradients_take_keras_own_decay_and_update():
    """An `IndexedSlices` gradient (an embedding's) skips the compiled step: Keras decays
    and updates that variable itself, as `keras.optimizers.AdamW` does."""
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        pytest.skip("IndexedSlices are TensorFlow's")

    def run(cls):
        dense = keras.Variable(np.ones((2, 3), "float32"), name="kernel")
        table = keras.Variable(np.arange(12, dtype="float32").reshape(4, 3), name="embedding")
        optimizer = cls(learning_rate=1e-2, weight_decay=0.05)
        rows = tf.IndexedSlices(tf.ones((2, 3)), tf.constant([0, 2]), tf.constant([4, 3]))
        for _ in range(2):
            optimizer.apply_gradients([(tf.ones((2, 3)), dense), (rows, table)])
        return dense.numpy(), table.numpy()

    for got, want in zip(run(optimizers.AdamW), run(keras.optimizers.AdamW), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
