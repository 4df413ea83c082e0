"""Benchmark cases, competitors, and the memory/time predictions that decide a skip.

A skip is a result: when a competitor's predicted peak memory (or build time) exceeds
what this machine can give, the suite records the prediction and the reason instead of
running it (and instead of letting the kernel's OOM killer pick a victim).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

FLOAT_BYTES = 4
GIB = 1024**3


@dataclass(frozen=True)
class Case:
    """One locally connected layer shape; `conv` of the same shape is its reference."""

    name: str
    spatial: tuple[int, ...]  # input spatial size
    channels: int
    filters: int
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    padding: str
    batch: int

    @property
    def rank(self) -> int:
        return len(self.spatial)

    @property
    def output(self) -> tuple[int, ...]:
        if self.padding == "same":
            return tuple(math.ceil(n / s) for n, s in zip(self.spatial, self.strides, strict=True))
        return tuple(
            (n - k) // s + 1
            for n, k, s in zip(self.spatial, self.kernel, self.strides, strict=True)
        )

    @property
    def positions(self) -> int:
        return math.prod(self.output)

    @property
    def patch_size(self) -> int:
        return math.prod(self.kernel) * self.channels

    @property
    def input_floats(self) -> int:
        return self.batch * math.prod(self.spatial) * self.channels

    @property
    def kernel_floats(self) -> int:
        return self.positions * self.patch_size * self.filters

    @property
    def patches_floats(self) -> int:
        return self.batch * self.positions * self.patch_size

    @property
    def output_floats(self) -> int:
        return self.batch * self.positions * self.filters

    def min_bytes(self, mode: str) -> int:
        """Bytes a locally connected layer must move per call: its memory-bound floor.

        Forward: read the kernel and the input, write the output. Forward + backward:
        the kernel read twice and its gradient written once, the input read twice and
        its gradient written, the output written and the upstream gradient read.
        """
        kernel, inputs, outputs = self.kernel_floats, self.input_floats, self.output_floats
        floats = kernel + inputs + outputs if mode == "fwd" else 3 * (kernel + inputs) + 2 * outputs
        return floats * FLOAT_BYTES

    @property
    def flops(self) -> int:
        """Forward multiply-adds x 2 (identical for the layer and the same-shape Conv)."""
        return 2 * self.batch * self.positions * self.patch_size * self.filters

    def describe(self) -> str:
        shape = "x".join(map(str, (*self.spatial, self.channels)))
        kernel = "x".join(map(str, self.kernel))
        stride = "" if set(self.strides) == {1} else f" s{self.strides[0]}"
        pad = " same" if self.padding == "same" else ""
        return f"{shape} -> {self.filters}f {kernel}{stride}{pad}, b{self.batch}"

    def to_dict(self) -> dict:
        return {**asdict(self), "output": self.output, "positions": self.positions}


def _case(name, spatial, channels, filters, kernel, strides=1, padding="valid", batch=32):
    rank = len(spatial)
    tup = lambda v: (v,) * rank if isinstance(v, int) else tuple(v)  # noqa: E731
    return Case(name, tuple(spatial), channels, filters, tup(kernel), tup(strides), padding, batch)


CASES = {
    case.name: case
    for case in [
        _case("L4_b32", (63, 63), 16, 16, 9, batch=32),
        _case("L4_b128", (63, 63), 16, 16, 9, batch=128),
        _case("L5_b32", (55, 55), 16, 16, 7, strides=2, batch=32),
        _case("L5_b128", (55, 55), 16, 16, 7, strides=2, batch=128),
        _case("L6_b32", (25, 25), 16, 16, 5, batch=32),
        _case("L6_b128", (25, 25), 16, 16, 5, batch=128),
        _case("mnist_b128", (28, 28), 1, 32, 3, padding="same", batch=128),
        _case("1d_b32", (500,), 32, 32, 7, batch=32),
    ]
}
QUICK_CASES = ["L4_b32", "L6_b32", "mnist_b128", "1d_b32"]

# Implementations. `conv` (keras Conv on TensorFlow) is the reference every ratio uses;
# `tf_bmm_floor` is not a competitor but a yardstick: the zoo layer's batched matmuls alone
# on operands built in advance (the floor of any gather + matmul design on TensorFlow).
IMPLS = [
    "conv",
    "zoo_tf",
    "zoo_tf_xla",
    "zoo_jax",
    "legacy1",
    "legacy2",
    "legacy3",
    "flax_local",
    "torch_unfold",
    "tf_bmm_floor",
]
# Keras's Conv on the JAX or torch backend: the reference where TensorFlow is absent
# (a GPU machine with JAX and torch only), and the zoo layer on Keras's torch backend.
OTHER_BACKEND_IMPLS = ["conv_jax", "conv_torch", "zoo_torch"]
QUICK_IMPLS = ["conv", "zoo_tf", "zoo_jax", "legacy1", "flax_local", "torch_unfold"]

# Machine budget for one competitor process (the machine has 24 GiB; leave room for others).
MEMORY_LIMIT_BYTES = 14 * GIB
# Framework + runtime baseline of a TensorFlow process (measured: ~0.6 GiB).
RUNTIME_BYTES = int(0.6 * GIB)
# implementation=3 builds one Python tuple per connection; measured on L6 (2.8 M connections):
# build 30.5 s and +1.3 GB RSS, i.e. about 11 microseconds and 450 bytes per connection.
LEGACY3_SECONDS_PER_CONNECTION = 11e-6
LEGACY3_BYTES_PER_CONNECTION = 450
LEGACY3_MAX_BUILD_SECONDS = 60
# flax ConvLocal's backward on CPU: 15 s per step at L4 batch 32 (125 M patch entries).
FLAX_L4_B32_SECONDS = 15
FLAX_MAX_PATCHES = 200_000_000


def predict(case: Case, impl: str, mode: str = "fwdbwd") -> dict:
    """Predicted peak bytes of `mode` ('fwd' or 'fwdbwd') and build seconds, from shapes."""
    kernel = case.kernel_floats * FLOAT_BYTES
    patches = case.patches_floats * FLOAT_BYTES
    inputs = case.input_floats * FLOAT_BYTES
    build_s = 0.0
    if impl == "legacy1":
        # One strided slice per position; the gradient of each slice is a dense
        # input-sized tensor, and all of them meet in one AddN: positions x input.
        peak = RUNTIME_BYTES + 2 * kernel + 2 * patches
        if mode == "fwdbwd":
            peak += case.positions * inputs
    elif impl == "legacy2":
        # Dense masked kernel (in x out), its mask, the masked product, and the gradients.
        dense = math.prod(case.spatial) * case.channels * case.positions * case.filters
        peak = RUNTIME_BYTES + (5 if mode == "fwdbwd" else 3) * dense * FLOAT_BYTES
    elif impl == "legacy3":
        connections = case.kernel_floats
        build_s = connections * LEGACY3_SECONDS_PER_CONNECTION
        peak = RUNTIME_BYTES + connections * LEGACY3_BYTES_PER_CONNECTION + 4 * kernel
    elif impl == "conv":
        peak = RUNTIME_BYTES + 2 * patches  # im2col-like workspace at worst
    else:
        peak = RUNTIME_BYTES + 2 * kernel + 2 * patches
    return {"peak_bytes": int(peak), "build_s": build_s}


def skip_reason(case: Case, impl: str, mode: str = "fwdbwd", gpu: bool = False) -> str | None:
    """Why `impl` is not run on `case` in `mode`, or None when it is run.

    The time predictions for torch and flax were measured on this CPU; with a GPU
    (`gpu=True`) they do not apply.
    """
    prediction = predict(case, impl, mode)
    reasons = []
    slow_on_cpu = not gpu and case.patches_floats > FLAX_MAX_PATCHES
    if slow_on_cpu and impl == "torch_unfold":
        reasons.append(
            f"predicted > 30 s per step (7.8 s forward, 11.4 s forward+backward measured at L4 "
            f"batch 32 with 125 M patch entries; this case has {case.patches_floats / 1e6:.0f} M)"
        )
    if slow_on_cpu and impl == "flax_local" and mode == "fwdbwd":
        reasons.append(
            f"predicted > 60 s per fwd+bwd step ({FLAX_L4_B32_SECONDS:.0f} s measured at L4 "
            f"batch 32 with 125 M patch entries; this case has {case.patches_floats / 1e6:.0f} M)"
        )
    if prediction["build_s"] > LEGACY3_MAX_BUILD_SECONDS:
        reasons.append(
            f"predicted build {prediction['build_s'] / 60:.1f} min > "
            f"{LEGACY3_MAX_BUILD_SECONDS / 60:.0f} min ({case.kernel_floats / 1e6:.1f} M "
            f"Python index tuples, {case.kernel_floats * LEGACY3_BYTES_PER_CONNECTION / GIB:.1f}"
            f" GiB host memory)"
        )
    if prediction["peak_bytes"] > MEMORY_LIMIT_BYTES:
        reasons.append(
            f"predicted peak {prediction['peak_bytes'] / GIB:.1f} GiB > "
            f"{MEMORY_LIMIT_BYTES / GIB:.0f} GiB budget ({_why(case, impl)})"
        )
    return "; ".join(reasons) or None


def _why(case: Case, impl: str) -> str:
    if impl == "legacy1":
        return (
            f"{case.positions} slice gradients of "
            f"{case.input_floats * FLOAT_BYTES / 2**20:.1f} MiB each meet in one AddN"
        )
    if impl == "legacy2":
        dense = math.prod(case.spatial) * case.channels * case.positions * case.filters
        gib = dense * FLOAT_BYTES / GIB
        return f"dense masked kernel of {gib:.1f} GiB, x3 with mask, x5 with grads"
    if impl == "legacy3":
        return "Python index tuples, sparse kernel and its gradients"
    return "kernel, patches and their gradients"
