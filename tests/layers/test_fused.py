"""The fused CPU kernel (TensorFlow backend): same outputs and gradients as the NumPy loop
and the stock computation, used where it should be and nowhere else, and a clean
fallback when it cannot be built."""

import contextlib
import ctypes
import logging
import os
import platform
import subprocess

import keras
import numpy as np
import pytest
from keras import ops
from test_locally_connected import (
    CONFIGS,
    _input_shape,
    _make_layer,
    _randomise,
    _reference,
    _value_and_gradients,
    reference_gradients,
)

from zoo import machine
from zoo.layers import LocallyConnected1D, LocallyConnected2D, fused

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the fused kernel is TensorFlow's"
)


@pytest.fixture(scope="module", autouse=True)
def kernel():
    """The compiled kernel. A machine without a C++ compiler skips these tests, except in
    CI, which installs g++ and must run them."""
    if machine.compiler()[1] is None and not os.environ.get("CI"):
        pytest.skip("no C++ compiler: the layer runs its stock ops (tested elsewhere)")
    assert fused.library() is not None, "the fused kernel failed to build; see the log"


CHANNELS_LAST = [c for c in CONFIGS if c["data_format"] == "channels_last"]
WIDE = [  # tile paths (AVX2: 16, 8 columns; AVX-512: 32, 16, 8), counts not multiples of them
    dict(CHANNELS_LAST[0], channels=16, filters=16),
    dict(CHANNELS_LAST[2], channels=5, filters=27),
    dict(CHANNELS_LAST[3], channels=9, filters=8),
    dict(CHANNELS_LAST[1], channels=3, filters=40),
]


def _pair_config(spatial, kernel, strides, dilation, filters, channels=3):
    rank = len(spatial)
    return dict(
        rank=rank,
        spatial=spatial,
        channels=channels,
        filters=filters,
        kernel_size=kernel,
        strides=strides,
        padding="valid",
        dilation_rate=dilation,
        data_format="channels_last",
    )


# The kernel gradient takes neighbouring positions of an output row in pairs where their
# patches share cells (stride a multiple of the dilation, below the kernel) and the filters
# fill less than two vectors: odd rows (a lone last position), patches two or one kernel
# columns apart, filters in one vector, in part of one, and one vector plus a remainder; and
# geometries that share no cells (single positions).
PAIRS = [
    _pair_config((7, 9), (3, 3), (1, 1), (1, 1), 16),  # 7 columns: three pairs and one alone
    _pair_config((9, 12), (3, 5), (2, 2), (1, 1), 20),  # two columns apart; 16 + 4 filters
    _pair_config((6, 13), (2, 3), (1, 2), (1, 2), 8),  # one column apart (stride 2, dilation 2)
    _pair_config((9, 14), (3, 3), (2, 3), (1, 2), 5),  # stride 3, dilation 2: no shared cells
    _pair_config((5, 8), (2, 2), (1, 2), (1, 1), 12),  # stride = kernel: no shared cells
    _pair_config((23,), (4,), (1,), (1,), 11),  # 1D, 20 positions
]


def _uses_kernel(layer, x, jit_compile: bool = False) -> bool:
    import tensorflow as tf

    function = tf.function(layer, jit_compile=jit_compile)
    graph = function.get_concrete_function(tf.TensorSpec(x.shape, x.dtype)).graph
    return any(op.type.startswith("PyFunc") for op in graph.get_operations())


@pytest.mark.parametrize(
    "config", CHANNELS_LAST[::2] + WIDE + PAIRS, ids=lambda c: "-".join(map(str, c.values()))
)
def test_matches_numpy_loop_and_its_gradients(config, rng):
    layer = _make_layer(config)
    x = rng.normal(size=_input_shape(config, batch=11)).astype("float32")
    layer(x)
    _randomise(layer, rng)
    assert fused.applies(layer, x) and _uses_kernel(layer, x)
    upstream = rng.normal(size=layer.compute_output_shape(x.shape)).astype("float32")
    output, x_grad, kernel_grad, bias_grad = _value_and_gradients(layer, x, upstream)
    geometry = [config[k] for k in ("kernel_size", "strides", "padding", "dilation_rate")]
    want_x, want_kernel = reference_gradients(
        x.astype("float64"),
        layer.get_weights()[0].astype("float64"),
        upstream,
        *geometry,
        "channels_last",
    )
    np.testing.assert_allclose(output, _reference(config, x, layer), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(x_grad, want_x, rtol=1e-4, atol=1e-4, err_msg="input")
    np.testing.assert_allclose(kernel_grad, want_kernel, rtol=1e-4, atol=1e-4, err_msg="kernel")
    np.testing.assert_allclose(bias_grad, upstream.sum(axis=0), rtol=1e-4, atol=1e-4)
    with fused.disabled():
        assert not _uses_kernel(layer, x)
        stock = _value_and_gradients(layer, x, upstream)
    for got, want in zip((output, x_grad, kernel_grad, bias_grad), stock, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [32, 45])
def test_deepface_l4_shape_matches_stock(batch, rng):
    """DeepFace's L4 geometry at a reduced size (16 channels, 16 filters, 9x9): batches of
    whole 32-image tiles and one with 13 images left over."""
    layer = LocallyConnected2D(16, 9, activation="relu")
    x = rng.normal(size=(batch, 14, 13, 16)).astype("float32")
    layer(x)
    _randomise(layer, rng)
    upstream = rng.normal(size=layer.compute_output_shape(x.shape)).astype("float32")
    got = _value_and_gradients(layer, x, upstream)
    with fused.disabled():
        want = _value_and_gradients(layer, x, upstream)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layer_type", [LocallyConnected1D, LocallyConnected2D])
def test_without_bias_matches_stock(layer_type, rng):
    """No bias: the kernel adds none and returns the input and kernel gradients only."""
    import tensorflow as tf

    layer = layer_type(16, 3, strides=2, use_bias=False)
    shape = (5, 11, 16) if layer_type is LocallyConnected1D else (5, 9, 8, 16)
    x = tf.constant(rng.normal(size=shape).astype("float32"))
    layer(x)
    _randomise(layer, rng)
    upstream = rng.normal(size=layer.compute_output_shape(x.shape)).astype("float32")

    def value_and_gradients():
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = layer(x)
            loss = tf.reduce_sum(outputs * upstream)
        return [outputs, *tape.gradient(loss, [x, layer.kernel])]

    assert _uses_kernel(layer, x)
    got = value_and_gradients()
    with fused.disabled():
        want = value_and_gradients()
    for g, w, name in zip(got, want, ("outputs", "input", "kernel"), strict=True):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)


def _pointers(*arrays: np.ndarray) -> list[ctypes.c_void_p]:
    return [ctypes.c_void_p(a.ctypes.data) for a in arrays]


def _operands(b, spatial, c, kernel_size, s, f, rng):
    """The geometry vector and random x, kernel, bias, upstream of a valid, undilated shape."""
    (h, w), (kh, kw) = spatial, kernel_size
    oh, ow = (h - kh) // s + 1, (w - kw) // s + 1
    geometry = np.array([b, h, w, c, oh, ow, kh, kw, s, s, 1, 1, f], np.int64)
    p, k = oh * ow, kh * kw * c
    return geometry, *(
        rng.normal(size=shape).astype("float32")
        for shape in [(h, w, c, b), (p, k, f), (p, f), (b, p, f)]
    )


def _layout_round_trip(lib, x, pads) -> tuple[np.ndarray, np.ndarray]:
    """The padded cells `(H, W, C, B)` that `lib` makes of `x` `(B, h, w, C)` with `pads`
    (top, bottom, left, right), written over NaN (every cell, padding included, must be
    written), and `lib`'s input layout of those cells again."""
    (batch, h, w, channels), (top, bottom, left, right) = x.shape, pads
    shape = (h + top + bottom, w + left + right, channels, batch)
    geo = np.array([batch, *shape[:3], 1, 1, 1, 1, 1, 1, 1, 1, 1], np.int64)
    pads = np.array(pads, np.int64)
    cells, back = fused.aligned_empty(shape), fused.aligned_empty(x.shape)
    cells[...] = np.nan
    lib.zoo_lc_to_cells(*_pointers(geo, pads, x, cells))
    lib.zoo_lc_from_cells(*_pointers(geo, pads, cells, back))
    return cells, back


def _passes(lib, geometry, x, kernel, bias, dy) -> tuple[np.ndarray, ...]:
    """y, dw, db, dx by the three passes of the kernel library `lib`."""
    y, dw, db, dx = (  # aligned as TensorFlow's: the streaming stores apply
        fused.aligned_empty(a.shape) for a in (dy, kernel, bias, x)
    )
    lib.zoo_lc_forward(*_pointers(geometry, x, kernel, bias, y))
    lib.zoo_lc_kernel_gradient(*_pointers(geometry, x, dy, dw, db))
    lib.zoo_lc_input_gradient(*_pointers(geometry, dy, kernel, dx))
    return y, dw, db, dx


@pytest.mark.parametrize(
    "march, needs", [("haswell", {"avx2", "fma"}), ("x86-64", set())], ids=["avx2", "generic"]
)
def test_other_instruction_sets_match_the_native_build(march, needs, tmp_path, rng):
    """The kernel built for AVX2 (8-float tiles and transposes) and for plain x86-64 (the
    generic transposes, no streaming stores) gives what the native build gives, on shapes
    whose filters and images are not whole numbers of vectors, and lays out the input as
    NumPy does."""
    if platform.machine() != "x86_64" or not needs <= set(machine.cpu()[1]):
        pytest.skip(f"this CPU cannot run a -march={march} build")
    flags = [f"-march={march}" if f == "-march=native" else f for f in fused.FLAGS]
    target = tmp_path / f"{march}.so"
    compiled = subprocess.run(
        [machine.compiler()[1], *flags, str(fused.SOURCE), "-o", str(target)],
        capture_output=True,
        text=True,
    )
    assert compiled.returncode == 0, compiled.stderr
    builds = {"native": fused.library(), march: ctypes.CDLL(str(target))}
    for b, spatial, c, kernel_size, s, f in [
        (11, (9, 8), 3, (3, 3), 1, 27),
        (32, (14, 13), 16, (9, 9), 1, 16),
        (5, (1, 40), 7, (1, 5), 2, 40),
        (3, (6, 7), 5, (3, 2), 1, 5),
    ]:
        operands = _operands(b, spatial, c, kernel_size, s, f, rng)
        results = {name: _passes(lib, *operands) for name, lib in builds.items()}
        for got, want, what in zip(
            results[march], results["native"], ("y", "dw", "db", "dx"), strict=True
        ):
            np.testing.assert_allclose(
                got,
                want,
                rtol=1e-5,
                atol=1e-5 * np.abs(want).max(),  # without FMA (x86-64), other roundings
                err_msg=f"{what}, b={b} f={f}",
            )
    x = rng.normal(size=(13, 7, 5, 3)).astype("float32")  # not whole tiles, uneven padding
    for name, lib in builds.items():
        cells, back = _layout_round_trip(lib, x, (1, 2, 2, 1))
        np.testing.assert_array_equal(back, x, err_msg=name)
        np.testing.assert_array_equal(cells[1:8, 2:7], x.transpose(1, 2, 3, 0), err_msg=name)
        assert np.count_nonzero(cells) == x.size, f"{name}: the padding is not zero"


@pytest.mark.parametrize(
    "shape", [(4, (30, 30), 16, (9, 9), 1, 16), (8, (1, 600), 16, (1, 9), 1, 32)], ids=["2d", "1d"]
)
def test_kernel_gradient_into_an_unaligned_output(shape, rng):
    """The kernel gradient's rows go out by non-temporal stores where the CPU gains from them
    (outputs of 8 MiB and more: 40 and 11 MB here), which need 64-byte aligned rows: into an
    output 4 bytes past a boundary (a NumPy array, not TensorFlow's) the pass takes regular
    stores and gives the same bits."""
    lib = fused.library()
    geometry, x, kernel, _, dy = _operands(*shape, rng)
    aligned = fused.aligned_empty(kernel.shape)
    raw = fused.aligned_empty((kernel.size + 1,))
    unaligned = raw[1:].reshape(kernel.shape)
    assert unaligned.ctypes.data % 64 == 4
    for out in (aligned, unaligned):
        out[...] = np.nan
        lib.zoo_lc_kernel_gradient(*_pointers(geometry, x, dy, out), ctypes.c_void_p(None))
    np.testing.assert_array_equal(unaligned, aligned)
    want = np.einsum("pkb,bpf->pkf", _patches(geometry, x), dy)
    np.testing.assert_allclose(aligned, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@contextlib.contextmanager
def _omp_threads(lib, threads: int | None):
    """`lib`'s passes run with `threads` OpenMP threads (None: as they are) inside."""
    before = lib.omp_get_max_threads()
    if threads:
        lib.omp_set_num_threads(threads)  # this thread's team size, the kernel's OpenMP's
    try:
        yield
    finally:
        lib.omp_set_num_threads(before)


@pytest.mark.parametrize("threads", [None, 3], ids=["default-threads", "3-threads"])
def test_input_gradient_in_column_blocks(threads, rng):
    """Where one output row's band of the input gradient (its patches' input rows, all
    columns) is larger than the L2 cache, the pass takes the output columns in blocks: on a
    band twice this machine's L2, with two kernel geometries (a block's patches overlap the
    next block's), the result is the NumPy loop's input gradient."""
    lib = fused.library()
    l2 = os.sysconf("SC_LEVEL2_CACHE_SIZE") if "SC_LEVEL2_CACHE_SIZE" in os.sysconf_names else 0
    l2 = l2 if l2 > 0 else 1 << 20  # the kernel's own fallback
    for b, h, c, (kh, kw), s, f in [(128, 8, 16, (5, 9), 1, 16), (64, 9, 8, (3, 4), 2, 24)]:
        column = kh * c * b * 4  # bytes of one input column of a band
        w = -(-2 * l2 // column) + kw  # the band of a whole row: twice the L2 cache
        geometry, _, kernel, _, dy = _operands(b, (h, w), c, (kh, kw), s, f, rng)
        dx = fused.aligned_empty((h, w, c, b))
        with _omp_threads(lib, threads):
            lib.zoo_lc_input_gradient(*_pointers(geometry, dy, kernel, dx))
        want, _ = reference_gradients(
            np.zeros((b, h, w, c)), kernel, dy, (kh, kw), (s, s), "valid", (1, 1), "channels_last"
        )
        want = want.transpose(1, 2, 3, 0)  # the cells' layout (H, W, C, B)
        np.testing.assert_allclose(dx, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def _patches(geometry: np.ndarray, x: np.ndarray) -> np.ndarray:
    """`(P, K, B)` patches of the cells `x` `(H, W, C, B)` (valid, undilated), by NumPy."""
    _, _, _, c, oh, ow, kh, kw, sh, sw, *_ = (int(v) for v in geometry)
    return np.stack(
        [
            x[i * sh : i * sh + kh, j * sw : j * sw + kw].reshape(kh * kw * c, -1)
            for i in range(oh)
            for j in range(ow)
        ]
    )


def test_forward_and_kernel_gradient_do_not_depend_on_the_thread_count(rng):
    """As the kernel's source says: the forward pass and the kernel gradient (pairs of
    positions included) give the same bits with 1 and 3 OpenMP threads; the input gradient,
    whose stripes depend on the thread count (and its column blocks on the L2 cache's
    size), gives the same bits twice with the same count."""
    lib = fused.library()

    def run(threads: int, operands) -> tuple[np.ndarray, ...]:
        with _omp_threads(lib, threads):
            return _passes(lib, *operands)

    for shape in [(11, (9, 12), 3, (3, 5), 2, 20), (8, (20, 11), 4, (3, 3), 1, 16)]:
        operands = _operands(*shape, rng)
        one, three, again = run(1, operands), run(3, operands), run(3, operands)
        for name, want, got, repeated in zip(
            ["y", "dw", "db", "dx"], one, three, again, strict=True
        ):
            if name == "dx":
                np.testing.assert_array_equal(repeated, got, err_msg=f"{name}, {shape}")
            else:
                np.testing.assert_array_equal(got, want, err_msg=f"{name}, {shape}")


@pytest.mark.parametrize(
    "batch, spatial, channels, pads",
    [
        (32, (9, 11), 16, (0, 0, 0, 0)),  # whole tiles, no padding
        (13, (7, 5), 3, (1, 2, 2, 1)),  # images and cells not whole tiles, uneven padding
        (9, (1, 23), 5, (0, 0, 3, 0)),  # 1D: left padding only; rows cut in pieces
        (7, (1, 30), 4, (1, 1, 0, 2)),  # padding rows cut in pieces too
    ],
)
def test_input_layout_and_padding_are_numpys(batch, spatial, channels, pads, rng):
    """The kernel lays out and pads the layer's input `(B, *spatial, C)` as the passes' cells
    `(*padded, C, B)`, and turns the cells' gradient back, padding dropped, as NumPy's
    transpose and pad do."""
    top, bottom, left, right = pads
    x = rng.normal(size=(batch, *spatial, channels)).astype("float32")
    want = np.pad(x.transpose(1, 2, 3, 0), [(top, bottom), (left, right), (0, 0), (0, 0)])
    cells, back = _layout_round_trip(fused.library(), x, pads)
    np.testing.assert_array_equal(cells, want)
    np.testing.assert_array_equal(back, x)


def test_results_stay_valid_while_later_calls_run(rng):
    """Result buffers are reused only once TensorFlow has released them: an output kept
    alive is not overwritten by the next call."""
    layer = LocallyConnected1D(8, 3)
    a, b = (rng.normal(size=(4, 12, 8)).astype("float32") for _ in range(2))
    first = layer(a)
    kept = ops.convert_to_numpy(first).copy()
    for _ in range(3):
        layer(b)
    np.testing.assert_array_equal(ops.convert_to_numpy(first), kept)
    assert not np.allclose(kept, ops.convert_to_numpy(layer(b)))


@pytest.mark.parametrize(
    "why",
    ["channels_first", "float16", "xla"],
)
def test_stock_ops_where_the_kernel_does_not_apply(why, rng):
    import tensorflow as tf

    fmt = "channels_first" if why == "channels_first" else "channels_last"
    dtype = "float16" if why == "float16" else "float32"
    layer = LocallyConnected2D(4, 3, data_format=fmt, dtype=dtype)
    x = tf.constant(rng.normal(size=(2, 6, 6, 6)), dtype)
    layer(x)
    assert not _uses_kernel(layer, x, jit_compile=why == "xla")
    if why == "xla":
        compiled = tf.function(layer, jit_compile=True)
        np.testing.assert_allclose(compiled(x), layer(x), rtol=1e-5, atol=1e-5)


def test_fit_with_the_kernel_and_with_xla(rng):
    """A model trains through the kernel's gradient, and `jit_compile=True` (XLA, which
    cannot call it) trains the same model through the stock ops."""
    x = rng.normal(size=(64, 10, 10, 2)).astype("float32")
    y = (x[:, :5].mean(axis=(1, 2, 3)) > x[:, 5:].mean(axis=(1, 2, 3))).astype("int32")
    losses = {}
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((10, 10, 2)),
                LocallyConnected2D(4, 3, strides=2, padding="same", activation="relu"),
                keras.layers.Flatten(),
                keras.layers.Dense(2),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(0.01),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit,
        )
        losses[jit] = model.fit(x, y, epochs=8, batch_size=16, verbose=0).history["loss"]
    assert losses[False][-1] < 0.7 * losses[False][0]
    np.testing.assert_allclose(losses[False], losses[True], rtol=1e-3)


def test_no_compiler_falls_back_with_one_log_line(tmp_path, monkeypatch, caplog, rng):
    layer = LocallyConnected2D(8, 3)
    x = rng.normal(size=(3, 7, 7, 4)).astype("float32")
    with_kernel = ops.convert_to_numpy(layer(x))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fused.library.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger="zoo.layers.fused"):
            assert not fused.applies(layer, x)
            assert not fused.applies(layer, x)  # asked again: still one line
            without = ops.convert_to_numpy(layer(x))
        lines = [r.getMessage() for r in caplog.records if r.name == "zoo.layers.fused"]
        assert len(lines) == 1 and "no-such-compiler" in lines[0] and "stock ops" in lines[0]
        np.testing.assert_allclose(without, with_kernel, rtol=1e-5, atol=1e-5)
    finally:
        fused.library.cache_clear()
        monkeypatch.undo()
    assert fused.library() is not None


def test_compiled_once_into_the_cache(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fused.library.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger="zoo.layers.fused"):
            assert fused.library() is not None
            fused.library.cache_clear()
            assert fused.library() is not None
        built = list((tmp_path / "zoo" / "kernels").glob("locally_connected-*.so"))
        compiles = [r for r in caplog.records if "Compiling" in r.getMessage()]
        assert len(built) == 1 and len(compiles) == 1
    finally:
        fused.library.cache_clear()
        monkeypatch.undo()


def test_switched_off_by_the_environment(monkeypatch, rng):
    monkeypatch.setenv("ZOO_FUSED_KERNEL", "0")
    fused.library.cache_clear()
    try:
        layer = LocallyConnected2D(2, 3)
        x = rng.normal(size=(1, 5, 5, 1)).astype("float32")
        layer(x)
        assert not fused.applies(layer, x)
    finally:
        fused.library.cache_clear()
