"""Locally connected layers split over devices: `keras.distribution.LayoutMap` entries.

A locally connected kernel `(positions, patch, filters)` holds one filter bank per output
position, and each output position (and each filter) depends on its own weights only. So
the kernel splits along positions, or along filters, with no communication in the forward
pass: every device computes its share of the output from the replicated input, and holds
only its share of the kernel. A convolution, whose one small kernel every position shares,
has nothing comparable to split.

    mesh = keras.distribution.DeviceMesh((1, 2), ["batch", "model"])
    layouts = position_sharding(mesh, ["L4", "L5", "L6"], split="filters")
    keras.distribution.set_distribution(
        keras.distribution.ModelParallel(layout_map=layouts, batch_dim_name="batch"))
    model = build_deepface(spec)   # L4-L6 kernels now live half on each device

Splitting requires the split dimension to divide evenly by the model axis: positions work
for the `lcn` model (28 x 28 = 784), not for DeepFace's L4-L6 (55², 25², 21²: odd), whose
16 filters split over 2, 4, 8 or 16 devices. The layouts apply on the JAX backend (Keras's
`ModelParallel`); TensorFlow's `tf.distribute` has no per-variable layout for Keras 3.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import keras

SPLITS = ("positions", "filters")


def layer_layouts(
    name: str, rank: int = 2, split: str = "positions", axis: str = "model"
) -> dict[str, tuple[str | None, ...]]:
    """`{variable path pattern: axes}` for the kernel and bias of layer `name`.

    Kernel `(positions, patch, filters)`; bias `(*output size, filters)` (rank spatial
    axes). `split="positions"` splits the kernel's first axis and the bias's first spatial
    axis; `split="filters"` the last axis of both.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if rank not in (1, 2):
        raise ValueError(f"rank must be 1 (LocallyConnected1D) or 2 (2D), got {rank!r}")
    none = (None,) * rank
    if split == "positions":
        kernel, bias = (axis, None, None), (axis, *none)
    else:
        kernel, bias = (None, None, axis), (*none, axis)
    prefix = rf"(^|/){re.escape(name)}/"
    return {prefix + "kernel$": kernel, prefix + "bias$": bias}


def position_sharding(
    mesh: keras.distribution.DeviceMesh,
    layer_names: Sequence[str],
    rank: int = 2,
    split: str = "positions",
    axis: str = "model",
    layout_map: keras.distribution.LayoutMap | None = None,
) -> keras.distribution.LayoutMap:
    """A `LayoutMap` (new, or `layout_map` extended) that splits the named locally
    connected layers over mesh axis `axis`; every other variable stays replicated."""
    if axis not in mesh.axis_names:
        raise ValueError(f"mesh axes are {list(mesh.axis_names)}; there is no axis {axis!r}")
    layouts = layout_map if layout_map is not None else keras.distribution.LayoutMap(mesh)
    for name in layer_names:
        for pattern, axes in layer_layouts(name, rank, split, axis).items():
            layouts[pattern] = axes
    return layouts
