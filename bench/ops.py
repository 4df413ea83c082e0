"""Isolated TensorFlow op timings behind the layer's design choices (DeepFace L4 shapes).

    python bench/ops.py matmul [--positions 756] [--batch 32]   # batched-matmul orientations
    python bench/ops.py fold [--rows 14] [--batch 32]           # folding the patch gradient

`matmul` times the layer's three batched products (forward, kernel gradient, patch
gradient) in each operand orientation, with operands built in advance, and prints
GFLOP/s. `fold` times ways of adding a block's patch gradient back onto the input
(col2im) and checks each against `unsorted_segment_sum`. Medians of 15 calls; each call
returns four numbers so that no large copy to NumPy is timed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf

KERNEL, CHANNELS, FILTERS, OUT_WIDTH = 9, 16, 16, 55  # DeepFace L4: 63x63x16 -> 16 x 9x9
PATCH = KERNEL * KERNEL * CHANNELS


def median_ms(fn, calls: int = 15) -> float:
    step = tf.function(lambda: tf.reshape(fn(), [-1])[:4])
    step().numpy()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        step().numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def matmul(positions: int, batch: int) -> None:
    rng = np.random.default_rng(0)

    def tensor(*shape):
        return tf.constant(rng.standard_normal(shape), tf.float32)

    kernel, kernel_t = tensor(positions, PATCH, FILTERS), tensor(positions, FILTERS, PATCH)
    patches, patches_t = tensor(positions, PATCH, batch), tensor(positions, batch, PATCH)
    upstream, upstream_t = tensor(positions, FILTERS, batch), tensor(positions, batch, FILTERS)
    products = {
        "forward  matmul(W, patches, adjoint_a)   [layer]": lambda: tf.matmul(
            kernel, patches, adjoint_a=True
        ),
        "forward  matmul(W^T (P,F,K), patches)": lambda: tf.matmul(kernel_t, patches),
        "forward  matmul(patches^T (P,B,K), W)": lambda: tf.matmul(patches_t, kernel),
        "dW       matmul(patches, dY, adjoint_b)  [layer]": lambda: tf.matmul(
            patches, upstream, adjoint_b=True
        ),
        "dW       matmul(patches, dY^T (P,B,F))": lambda: tf.matmul(patches, upstream_t),
        "dW       matmul(patches^T, dY^T, adjoint_a)": lambda: tf.matmul(
            patches_t, upstream_t, adjoint_a=True
        ),
        "dPatches matmul(W, dY)                   [layer]": lambda: tf.matmul(kernel, upstream),
        "dPatches matmul(dY^T, W, adjoint_b)": lambda: tf.matmul(
            upstream_t, kernel, adjoint_b=True
        ),
    }
    flops = 2 * positions * PATCH * FILTERS * batch
    print(f"{positions} positions x ({FILTERS} x {PATCH} x {batch}), {flops / 1e9:.2f} GFLOP each")
    for name, fn in products.items():
        ms = median_ms(fn)
        print(f"  {name:50s} {ms:8.2f} ms {flops / ms / 1e6:7.1f} GFLOP/s", flush=True)


def fold(rows: int, batch: int) -> None:
    """A block of `rows` output rows: patch gradient (P, K*K*C, B) -> input band (Q, C, B)."""
    width, band_rows = OUT_WIDTH + KERNEL - 1, rows + KERNEL - 1
    positions, cells, depth = rows * OUT_WIDTH, band_rows * width, CHANNELS * batch
    grad = tf.random.normal((positions, PATCH, batch), seed=0)
    oy, ox = np.divmod(np.arange(positions), OUT_WIDTH)
    ky, kx = np.divmod(np.arange(KERNEL * KERNEL), KERNEL)
    target = (oy[:, None] + ky) * width + ox[:, None] + kx  # (positions, offsets)
    index = tf.constant(target.reshape(-1), tf.int32)

    def segment_sum_3d():
        data = tf.reshape(grad, (-1, CHANNELS, batch))
        return tf.math.unsorted_segment_sum(data, index, cells)

    def segment_sum_rows():
        data = tf.reshape(grad, (-1, depth))
        return tf.reshape(tf.math.unsorted_segment_sum(data, index, cells), (cells, -1, batch))

    def scatter_nd_add():
        data = tf.reshape(grad, (-1, depth))
        summed = tf.tensor_scatter_nd_add(tf.zeros((cells, depth)), index[:, None], data)
        return tf.reshape(summed, (cells, -1, batch))

    def pads_then_add_n():
        data = tf.reshape(grad, (rows, OUT_WIDTH, KERNEL, KERNEL, depth))
        data = tf.transpose(data, (0, 2, 3, 1, 4))  # rows, ky, kx, x, depth
        by_row = tf.add_n(
            [
                tf.pad(data[:, :, k], [(0, 0), (0, 0), (k, KERNEL - 1 - k), (0, 0)])
                for k in range(KERNEL)
            ]
        )  # rows, ky, width, depth
        band = tf.add_n(
            [tf.pad(by_row[:, k], [(k, KERNEL - 1 - k), (0, 0), (0, 0)]) for k in range(KERNEL)]
        )
        return tf.reshape(band, (cells, -1, batch))

    reference = segment_sum_3d()
    print(f"fold of {positions} positions ({grad.shape.num_elements() * 4 / 2**20:.0f} MiB)")
    for fn in (segment_sum_3d, segment_sum_rows, scatter_nd_add, pads_then_add_n):
        error = float(tf.reduce_max(tf.abs(fn() - reference)))
        print(f"  {fn.__name__:20s} {median_ms(fn):8.2f} ms   max |diff| {error:.1e}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["matmul", "fold"])
    parser.add_argument("--positions", type=int, default=756, help="matmul: positions")
    parser.add_argument("--rows", type=int, default=14, help="fold: output rows in the block")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    if args.what == "matmul":
        matmul(args.positions, args.batch)
    else:
        fold(args.rows, args.batch)


if __name__ == "__main__":
    main()
