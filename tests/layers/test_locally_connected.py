"""LocallyConnected1D/2D against an independent NumPy loop, Conv, finite differences and Keras."""

import itertools
import math

import keras
import numpy as np
import pytest
from conftest import gradients
from keras import ops

import zoo.layers.locally_connected as locally_connected
from zoo.layers import LocallyConnected1D, LocallyConnected2D, fused


@pytest.fixture(autouse=True)
def stock_ops():
    """This module tests the stock `keras.ops` computation on every backend; the fused
    CPU kernel is tested against the same references in test_fused.py."""
    with fused.disabled():
        yield


def _patches(x, kernel_size, strides, padding, dilation, data_format):
    """Every output position's patch, by explicit loops (the definition of the layer).

    `x` is `(batch, *spatial, channels)` or `(batch, channels, *spatial)`. Returns the
    output size, the patches `(batch, positions, patch)` flattened `(*kernel, channels)`
    for channels_last and `(channels, *kernel)` for channels_first (the legacy kernel's
    order), and for every patch entry the flat index of the input entry it copies
    (`-1` for padding), in `x`'s own layout.
    """
    if data_format == "channels_first":
        x = np.moveaxis(x, 1, -1)
    batch, *spatial, channels = x.shape
    out_size, pads = [], []
    for n, k, s, d in zip(spatial, kernel_size, strides, dilation, strict=True):
        span = (k - 1) * d + 1
        if padding == "valid":
            out_size.append((n - span) // s + 1)
            pads.append(0)
        else:
            out = -(-n // s)
            out_size.append(out)
            pads.append(max((out - 1) * s + span - n, 0) // 2)
    flat_index = np.arange(x[0].size).reshape(x.shape[1:])
    if data_format == "channels_first":
        flat_index = np.moveaxis(np.arange(x[0].size).reshape(channels, *spatial), 0, -1)
    positions = list(itertools.product(*map(range, out_size)))
    patches = np.zeros((batch, len(positions), *kernel_size, channels))
    sources = np.full((len(positions), *kernel_size, channels), -1)
    for p, position in enumerate(positions):
        for offset in itertools.product(*map(range, kernel_size)):
            source = tuple(
                pos * s + off * d - pad
                for pos, off, s, d, pad in zip(
                    position, offset, strides, dilation, pads, strict=True
                )
            )
            if all(0 <= c < n for c, n in zip(source, spatial, strict=True)):
                patches[(slice(None), p, *offset)] = x[(slice(None), *source)]
                sources[(p, *offset)] = flat_index[source]
    if data_format == "channels_first":
        patches, sources = np.moveaxis(patches, -1, 2), np.moveaxis(sources, -1, 1)
    return out_size, patches.reshape(batch, len(positions), -1), sources.reshape(len(positions), -1)


def reference_output(x, kernel, bias, kernel_size, strides, padding, dilation, data_format):
    """The layer's output by the loops of `_patches`; the kernel is the legacy
    `(positions, patch, filters)` layout."""
    out_size, patches, _ = _patches(x, kernel_size, strides, padding, dilation, data_format)
    out = np.einsum("bpk,pkf->bpf", patches, kernel).reshape(len(x), *out_size, -1) + bias
    return np.moveaxis(out, -1, 1) if data_format == "channels_first" else out


def reference_gradients(x, kernel, upstream, kernel_size, strides, padding, dilation, data_format):
    """Gradients of `sum(output * upstream)` for the input and the kernel, by the loops of
    `_patches`: the kernel gradient is patches x upstream, the patch gradient is added back
    to the input entry each patch entry copied."""
    _, patches, sources = _patches(x, kernel_size, strides, padding, dilation, data_format)
    if data_format == "channels_first":
        upstream = np.moveaxis(upstream, 1, -1)
    upstream = upstream.reshape(len(x), len(sources), -1)  # (batch, positions, filters)
    kernel_grad = np.einsum("bpk,bpf->pkf", patches, upstream)
    patches_grad = np.einsum("bpf,pkf->bpk", upstream, kernel)
    x_grad = np.zeros((len(x), x[0].size))
    inside = sources >= 0
    for b in range(len(x)):
        np.add.at(x_grad[b], sources[inside], patches_grad[b][inside])
    return x_grad.reshape(x.shape), kernel_grad


def _random_configs(count, seed=7):
    rng = np.random.default_rng(seed)
    configs = []
    while len(configs) < count:
        rank = int(rng.integers(1, 3))
        kernel = tuple(int(k) for k in rng.integers(1, 5, rank))
        dilation = tuple(int(d) for d in rng.integers(1, 3, rank))
        strides = tuple(int(s) for s in rng.integers(1, 4, rank))
        spatial = tuple(int(n) for n in rng.integers(5, 12, rank))
        padding = str(rng.choice(["valid", "same"]))
        spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]
        if padding == "valid" and any(n < s for n, s in zip(spatial, spans, strict=True)):
            continue
        configs.append(
            {
                "rank": rank,
                "spatial": spatial,
                "channels": int(rng.integers(1, 4)),
                "filters": int(rng.integers(1, 4)),
                "kernel_size": kernel,
                "strides": strides,
                "padding": padding,
                "dilation_rate": dilation,
                "data_format": str(rng.choice(["channels_last", "channels_first"])),
            }
        )
    return configs


HAND_PICKED = [
    # DeepFace-like shapes, reduced: odd sizes, stride 2, 'same' with even kernels.
    dict(
        rank=2,
        spatial=(13, 11),
        channels=3,
        filters=4,
        kernel_size=(3, 3),
        strides=(1, 1),
        padding="valid",
        dilation_rate=(1, 1),
        data_format="channels_last",
    ),
    dict(
        rank=2,
        spatial=(13, 13),
        channels=2,
        filters=3,
        kernel_size=(7, 7),
        strides=(2, 2),
        padding="valid",
        dilation_rate=(1, 1),
        data_format="channels_first",
    ),
    dict(
        rank=2,
        spatial=(8, 9),
        channels=2,
        filters=2,
        kernel_size=(4, 2),
        strides=(3, 2),
        padding="same",
        dilation_rate=(1, 1),
        data_format="channels_last",
    ),
    dict(
        rank=1,
        spatial=(10,),
        channels=3,
        filters=5,
        kernel_size=(3,),
        strides=(1,),
        padding="same",
        dilation_rate=(3,),
        data_format="channels_last",
    ),
    dict(
        rank=2,
        spatial=(6, 6),
        channels=1,
        filters=1,
        kernel_size=(6, 6),
        strides=(1, 1),
        padding="valid",
        dilation_rate=(1, 1),
        data_format="channels_last",
    ),
]
CONFIGS = HAND_PICKED + _random_configs(30)


def _make_layer(config, **kwargs):
    cls = LocallyConnected2D if config["rank"] == 2 else LocallyConnected1D
    args = {k: v for k, v in config.items() if k not in ("rank", "spatial", "channels")}
    return cls(**args, **kwargs)


def _input_shape(config, batch=2):
    if config["data_format"] == "channels_last":
        return (batch, *config["spatial"], config["channels"])
    return (batch, config["channels"], *config["spatial"])


def _reference(config, x, layer):
    """`reference_output` of `layer`'s current weights on `x`, for a CONFIGS entry."""
    kernel, bias = layer.get_weights()
    return reference_output(
        x.astype("float64"),
        kernel,
        bias,
        config["kernel_size"],
        config["strides"],
        config["padding"],
        config["dilation_rate"],
        config["data_format"],
    )


def _randomise(layer, rng):
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.weights])


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_matches_numpy_loop(config, rng):
    layer = _make_layer(config)
    x = rng.normal(size=_input_shape(config)).astype("float32")
    layer(x)  # builds the weights
    _randomise(layer, rng)
    y = ops.convert_to_numpy(layer(x))
    expected = _reference(config, x, layer)
    assert y.shape == expected.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def _value_and_gradients(layer, x, upstream):
    def loss(inputs, kernel, bias):
        outputs, _ = layer.stateless_call([kernel, bias], [], inputs)
        return ops.sum(outputs * ops.convert_to_tensor(upstream))

    kernel, bias = layer.get_weights()
    return (ops.convert_to_numpy(layer(x)), *gradients(loss, x, kernel, bias))


@pytest.mark.parametrize("depth", [1, 4, 10_000])
@pytest.mark.parametrize("config", CONFIGS[::3], ids=lambda c: "-".join(map(str, c.values())))
def test_runs_of_offsets_match_numpy_gradients(config, depth, rng, monkeypatch):
    """One batched matmul per run of kernel offsets, hand-written gradient: single
    offsets (depth 1, the path of layers with >= 16 channels), runs of 2 to 4 offsets,
    and the whole kernel in one run, against the NumPy loop's output and gradients."""
    monkeypatch.setattr(locally_connected, "_MIN_DEPTH", depth)
    layer = _make_layer(config)
    x = rng.normal(size=_input_shape(config, batch=3)).astype("float32")
    layer(x)
    _randomise(layer, rng)
    runs = layer._offset_groups()
    sizes = {len(offsets) for _, offsets in runs}
    volume = math.prod(config["kernel_size"])
    assert max(sizes) == min(volume, max(1, -(-depth // config["channels"])))
    assert [o for _, offsets in runs for o in offsets] == list(
        itertools.product(*map(range, config["kernel_size"]))
    )
    upstream = rng.normal(size=layer.compute_output_shape(x.shape)).astype("float32")
    output, x_grad, kernel_grad, bias_grad = _value_and_gradients(layer, x, upstream)
    geometry = [config[k] for k in ("kernel_size", "strides", "padding", "dilation_rate")]
    kernel = layer.get_weights()[0].astype("float64")
    want_x, want_kernel = reference_gradients(
        x.astype("float64"), kernel, upstream, *geometry, config["data_format"]
    )
    np.testing.assert_allclose(output, _reference(config, x, layer), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(x_grad, want_x, rtol=1e-4, atol=1e-4, err_msg="input")
    np.testing.assert_allclose(kernel_grad, want_kernel, rtol=1e-4, atol=1e-4, err_msg="kernel")
    want_bias = upstream.sum(axis=0)
    if config["data_format"] == "channels_first":
        want_bias = np.moveaxis(want_bias, 0, -1)
    np.testing.assert_allclose(bias_grad, want_bias, rtol=1e-4, atol=1e-4, err_msg="bias")


@pytest.mark.parametrize(
    "rank,padding,strides,dilation,data_format",
    [
        (2, "valid", 1, 1, "channels_last"),
        (2, "same", 2, 1, "channels_last"),
        (2, "same", 1, 2, "channels_first"),
        (2, "valid", 3, 1, "channels_first"),
        (1, "same", 2, 1, "channels_last"),
        (1, "valid", 1, 3, "channels_first"),
    ],
)
def test_equals_conv_when_every_position_shares_one_filter(
    rank, padding, strides, dilation, data_format, rng
):
    kernel_size, channels, filters = (3,) * rank, 3, 4
    spatial = (12, 10)[:rank]
    conv_cls = keras.layers.Conv2D if rank == 2 else keras.layers.Conv1D
    lc_cls = LocallyConnected2D if rank == 2 else LocallyConnected1D
    conv = conv_cls(filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation)
    local = lc_cls(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        dilation_rate=dilation,
        data_format=data_format,
    )
    x_last = rng.normal(size=(2, *spatial, channels)).astype("float32")
    conv(x_last)  # builds the kernel
    conv_kernel = rng.normal(size=conv.kernel.shape).astype("float32")
    conv_bias = rng.normal(size=conv.bias.shape).astype("float32")
    conv.set_weights([conv_kernel, conv_bias])
    expected = ops.convert_to_numpy(conv(x_last))

    x = x_last if data_format == "channels_last" else np.moveaxis(x_last, -1, 1)
    local(x)
    if data_format == "channels_first":  # patch order (channels, *kernel)
        conv_kernel = np.moveaxis(conv_kernel, -2, 0)
    positions = local.kernel.shape[0]
    shared_kernel = np.broadcast_to(conv_kernel.reshape(1, -1, filters), local.kernel.shape)
    shared_bias = np.broadcast_to(conv_bias, local.bias.shape)
    local.set_weights([shared_kernel, shared_bias])
    out = ops.convert_to_numpy(local(x))
    if data_format == "channels_first":
        out = np.moveaxis(out, 1, -1)
    assert positions == math.prod(expected.shape[1:-1])
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_gradients_match_finite_differences(rng, float64):
    layer = LocallyConnected2D(
        3, (3, 2), strides=(2, 1), padding="same", dilation_rate=(1, 2), dtype="float64"
    )
    x = rng.normal(size=(2, 7, 6, 2))
    layer(x)
    _randomise(layer, rng)
    kernel0, bias0 = (np.asarray(w, dtype="float64") for w in layer.get_weights())
    weights_out = rng.normal(size=layer.compute_output_shape(x.shape))

    def loss(inputs, kernel, bias):
        return ops.sum(_stateless(layer, inputs, kernel, bias) * ops.convert_to_tensor(weights_out))

    analytic = gradients(loss, x, kernel0, bias0)
    for arg_index, base in enumerate((x, kernel0, bias0)):
        for flat in rng.choice(base.size, size=6, replace=False):
            eps = 1e-6
            plus, minus = [x, kernel0, bias0], [x, kernel0, bias0]
            for sign, args in ((1, plus), (-1, minus)):
                bumped = base.copy().reshape(-1)
                bumped[flat] += sign * eps
                args[arg_index] = bumped.reshape(base.shape)
            numeric = (
                float(ops.convert_to_numpy(loss(*plus))) - float(ops.convert_to_numpy(loss(*minus)))
            ) / (2 * eps)
            assert analytic[arg_index].reshape(-1)[flat] == pytest.approx(
                numeric, rel=1e-5, abs=1e-7
            )


def _stateless(layer, inputs, kernel, bias):
    """Run `layer` with the given kernel and bias, differentiably on every backend."""
    outputs, _ = layer.stateless_call([kernel, bias], [], inputs)
    return outputs


def test_functional_symbolic_and_eager_agree(rng):
    inputs = keras.Input((9, 9, 2))
    outputs = LocallyConnected2D(4, 3, activation="relu", name="lc")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(outputs))
    assert model.get_layer("lc").output.shape == (None, 7, 7, 4)
    x = rng.normal(size=(3, 9, 9, 2)).astype("float32")
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(x)), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )


def _tiny_model(channels_first=False):
    shape = (2, 10, 10) if channels_first else (10, 10, 2)
    fmt = "channels_first" if channels_first else "channels_last"
    return keras.Sequential(
        [
            keras.Input(shape),
            LocallyConnected2D(4, 3, strides=2, padding="same", activation="relu", data_format=fmt),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_learns(jit_compile, rng):
    keras.utils.set_random_seed(0)
    x = rng.normal(size=(64, 10, 10, 2)).astype("float32")
    y = (x[:, :5].mean(axis=(1, 2, 3)) > x[:, 5:].mean(axis=(1, 2, 3))).astype("int32")
    model = _tiny_model()
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        jit_compile=jit_compile,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.7 * history.history["loss"][0]


@pytest.mark.parametrize(
    "policy,dtype", [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")]
)
def test_mixed_precision(policy, dtype, rng):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        layer = LocallyConnected2D(3, 3, padding="same")
        x = rng.normal(size=(2, 6, 6, 2)).astype("float32")
        y = layer(x)
        assert keras.backend.standardize_dtype(y.dtype) == dtype
        assert all(w.dtype == "float32" for w in layer.weights)
        kernel, bias = (ops.convert_to_numpy(w) for w in layer.weights)
        expected = reference_output(
            x, kernel, bias, (3, 3), (1, 1), "same", (1, 1), "channels_last"
        )
        tolerance = 2e-2 if dtype == "bfloat16" else 5e-3
        np.testing.assert_allclose(
            ops.convert_to_numpy(ops.cast(y, "float32")), expected, rtol=tolerance, atol=tolerance
        )
        model = _tiny_model()
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
        model.fit(x=np.zeros((4, 10, 10, 2), "float32"), y=np.zeros(4, "int32"), verbose=0)
    finally:
        keras.config.set_dtype_policy(previous)


def test_config_round_trip(rng):
    layer = LocallyConnected2D(
        5,
        (3, 2),
        strides=(2, 1),
        padding="same",
        data_format="channels_first",
        dilation_rate=(1, 2),
        activation="relu",
        use_bias=False,
        kernel_initializer=keras.initializers.HeNormal(seed=3),
        kernel_regularizer="l2",
        activity_regularizer="l1",
        implementation=2,
        name="local",
    )
    config = layer.get_config()
    clone = LocallyConnected2D.from_config(config)
    assert clone.get_config() == config
    x = rng.normal(size=(2, 3, 8, 8)).astype("float32")
    layer(x)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(ops.convert_to_numpy(clone(x)), ops.convert_to_numpy(layer(x)))
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, LocallyConnected2D)
    assert keras.saving.get_registered_object("zoo>LocallyConnected2D") is LocallyConnected2D
    assert keras.saving.get_registered_object("zoo>LocallyConnected1D") is LocallyConnected1D


@pytest.mark.parametrize("channels_first", [False, True])
def test_keras_file_round_trip(tmp_path, channels_first, rng):
    model = _tiny_model(channels_first)
    x = rng.normal(size=(3, *model.input_shape[1:])).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        restored.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6
    )


def test_initialisation_matches_conv_scale():
    layer = LocallyConnected2D(16, 9, kernel_initializer=keras.initializers.GlorotUniform(0))
    layer.build((None, 63, 63, 16))
    conv = keras.layers.Conv2D(16, 9)
    conv.build((None, 63, 63, 16))
    # Glorot uniform for a Conv2D filter: limit sqrt(6 / (9*9*16 + 9*9*16)), std limit/sqrt(3).
    expected_std = math.sqrt(6 / (2 * 9 * 9 * 16)) / math.sqrt(3)
    kernel = ops.convert_to_numpy(layer.kernel)
    assert np.std(kernel) == pytest.approx(expected_std, rel=0.01)
    assert np.abs(kernel).max() <= math.sqrt(6 / (2 * 9 * 9 * 16)) + 1e-7
    # Per-position statistics, not just the global ones.
    assert np.std(kernel[0]) == pytest.approx(expected_std, rel=0.05)
    assert np.std(kernel[-1]) == pytest.approx(expected_std, rel=0.05)
    # Fan-independent initialisers are untouched: the paper's N(0, 0.01).
    paper = LocallyConnected2D(16, 9, kernel_initializer=keras.initializers.RandomNormal(0, 0.01))
    paper.build((None, 63, 63, 16))
    assert np.std(ops.convert_to_numpy(paper.kernel)) == pytest.approx(0.01, rel=0.01)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"filters": 0, "kernel_size": 3}, "filters must be a positive int, got 0"),
        ({"filters": 4, "kernel_size": (3, 0)}, r"kernel_size must be .* got \(3, 0\)"),
        ({"filters": 4, "kernel_size": 3, "strides": -1}, "strides must be .* got -1"),
        ({"filters": 4, "kernel_size": 3, "dilation_rate": (1, 2, 3)}, "dilation_rate must be"),
        (
            {"filters": 4, "kernel_size": 3, "padding": "SAME "},
            "padding must be 'valid' or 'same', got 'SAME '",
        ),
        (
            {"filters": 4, "kernel_size": 3, "data_format": "NHWC"},
            "data_format must be .* got 'NHWC'",
        ),
        ({"filters": 4, "kernel_size": 3, "implementation": 4}, "implementation must be 1, 2 or 3"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LocallyConnected2D(**kwargs)


def test_unknown_spatial_size_is_a_clear_error():
    with pytest.raises(ValueError, match=r"needs a known spatial size.*\(None, None, None, 3\)"):
        LocallyConnected2D(4, 3)(keras.Input((None, None, 3)))


def test_kernel_larger_than_input_is_a_clear_error():
    message = r"effective size 9\) does not fit the input spatial size \(5, 5\)"
    with pytest.raises(ValueError, match=message):
        LocallyConnected2D(4, 5, dilation_rate=2)(keras.Input((5, 5, 1)))
    # 'same' padding makes the same kernel fit.
    assert LocallyConnected2D(4, 5, dilation_rate=2, padding="same")(
        keras.Input((5, 5, 1))
    ).shape == (None, 5, 5, 4)


def test_wrong_rank_input_is_a_clear_error():
    with pytest.raises(ValueError, match="expects inputs of rank 3"):
        LocallyConnected1D(4, 3).compute_output_shape((None, 5, 5, 1))
