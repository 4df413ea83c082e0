"""Isolated TensorFlow op timings behind the layer's design choices (DeepFace L4 shapes).

    python bench/ops.py matmul [--positions 756] [--batch 32]   # batched-matmul orientations
    python bench/ops.py fold [--rows 14] [--batch 32]           # folding the patch gradient
    python bench/ops.py offsets [--batch 32]                    # the layer's per-offset ops

`matmul` times the layer's three batched products (forward, kernel gradient, patch
gradient) in each operand orientation, with operands built in advance, and prints
GFLOP/s. `fold` times ways of adding a block's patch gradient back onto the input
(col2im) and checks each against `unsorted_segment_sum`. `offsets` times each kind of op
of the layer's offsets formulation (one batched matmul per kernel offset), all 81 offsets
of L4 at once, so that the parts of the layer's step can be compared. Medians of 15
calls; each call returns four numbers so that no large copy to NumPy is timed.
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


def offsets(batch: int) -> None:
    """The per-offset ops of the layer at L4: each line runs its op for all 81 offsets."""
    out, size = OUT_WIDTH, OUT_WIDTH + KERNEL - 1
    positions, grid = out * out, [(i, j) for i in range(KERNEL) for j in range(KERNEL)]
    x = tf.random.normal((size, size, CHANNELS, batch), seed=0)  # position-major input
    x_t = tf.random.normal((size, size, batch, CHANNELS), seed=0)
    kernel = tf.random.normal((positions, PATCH, FILTERS), seed=1)
    kernel4 = tf.reshape(kernel, (positions, KERNEL * KERNEL, CHANNELS, FILTERS))
    upstream = tf.random.normal((positions, FILTERS, batch), seed=2)
    upstream_t = tf.transpose(upstream, (0, 2, 1))
    window = [
        tf.reshape(x[i : i + out, j : j + out], (positions, CHANNELS, batch)) for i, j in grid
    ]
    window_t = [
        tf.reshape(x_t[i : i + out, j : j + out], (positions, batch, CHANNELS)) for i, j in grid
    ]
    weights = [kernel4[:, o] for o in range(len(grid))]
    pieces = [tf.reshape(tf.matmul(w, upstream), (out, out, CHANNELS, batch)) for w in weights]

    def total(tensors):
        return tf.add_n([tf.reduce_sum(t[:1]) for t in tensors])

    def pad_and_add():
        summed = None
        for (i, j), piece in zip(grid, pieces, strict=True):
            placed = tf.pad(piece, [(i, KERNEL - 1 - i), (j, KERNEL - 1 - j), (0, 0), (0, 0)])
            summed = placed if summed is None else summed + placed
        return summed

    def rows_then_columns():  # per kernel row: pad and add along the width, then the rows
        summed = None
        for i in range(KERNEL):
            row = None
            for j in range(KERNEL):
                placed = tf.pad(
                    pieces[i * KERNEL + j], [(0, 0), (j, KERNEL - 1 - j), (0, 0), (0, 0)]
                )
                row = placed if row is None else row + placed
            placed = tf.pad(row, [(i, KERNEL - 1 - i), (0, 0), (0, 0), (0, 0)])
            summed = placed if summed is None else summed + placed
        return summed

    timings = {
        "input slices x[i:i+55, j:j+55] (P, C, B)": lambda: total(
            [tf.reshape(x[i : i + out, j : j + out], (positions, CHANNELS, batch)) for i, j in grid]
        ),
        "kernel slices (P, C, F) of the legacy layout": lambda: total(
            [kernel4[:, o] for o in range(len(grid))]
        ),
        "kernel to offset-major (81, P, C, F), one transpose": lambda: tf.transpose(
            kernel4, (1, 0, 2, 3)
        ),
        "forward matmul(W, X, adjoint_a) -> (P, F, B)": lambda: total(
            [tf.matmul(w, p, adjoint_a=True) for w, p in zip(weights, window, strict=True)]
        ),
        "forward einsum pkf,pkb->pfb (layer)": lambda: total(
            [tf.einsum("pkf,pkb->pfb", w, p) for w, p in zip(weights, window, strict=True)]
        ),
        "forward matmul(X^T (P, B, C), W) -> (P, B, F)": lambda: total(
            [tf.matmul(p, w) for w, p in zip(weights, window_t, strict=True)]
        ),
        "forward sum of the 81 products (add)": lambda: tf.add_n(
            [upstream + float(o) for o in range(len(grid))]
        ),
        "dW einsum pkb,pfb->pkf (layer)": lambda: total(
            [tf.einsum("pkb,pfb->pkf", p, upstream) for p in window]
        ),
        "dW matmul(X, dY^T (P, B, F))": lambda: total([tf.matmul(p, upstream_t) for p in window]),
        "dW (P, B, C) layout: matmul(X^T, dY^T, adjoint_a)": lambda: total(
            [tf.matmul(p, upstream_t, adjoint_a=True) for p in window_t]
        ),
        "dX (P, B, C) layout: matmul(dY^T, W, adjoint_b)": lambda: total(
            [tf.matmul(upstream_t, w, adjoint_b=True) for w in weights]
        ),
        "dX einsum pkf,pfb->pkb (layer)": lambda: total(
            [tf.einsum("pkf,pfb->pkb", w, upstream) for w in weights]
        ),
        "dW concatenate 81 x (P, C, F) -> (P, K, F)": lambda: tf.concat(weights, axis=1),
        "dX pieces: pad to the input and add (layer)": pad_and_add,
        "dX pieces: rows, then columns": rows_then_columns,
    }
    flops = 2 * positions * CHANNELS * FILTERS * batch * len(grid)
    print(
        f"L4: 81 offsets x {positions} x ({FILTERS} x {CHANNELS} x {batch}), "
        f"{flops / 1e9:.1f} GFLOP"
    )
    for name, fn in timings.items():
        ms = median_ms(fn)
        rate = f"{flops / ms / 1e6:6.1f} GFLOP/s" if "matmul" in name or "einsum" in name else ""
        print(f"  {name:54s} {ms:8.2f} ms {rate}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["matmul", "fold", "offsets"])
    parser.add_argument("--positions", type=int, default=756, help="matmul: positions")
    parser.add_argument("--rows", type=int, default=14, help="fold: output rows in the block")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    if args.what == "matmul":
        matmul(args.positions, args.batch)
    elif args.what == "fold":
        fold(args.rows, args.batch)
    else:
        offsets(args.batch)


if __name__ == "__main__":
    main()
