"""The fused CPU kernel behind the locally connected layers (TensorFlow backend, optional).

`kernels/locally_connected.cc` computes the forward pass, the kernel gradient and the input
gradient straight from the layer's channels_last input (which it pads and lays out itself)
and the legacy kernel layout, one register-tiled product per position, with no patch tensor
and no per-offset op. It is
compiled on first use with the system C++ compiler (`$CXX`, default `g++`; `-O3
-march=native -fopenmp`) into `$XDG_CACHE_HOME/zoo/kernels/` (`~/.cache/zoo/kernels`),
keyed by the source, the compiler and the CPU, and loaded with `ctypes`. TensorFlow calls
it through `tf.numpy_function` (the GIL is released during the call) under a
`tf.custom_gradient`.

The layer uses it only where it is the better tool: TensorFlow backend, no GPU,
channels_last, float32, not inside an XLA-compiled function, and not inside `disabled()`
(the exports trace under it, so SavedModel, ONNX and LiteRT files hold stock TensorFlow
ops only). Everywhere else, and when the kernel cannot be built (no compiler, a compile
error, `ZOO_FUSED_KERNEL=0`), the layer runs its stock `keras.ops` computation; an
unavailable kernel is reported by one log line.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from zoo import machine

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels") / "locally_connected.cc"
FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-fopenmp", "-fPIC", "-shared")
_COMPILE_TIMEOUT_S = 300
_state = threading.local()


@contextlib.contextmanager
def disabled():
    """Layers called (traced) while this is active use their stock ops (exports, tests)."""
    previous = getattr(_state, "disabled", False)
    _state.disabled = True
    try:
        yield
    finally:
        _state.disabled = previous


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "zoo" / "kernels"


def _cpu_signature() -> str:
    """What `-march=native` depends on: the CPU's model and feature flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = ("model name", "flags")
    return "\n".join(sorted({line for line in lines if line.startswith(wanted)}))


def _compile(compiler: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        result = subprocess.run(
            [compiler, *FLAGS, str(SOURCE), "-o", str(built)],
            capture_output=True,
            text=True,
            timeout=_COMPILE_TIMEOUT_S,
        )
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"{compiler} exited with {result.returncode}: {last}")
        os.replace(built, target)  # atomic: concurrent first uses never load half a file


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernel (built and cached on first use), or None with one log line."""
    if os.environ.get("ZOO_FUSED_KERNEL", "1").strip().lower() in ("0", "false", "off"):
        log.info("Fused locally connected kernel off (ZOO_FUSED_KERNEL=0): stock ops.")
        return None
    name, path = machine.compiler()
    if path is None:
        log.warning(
            "Fused locally connected kernel unavailable: no C++ compiler %r on PATH (install "
            "g++ or set CXX); the layers use their stock ops (slower on CPU).",
            name,
        )
        return None
    try:
        version = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=60
        ).stdout
        key = hashlib.sha256(
            "\0".join([SOURCE.read_text(), version, " ".join(FLAGS), _cpu_signature()]).encode()
        ).hexdigest()[:16]
        target = cache_dir() / f"locally_connected-{key}.so"
        if not target.exists():
            log.info("Compiling the fused locally connected kernel into %s", target)
            _compile(path, target)
        lib = ctypes.CDLL(str(target))
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        log.warning(
            "Fused locally connected kernel unavailable (%s); the layers use their stock ops.",
            err,
        )
        return None
    for fn, arrays in (
        (lib.zoo_lc_forward, 4),  # x, kernel, bias (or NULL), outputs
        (lib.zoo_lc_kernel_gradient, 4),  # x, upstream, kernel gradient, bias gradient (or NULL)
        (lib.zoo_lc_input_gradient, 3),  # upstream, kernel, input gradient
        (lib.zoo_lc_to_cells, 3),  # pads, the layer's input, the padded cells
        (lib.zoo_lc_from_cells, 3),  # pads, the cells' gradient, the input gradient
    ):
        fn.argtypes = [ctypes.c_void_p] * (1 + arrays)  # the geometry first
        fn.restype = None
    return lib


@functools.cache
def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def _in_xla_context() -> bool:
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util

    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def applies(layer, inputs) -> bool:
    """Whether `layer` should run the fused kernel on `inputs` (see the module docstring)."""
    import keras

    if keras.backend.backend() != "tensorflow" or getattr(_state, "disabled", False):
        return False
    if (
        layer.data_format != "channels_last"
        or keras.backend.standardize_dtype(inputs.dtype) != "float32"
    ):
        return False
    if layer.kernel.dtype != "float32" or _has_gpu() or _in_xla_context():
        return False
    return library() is not None


def geometry(layer, padded_spatial) -> np.ndarray:
    """The kernel's int64 geometry vector for `layer` on a padded input of that size."""
    two_d = lambda values: (1, *values) if layer.rank == 1 else tuple(values)  # noqa: E731
    (h, w), (oh, ow) = two_d(padded_spatial), two_d(layer.output_size)
    (kh, kw), (sh, sw), (dh, dw) = (
        two_d(layer.kernel_size),
        two_d(layer.strides),
        two_d(layer.dilation_rate),
    )
    return np.array(
        [0, h, w, layer._channels, oh, ow, kh, kw, sh, sw, dh, dw, layer.filters], np.int64
    )


def pads(layer) -> np.ndarray:
    """`layer`'s padding as the kernel's int64 (top, bottom, left, right)."""
    spatial = [(0, 0), *layer._pads] if layer.rank == 1 else layer._pads
    return np.array([size for pair in spatial for size in pair], np.int64)


def aligned_empty(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised float32 array starting on a 64-byte boundary, as TensorFlow's tensors
    do (NumPy's own start 16 bytes past one, so every 64-byte vector load would straddle two
    cache lines)."""
    size = math.prod(shape)
    raw = np.empty(size + 16, np.float32)
    start = (-raw.ctypes.data % 64) // 4
    return raw[start : start + size].reshape(shape)


class _Buffers:
    """64-byte aligned float32 arrays, reused once TensorFlow has let go of them.

    TensorFlow wraps an aligned array returned by `tf.numpy_function` without copying it
    (an unaligned one is copied: ~450 ms for DeepFace L4's 251 MB kernel gradient), and a
    fresh one costs its page faults (~60 ms there); so each result is an array of this
    pool that nothing else refers to any more.
    """

    def __init__(self):
        self._free: dict[tuple[int, ...], list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def get(self, shape: tuple[int, ...]) -> np.ndarray:
        with self._lock:
            arrays = self._free.setdefault(tuple(shape), [])
            for i in range(len(arrays)):
                if sys.getrefcount(arrays[i]) == 2:  # the list's and the call's reference
                    return arrays[i]
            array = aligned_empty(shape)
            arrays.append(array)
            return array


_buffers = _Buffers()


def _call(fn, geo: np.ndarray, batch: int, *arrays: np.ndarray | None) -> None:
    geo = geo.copy()
    geo[0] = batch
    fn(geo.ctypes.data, *(None if a is None else a.ctypes.data for a in arrays))


def _cells_shape(geo: np.ndarray, batch: int) -> tuple[int, ...]:
    """The padded cells `(H, W, C, batch)` (1D: `(W, C, batch)`) of geometry `geo`."""
    h, w, c = (int(v) for v in geo[1:4])
    return (w, c, batch) if h == 1 else (h, w, c, batch)


def forward(
    geo: np.ndarray,
    pads: np.ndarray,
    x: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`(batch, positions, filters)` outputs of the layer's input `x` `(batch, *spatial, C)`,
    plus `bias` `(positions, filters)` if given, and the padded cells `(*padded, C, batch)`
    the passes read (kept for the gradients)."""
    x, kernel = np.ascontiguousarray(x), np.ascontiguousarray(kernel)
    bias = None if bias is None else np.ascontiguousarray(bias)
    lib, batch = library(), x.shape[0]
    cells = _buffers.get(_cells_shape(geo, batch))
    _call(lib.zoo_lc_to_cells, geo, batch, pads, x, cells)
    outputs = _buffers.get((batch, kernel.shape[0], kernel.shape[2]))
    _call(lib.zoo_lc_forward, geo, batch, cells, kernel, bias, outputs)
    return outputs, cells


def gradients(
    geo: np.ndarray,
    pads: np.ndarray,
    cells: np.ndarray,
    kernel: np.ndarray,
    upstream: np.ndarray,
    input_shape: tuple[int, ...],
    bias: bool,
) -> tuple[np.ndarray, ...]:
    """Input (`input_shape`), kernel (and, if `bias`, bias) gradients for `upstream`
    `(batch, positions, filters)`, from the padded cells of the forward pass."""
    cells, kernel = np.ascontiguousarray(cells), np.ascontiguousarray(kernel)
    upstream = np.ascontiguousarray(upstream)
    lib, batch = library(), cells.shape[-1]
    cells_grad = _buffers.get(cells.shape)  # zeroed by the kernel
    x_grad = _buffers.get((batch, *input_shape[1:]))
    kernel_grad = _buffers.get(kernel.shape)
    bias_grad = _buffers.get((kernel.shape[0], kernel.shape[2])) if bias else None
    _call(lib.zoo_lc_input_gradient, geo, batch, upstream, kernel, cells_grad)
    _call(lib.zoo_lc_from_cells, geo, batch, pads, cells_grad, x_grad)
    _call(lib.zoo_lc_kernel_gradient, geo, batch, cells, upstream, kernel_grad, bias_grad)
    return (x_grad, kernel_grad) if bias_grad is None else (x_grad, kernel_grad, bias_grad)


def local_matmul(x, kernel, bias, geo: np.ndarray, pads: np.ndarray):
    """TensorFlow op: `(batch, positions, filters)` outputs of the layer's input `x`
    `(batch, *spatial, C)` (padded by `pads` inside), the kernel and the bias `(positions,
    filters)` (or None), with their gradients, all by the fused kernel."""
    import tensorflow as tf

    batch = x.shape[0]
    out_shape = (batch, kernel.shape[0], kernel.shape[2])
    has_bias = bias is not None

    @tf.custom_gradient
    def fused(x, kernel, *bias):
        outputs, cells = tf.numpy_function(
            functools.partial(forward, geo, pads),
            [x, kernel, *bias],
            [tf.float32, tf.float32],
            stateful=False,
        )
        outputs.set_shape(out_shape)
        cells.set_shape(_cells_shape(geo, batch))

        def grad(upstream):
            grads = tf.numpy_function(
                functools.partial(gradients, geo, pads, input_shape=tuple(x.shape), bias=has_bias),
                [cells, kernel, upstream],
                [tf.float32] * (3 if has_bias else 2),
                stateful=False,
            )
            for g, like in zip(grads, [x, kernel, *bias], strict=True):
                g.set_shape(like.shape)
            return tuple(grads)

        return outputs, grad

    return fused(x, kernel, *([bias] if has_bias else []))
