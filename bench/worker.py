"""Run ONE (case, implementation) in this process and print one JSON line.

Run by `bench/run.py` in a fresh subprocess per measurement, so that peak RSS
(`resource.getrusage`, high-water mark of this process) belongs to this case alone.
Forward is measured first and its peak RSS recorded before the backward runs; the
forward+backward peak is the process high-water mark after both (the backward dominates).

    python bench/worker.py --case L4_b32 --impl zoo_tf [--steps 5] [--modes fwd,fwdbwd]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cases import CASES, Case  # noqa: E402

BACKEND = {
    "zoo_jax": "jax",
    "conv_jax": "jax",
    "flax_local": "jax",
    "zoo_torch": "torch",
    "conv_torch": "torch",
    "torch_unfold": "torch",
}
STREAM_FLOATS = 64 * 2**20  # 256 MiB vector for the bandwidth probe


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def keras_layer(case: Case, impl: str):
    """The zoo layer (`zoo_*`) or the same-shape Keras Conv (`conv*`), built, on the
    current Keras backend."""
    import keras

    if impl.startswith("conv"):
        cls = [keras.layers.Conv1D, keras.layers.Conv2D]
    else:
        from zoo.layers import LocallyConnected1D, LocallyConnected2D

        cls = [LocallyConnected1D, LocallyConnected2D]
    layer = cls[case.rank - 1](case.filters, case.kernel, case.strides, case.padding)
    layer.build((None, *case.spatial, case.channels))
    return layer


# ------------------------------------------------------------------ TensorFlow
def build_tf(case: Case, impl: str):
    import tensorflow as tf

    if impl == "tf_bmm_floor":
        return build_bmm_floor(case)
    if impl.startswith("legacy"):
        import tf_keras

        cls = [tf_keras.layers.LocallyConnected1D, tf_keras.layers.LocallyConnected2D]
        layer = cls[case.rank - 1](
            case.filters,
            case.kernel,
            strides=case.strides,
            padding=case.padding,
            implementation=int(impl[-1]),
        )
        layer.build((None, *case.spatial, case.channels))
    else:
        layer = keras_layer(case, impl)
    x = tf.random.normal((case.batch, *case.spatial, case.channels))
    jit = impl == "zoo_tf_xla"

    @tf.function(jit_compile=jit)
    def forward(x):
        return layer(x)

    @tf.function(jit_compile=jit)
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x))
        # The loss too: TensorFlow would prune a forward pass the gradients do not need.
        return loss, tape.gradient(loss, [x, *layer.trainable_weights])

    return x, forward, forward_backward, lambda result: result


def build_bmm_floor(case: Case):
    """The zoo layer's batched matmuls alone, on operands built in advance.

    Forward: `kernel^T @ patches`; forward+backward adds the kernel gradient
    `patches @ upstream^T` and the patch gradient `kernel @ upstream`, with the shapes and
    transposes the layer uses. No patch gather, no fold of the patch gradient back onto
    the input, no bias or layout change: the time TensorFlow's batched-matmul kernels
    need for this design's arithmetic, i.e. the floor of any gather + matmul layer.
    """
    import tensorflow as tf

    shape = (case.positions, case.patch_size)
    kernel = tf.random.normal((*shape, case.filters))
    patches = tf.random.normal((*shape, case.batch))
    upstream = tf.random.normal((case.positions, case.filters, case.batch))

    @tf.function
    def forward(x):
        return tf.matmul(kernel, patches, adjoint_a=True)

    @tf.function
    def forward_backward(x):
        return (
            tf.matmul(kernel, patches, adjoint_a=True),
            tf.matmul(patches, upstream, adjoint_b=True),
            tf.matmul(kernel, upstream),
        )

    return patches, forward, forward_backward, lambda result: result


# ------------------------------------------------------------------------- JAX
def build_jax(case: Case, impl: str):
    import jax
    import jax.numpy as jnp

    x = jax.random.normal(jax.random.PRNGKey(0), (case.batch, *case.spatial, case.channels))
    if impl != "flax_local":  # zoo_jax, conv_jax
        layer = keras_layer(case, impl)
        params = [v.value for v in layer.trainable_variables]

        def apply(params, x):
            return layer.stateless_call(params, [], x)[0]

    else:  # flax ConvLocal -> jax.lax.conv_general_dilated_local
        from flax import linen as nn

        module = nn.ConvLocal(
            case.filters, case.kernel, strides=case.strides, padding=case.padding.upper()
        )
        params = module.init(jax.random.PRNGKey(1), x[:1])

        def apply(params, x):
            return module.apply(params, x)

    forward = jax.jit(apply)
    loss = lambda params, x: jnp.sum(apply(params, x))  # noqa: E731
    # The loss too: XLA would drop a forward pass the gradients do not need.
    forward_backward = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    return (
        x,
        lambda x: forward(params, x),
        lambda x: forward_backward(params, x),
        jax.block_until_ready,
    )


# ----------------------------------------------------------------------- torch
def build_torch(case: Case, impl: str):
    """`torch_unfold` (the community unfold + einsum layer), or a Keras layer on Keras's
    torch backend (`zoo_torch`, `conv_torch`); on the GPU when torch sees one."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(os.cpu_count() or 1)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def sync(result):
        if device == "cuda":
            torch.cuda.synchronize()
        return result

    if impl != "torch_unfold":
        layer = keras_layer(case, impl)  # Keras puts its variables on the GPU itself
        x = torch.randn(case.batch, *case.spatial, case.channels, device=device)

        def forward(x):
            with torch.no_grad():
                return layer(x)

        def forward_backward(x):
            x = x.detach().requires_grad_(True)
            weights = [v.value for v in layer.trainable_variables]
            for weight in weights:
                weight.grad = None
            torch.sum(layer(x)).backward()
            return x.grad, *(weight.grad for weight in weights)

        return x, forward, forward_backward, sync

    out, kvol = case.output, math.prod(case.kernel)
    weight = torch.randn(
        case.positions, kvol * case.channels, case.filters, device=device, requires_grad=True
    )
    bias = torch.zeros(case.positions, case.filters, device=device, requires_grad=True)
    if case.padding == "same":
        pads = []
        for n, k, s, o in zip(case.spatial, case.kernel, case.strides, out, strict=True):
            total = max((o - 1) * s + k - n, 0)
            pads = [total // 2, total - total // 2, *pads]
    else:
        pads = None

    def layer(x):  # x: (batch, C, *spatial), the usual community unfold + einsum layer
        if pads:
            x = F.pad(x, pads)
        if case.rank == 2:
            patches = F.unfold(x, case.kernel, stride=case.strides)  # (B, C*kvol, P)
        else:
            patches = x.unfold(2, case.kernel[0], case.strides[0])  # (B, C, P, k)
            patches = patches.permute(0, 1, 3, 2).reshape(x.shape[0], -1, case.positions)
        y = torch.einsum("bkp,pkf->bpf", patches, weight) + bias
        return y.reshape(x.shape[0], *out, case.filters)

    x = torch.randn(case.batch, case.channels, *case.spatial, device=device)

    def forward(x):
        with torch.no_grad():
            return layer(x)

    def forward_backward(x):
        x = x.detach().requires_grad_(True)
        weight.grad = bias.grad = None
        layer(x).sum().backward()
        return x.grad, weight.grad, bias.grad

    return x, forward, forward_backward, sync


# ------------------------------------------------------------- device facts
def device_and_bandwidth(backend: str) -> tuple[str, float]:
    """The device the backend computed on, and its measured streaming bandwidth (GB/s).

    Bandwidth: the median time of summing a 256 MiB float32 vector (a read-only stream:
    no allocation is timed). It runs after the timed steps, so it does not enter their
    peak memory.
    """

    def median_seconds(step, sync) -> float:
        sync(step())
        times = []
        for _ in range(5):
            start = time.perf_counter()
            sync(step())
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    if backend == "jax":
        import jax
        import jax.numpy as jnp

        vector = jnp.ones(STREAM_FLOATS)
        total = jax.jit(jnp.sum)
        seconds = median_seconds(lambda: total(vector), jax.block_until_ready)
        device = jax.devices()[0]
        name = device.platform if device.platform == "cpu" else device.device_kind
    elif backend == "torch":
        import torch

        on_gpu = torch.cuda.is_available()
        device = "cuda" if on_gpu else "cpu"
        vector = torch.ones(STREAM_FLOATS, device=device)
        seconds = median_seconds(vector.sum, lambda result: result.item())
        name = torch.cuda.get_device_name(0) if on_gpu else "cpu"
    else:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        vector = tf.ones(STREAM_FLOATS)
        total = tf.function(lambda: tf.reduce_sum(vector))
        seconds = median_seconds(total, lambda result: result.numpy())
        details = tf.config.experimental.get_device_details(gpus[0]) if gpus else {}
        name = details.get("device_name", "GPU") if gpus else "cpu"
    return name, STREAM_FLOATS * 4 / seconds / 1e9


# ---------------------------------------------------------------------- timing
def measure(fn, sync, x, steps: int, budget_s: float = 20.0) -> dict:
    """Median of `steps` timed calls after a trace call and a warm-up call.

    A slow competitor (seconds per call) gets fewer steps, at least one, so that the
    suite keeps its time budget; `times_ms` shows how many were taken.
    """
    start = time.perf_counter()
    sync(fn(x))  # trace / compile + first run
    trace_s = time.perf_counter() - start
    start = time.perf_counter()
    sync(fn(x))  # warm-up
    warm_s = time.perf_counter() - start
    steps = max(1, min(steps, int(budget_s / max(warm_s, 1e-3))))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        sync(fn(x))
        times.append(time.perf_counter() - start)
    return {
        "time_ms": statistics.median(times) * 1e3,
        "times_ms": [round(t * 1e3, 2) for t in times],
        "trace_s": trace_s,
        "peak_rss_bytes": peak_rss_bytes(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", required=True, choices=sorted(CASES))
    parser.add_argument("--impl", required=True)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--modes", default="fwd,fwdbwd")
    args = parser.parse_args()
    case = CASES[args.case]
    backend = BACKEND.get(args.impl, "tensorflow")
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import_start = time.perf_counter()
    builder = {"tensorflow": build_tf, "jax": build_jax, "torch": build_torch}[backend]
    if backend == "torch":
        import torch  # noqa: F401
    if args.impl != "torch_unfold":
        import keras  # noqa: F401

        import zoo.layers  # noqa: F401
    base_rss = peak_rss_bytes()
    build_start = time.perf_counter()
    x, forward, forward_backward, sync = builder(case, args.impl)
    build_s = time.perf_counter() - build_start
    result = {
        "case": args.case,
        "impl": args.impl,
        "backend": backend,
        "import_s": build_start - import_start,
        "build_s": build_s,
        "base_rss_bytes": base_rss,
        "status": "ok",
    }
    for mode in args.modes.split(","):
        fn = forward if mode == "fwd" else forward_backward
        result[mode] = measure(fn, sync, x, args.steps)
    del x, forward, forward_backward
    result["device"], result["stream_gbs"] = device_and_bandwidth(backend)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
