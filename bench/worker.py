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

BACKEND = {"zoo_jax": "jax", "flax_local": "jax", "torch_unfold": "torch"}


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


# ------------------------------------------------------------------ TensorFlow
def build_tf(case: Case, impl: str):
    import tensorflow as tf

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
    elif impl == "conv":
        import keras

        cls = [keras.layers.Conv1D, keras.layers.Conv2D]
        layer = cls[case.rank - 1](case.filters, case.kernel, case.strides, case.padding)
    else:
        from zoo.layers import LocallyConnected1D, LocallyConnected2D

        cls = [LocallyConnected1D, LocallyConnected2D]
        layer = cls[case.rank - 1](case.filters, case.kernel, case.strides, case.padding)
    layer.build((None, *case.spatial, case.channels))
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
        return tape.gradient(loss, [x, *layer.trainable_weights])

    return x, forward, forward_backward, lambda result: result


# ------------------------------------------------------------------------- JAX
def build_jax(case: Case, impl: str):
    import jax
    import jax.numpy as jnp

    x = jax.random.normal(jax.random.PRNGKey(0), (case.batch, *case.spatial, case.channels))
    if impl == "zoo_jax":
        from zoo.layers import LocallyConnected1D, LocallyConnected2D

        cls = [LocallyConnected1D, LocallyConnected2D]
        layer = cls[case.rank - 1](case.filters, case.kernel, case.strides, case.padding)
        layer.build((None, *case.spatial, case.channels))
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
    forward_backward = jax.jit(jax.grad(loss, argnums=(0, 1)))
    return (
        x,
        lambda x: forward(params, x),
        lambda x: forward_backward(params, x),
        jax.block_until_ready,
    )


# ----------------------------------------------------------------------- torch
def build_torch(case: Case, impl: str):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(os.cpu_count() or 1)
    out, kvol = case.output, 1
    for k in case.kernel:
        kvol *= k
    weight = torch.randn(case.positions, kvol * case.channels, case.filters, requires_grad=True)
    bias = torch.zeros(case.positions, case.filters, requires_grad=True)
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

    x = torch.randn(case.batch, case.channels, *case.spatial)

    def forward(x):
        with torch.no_grad():
            return layer(x)

    def forward_backward(x):
        x = x.detach().requires_grad_(True)
        weight.grad = bias.grad = None
        layer(x).sum().backward()
        return x.grad, weight.grad, bias.grad

    return x, forward, forward_backward, lambda result: result


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
    os.environ["KERAS_BACKEND"] = "jax" if backend == "jax" else "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import_start = time.perf_counter()
    builder = {"tensorflow": build_tf, "jax": build_jax, "torch": build_torch}[backend]
    if backend in ("tensorflow", "jax"):
        import keras  # noqa: F401

        import zoo.layers  # noqa: F401
    else:
        import torch  # noqa: F401
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
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
