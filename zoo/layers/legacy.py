"""Load weights of the Keras 2 / tf-keras `LocallyConnected1D/2D` into the zoo layers.

The zoo layers keep the legacy `implementation=1` layout, so most Keras 2 weights load
unchanged. This module covers the rest:

- kernels saved by `implementation=2` (dense masked) and `implementation=3` (sparse);
- the legacy channels_first bias, which tf-keras stores as `(out_h, out_w, filters)` but
  applies as if it were laid out `(filters, out_h, out_w)` (a reshape where a transpose
  was meant); converting reproduces the legacy outputs exactly;
- `load_legacy_weights`, which reads a Keras 2 `.h5` file (from `save_weights` or
  `model.save`) into an equivalent zoo model, converting locally connected layers.
"""

from __future__ import annotations

import math
import os

import h5py
import keras
import numpy as np

from zoo.layers.locally_connected import BaseLocallyConnected


def _legacy_input_coordinates(layer: BaseLocallyConnected) -> tuple[list[np.ndarray], np.ndarray]:
    """Input coordinates of every (position, kernel offset) pair, as the legacy layer saw them.

    Returns one `(positions, kernel_volume)` int array per spatial dim and a boolean mask of
    the pairs that fall inside the (unpadded) input.
    """
    if layer.dilation_rate != (1,) * layer.rank:
        raise ValueError(
            f"Legacy locally connected layers have no dilation, but {layer.name} has "
            f"dilation_rate={layer.dilation_rate}; build the layer with dilation_rate=1."
        )
    spatial = layer._input_spatial
    positions = np.stack(np.unravel_index(np.arange(layer._positions), layer.output_size))
    offsets = np.stack(np.unravel_index(np.arange(layer._kernel_volume), layer.kernel_size))
    coordinates, inside = [], np.ones((layer._positions, layer._kernel_volume), bool)
    for dim in range(layer.rank):
        kernel, stride = layer.kernel_size[dim], layer.strides[dim]
        # Legacy windows start at pos * stride ('valid') or pos * stride - kernel // 2 ('same').
        legacy_start = 0 if layer.padding == "valid" else kernel // 2
        if legacy_start != layer._pads[dim][0]:
            raise ValueError(
                f"{layer.name}: legacy padding='same' starts each window {legacy_start} "
                f"pixels before the position, but this layer (like Conv) pads "
                f"{layer._pads[dim][0]} for kernel_size={layer.kernel_size}, strides="
                f"{layer.strides} and input size {spatial}. These weights cannot be "
                f"represented exactly (they can for an odd kernel size and an input size n "
                f"with n - 1 divisible by the stride)."
            )
        coordinate = positions[dim][:, None] * stride - legacy_start + offsets[dim][None, :]
        inside &= (coordinate >= 0) & (coordinate < spatial[dim])
        coordinates.append(np.clip(coordinate, 0, spatial[dim] - 1))
    return coordinates, inside


def _to_patch_order(kernel: np.ndarray, layer: BaseLocallyConnected) -> np.ndarray:
    """`(positions, kernel_volume, channels, filters)` -> `(positions, patch, filters)`."""
    if layer.data_format == "channels_first":
        kernel = kernel.transpose(0, 2, 1, 3)
    return kernel.reshape(layer._positions, -1, layer.filters)


def _from_dense_kernel(kernel: np.ndarray, layer: BaseLocallyConnected) -> np.ndarray:
    """Legacy `implementation=2`: a dense `(*in, C, *out, F)` kernel (channels_first:
    `(C, *in, F, *out)`) masked to the connected pairs."""
    coordinates, inside = _legacy_input_coordinates(layer)
    out = np.unravel_index(np.arange(layer._positions), layer.output_size)
    c = np.arange(layer._channels)[None, None, :, None]
    f = np.arange(layer.filters)[None, None, None, :]
    ins = [coordinate[:, :, None, None] for coordinate in coordinates]
    outs = [o[:, None, None, None] for o in out]
    if layer.data_format == "channels_last":
        gathered = kernel[(*ins, c, *outs, f)]
    else:
        gathered = kernel[(c, *ins, f, *outs)]
    return _to_patch_order(gathered * inside[:, :, None, None], layer)


def _from_sparse_kernel(kernel: np.ndarray, layer: BaseLocallyConnected) -> np.ndarray:
    """Legacy `implementation=3`: the values of a sparse `(out_flat, in_flat)` matrix,
    ordered by sorted `(out_index, in_index)` pairs."""
    coordinates, inside = _legacy_input_coordinates(layer)
    spatial, channels, filters = layer._input_spatial, layer._channels, layer.filters
    out = np.unravel_index(np.arange(layer._positions), layer.output_size)
    c = np.arange(channels)[None, None, :, None]
    f = np.arange(filters)[None, None, None, :]
    ins = [coordinate[:, :, None, None] for coordinate in coordinates]
    outs = [o[:, None, None, None] for o in out]
    if layer.data_format == "channels_last":
        out_index = np.ravel_multi_index((*outs, f), (*layer.output_size, filters))
        in_index = np.ravel_multi_index((*ins, c), (*spatial, channels))
    else:
        out_index = np.ravel_multi_index((f, *outs), (filters, *layer.output_size))
        in_index = np.ravel_multi_index((c, *ins), (channels, *spatial))
    keys = out_index.astype(np.int64) * (math.prod(spatial) * channels) + in_index
    keys = np.broadcast_to(keys, (*inside.shape, channels, filters))
    connected = np.broadcast_to(inside[:, :, None, None], keys.shape)
    if connected.sum() != kernel.size:
        raise ValueError(
            f"{layer.name}: a legacy implementation=3 kernel for this layer has "
            f"{int(connected.sum())} values, the weights given have {kernel.size}. "
            f"Check that the zoo layer has the legacy layer's configuration."
        )
    order = np.searchsorted(np.sort(keys[connected]), keys)
    values = np.where(connected, kernel[np.minimum(order, kernel.size - 1)], 0.0)
    return _to_patch_order(values.astype(kernel.dtype), layer)


def convert_legacy_weights(
    layer: BaseLocallyConnected, weights: list[np.ndarray]
) -> list[np.ndarray]:
    """Convert a legacy layer's `[kernel, bias]` (any `implementation`) to `layer`'s layout.

    The implementation is recognised from the kernel's rank: 3 for mode 1, `2 * rank + 2`
    for mode 2, 1 for mode 3. `layer` must be built with the legacy layer's configuration.
    """
    if not layer.built:
        raise ValueError(f"Build {layer.name} (call it on an input) before converting weights.")
    expected = len(layer.weights)
    if len(weights) != expected:
        raise ValueError(
            f"{layer.name} has {expected} weights (use_bias={layer.use_bias}), got "
            f"{len(weights)} legacy arrays."
        )
    kernel = np.asarray(weights[0])
    if kernel.ndim == 1:
        kernel = _from_sparse_kernel(kernel, layer)
    elif kernel.ndim == 2 * layer.rank + 2:
        kernel = _from_dense_kernel(kernel, layer)
    converted = [kernel]
    if layer.use_bias:
        bias = np.asarray(weights[1])
        if layer.data_format == "channels_first" and bias.size == math.prod(layer.bias.shape):
            # Legacy applies the bias as reshape(bias, (filters, *out)).
            bias = np.moveaxis(bias.reshape(layer.filters, *layer.output_size), 0, -1)
        converted.append(bias)
    _check_shapes(layer, converted)
    return converted


def _check_shapes(layer: keras.layers.Layer, weights: list[np.ndarray]) -> None:
    for variable, value in zip(layer.weights, weights, strict=True):
        if tuple(variable.shape) != tuple(np.shape(value)):
            raise ValueError(
                f"Weight {variable.path!r} of layer {layer.name!r} has shape "
                f"{tuple(variable.shape)}, but the file holds {tuple(np.shape(value))}. "
                f"Build the model with the same configuration (input size, kernel size, "
                f"strides, padding, filters) as the model that saved the weights."
            )


def _names(values) -> list[str]:
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def read_legacy_h5(path: str | os.PathLike) -> list[tuple[str, list[np.ndarray]]]:
    """The `(layer name, weights)` of every layer with weights in a Keras 2 `.h5` file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"No legacy weights file at {os.fspath(path)!r}.")
    with h5py.File(path, "r") as file:
        group = file.get("model_weights", file)
        if "layer_names" not in group.attrs:
            raise ValueError(
                f"{os.fspath(path)!r} is not a Keras 2 HDF5 weights file (no 'layer_names')."
            )
        layers = []
        for name in _names(group.attrs["layer_names"]):
            weight_names = _names(group[name].attrs["weight_names"])
            if weight_names:
                layers.append((name, [np.asarray(group[name][w]) for w in weight_names]))
    return layers


def load_legacy_weights(model: keras.Model, path: str | os.PathLike) -> None:
    """Load a Keras 2 `.h5` file into `model`, layer by layer in order (as Keras 2 did).

    Locally connected layers are converted from any legacy implementation and data
    format; every other layer's weights are set as they are. Raises a `ValueError` that
    names the layer when the counts or shapes do not match.
    """
    legacy_layers = read_legacy_h5(path)
    layers = [layer for layer in model.layers if layer.weights]
    if len(layers) != len(legacy_layers):
        raise ValueError(
            f"{os.fspath(path)!r} holds weights for {len(legacy_layers)} layers "
            f"({[name for name, _ in legacy_layers]}), the model has {len(layers)} layers "
            f"with weights ({[layer.name for layer in layers]})."
        )
    for layer, (_, weights) in zip(layers, legacy_layers, strict=True):
        if isinstance(layer, BaseLocallyConnected):
            weights = convert_legacy_weights(layer, weights)
        _check_shapes(layer, weights)
        layer.set_weights(weights)
