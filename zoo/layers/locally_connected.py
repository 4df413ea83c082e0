"""Locally connected layers: a convolution whose filter is not shared across positions."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import keras
from keras import ops

from zoo.layers import fused

_PADDINGS = ("valid", "same")
_DATA_FORMATS = ("channels_last", "channels_first")
# Least contraction depth (channels x kernel offsets) of one batched matmul: layers with
# fewer input channels multiply runs of consecutive kernel offsets at once (see
# `_offset_groups` and bench/RESULTS.md).
_MIN_DEPTH = 16


def _positive_tuple(name: str, value: int | Sequence[int], rank: int) -> tuple[int, ...]:
    """Turn an int or a sequence into a tuple of `rank` positive ints, or raise a clear error."""
    values = (value,) * rank if isinstance(value, int) else tuple(value)
    if len(values) != rank or not all(isinstance(v, int) and v > 0 for v in values):
        raise ValueError(
            f"{name} must be a positive int or a tuple of {rank} positive ints, got {value!r}."
        )
    return values


class BaseLocallyConnected(keras.layers.Layer):
    """Shared implementation of `LocallyConnected1D` and `LocallyConnected2D` (any rank).

    The computation is one batched matmul per kernel offset, summed (the "offsets"
    formulation):

    1. the input is laid out position-major, `(*spatial, batch, channels)`, and padded;
    2. the cells kernel offset `o` reads are a slice of it, already `(positions, batch,
       channels)` (with strides, a unit-stride slice of one stride phase of the input);
    3. `slice @ kernel rows of o` `(positions, channels, filters)` (a slice of the legacy
       kernel layout) gives that offset's `(positions, batch, filters)` share of the
       output; the shares are summed and moved back to the requested data format.

    No patch tensor (500 MB for DeepFace's L4 at batch 32), gather or segment sum. The
    gradient is written by hand with the same shape (`_gradients`): per offset, the
    kernel gradient `slice^T @ upstream` and the input gradient `upstream @ kernel
    rows^T`, added at the cells the offset read (`_input_gradient`); the kernel gradient
    is joined in the legacy layout once. Peak memory is the kernel, its gradient and a
    few input-sized tensors. Layers with few channels multiply runs of offsets at once
    (`_offset_groups`). The saved weights keep the legacy layout, so Keras 2 weights load
    unchanged.
    """

    def __init__(
        self,
        rank: int,
        filters: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: int | Sequence[int] = 1,
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        implementation: int = 1,
        **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"filters must be a positive int, got {filters!r}.")
        if padding not in _PADDINGS:
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}.")
        data_format = data_format or keras.config.image_data_format()
        if data_format not in _DATA_FORMATS:
            raise ValueError(
                f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}."
            )
        if implementation not in (1, 2, 3):
            raise ValueError(
                f"implementation must be 1, 2 or 3 (legacy API; all use the same computation "
                f"here), got {implementation!r}."
            )
        self.rank = rank
        self.filters = filters
        self.kernel_size = _positive_tuple("kernel_size", kernel_size, rank)
        self.strides = _positive_tuple("strides", strides, rank)
        self.padding = padding
        self.data_format = data_format
        self.dilation_rate = _positive_tuple("dilation_rate", dilation_rate, rank)
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.implementation = implementation
        self.input_spec = keras.layers.InputSpec(ndim=rank + 2)

    # ------------------------------------------------------------------ geometry
    def _split_input_shape(self, input_shape) -> tuple[tuple, int | None]:
        if len(input_shape) != self.rank + 2:
            raise ValueError(
                f"{type(self).__name__} expects inputs of rank {self.rank + 2} "
                f"(batch, {'spatial, ' * self.rank}channels), got shape {tuple(input_shape)}."
            )
        if self.data_format == "channels_last":
            return tuple(input_shape[1:-1]), input_shape[-1]
        return tuple(input_shape[2:]), input_shape[1]

    def _geometry(self, input_shape) -> tuple[tuple[int, ...], list[tuple[int, int]]]:
        """Output spatial size and (before, after) padding per spatial dim, with clear errors."""
        spatial, _ = self._split_input_shape(input_shape)
        if any(size is None for size in spatial):
            raise ValueError(
                f"{type(self).__name__} needs a known spatial size (one filter per output "
                f"position), got input shape {tuple(input_shape)}. Give the model a fixed "
                f"input size, e.g. keras.Input(shape=(152, 152, 3)), or resize the data."
            )
        output_size, pads = [], []
        for size, kernel, stride, dilation in zip(
            spatial, self.kernel_size, self.strides, self.dilation_rate, strict=True
        ):
            effective_kernel = (kernel - 1) * dilation + 1
            if self.padding == "valid":
                out = (size - effective_kernel) // stride + 1 if size >= effective_kernel else 0
                pad = (0, 0)
            else:
                out = math.ceil(size / stride)
                total = max((out - 1) * stride + effective_kernel - size, 0)
                pad = (total // 2, total - total // 2)
            if out <= 0:
                raise ValueError(
                    f"{type(self).__name__}: kernel_size={self.kernel_size} with "
                    f"dilation_rate={self.dilation_rate} (effective size {effective_kernel}) "
                    f"does not fit the input spatial size {spatial} with padding="
                    f"{self.padding!r}. Use a smaller kernel, padding='same', or larger inputs."
                )
            output_size.append(out)
            pads.append(pad)
        return tuple(output_size), pads

    def _offset_groups(self) -> list[tuple[int, list[tuple[int, ...]]]]:
        """Kernel offsets in row-major order (the legacy patch order), in runs of `size`.

        Returns `(first, offsets)` per run, `first` being the flat index of the run's first
        offset. Each run is one batched matmul of contraction depth `len(offsets) x
        channels`. A single offset (depth = channels) needs no patch tensor at all; with
        few channels (1 in the `lcn` MNIST layer) offsets are grouped until the depth
        reaches `_MIN_DEPTH`, which builds a patch tensor of that depth only.
        """
        offsets = list(itertools.product(*(range(k) for k in self.kernel_size)))
        size = min(len(offsets), max(1, -(-_MIN_DEPTH // self._channels)))
        return [(start, offsets[start : start + size]) for start in range(0, len(offsets), size)]

    def _phase_grid(self) -> list[int]:
        """Cells per stride phase along each padded spatial dim: `ceil(padded / stride)`."""
        return [-(-n // s) for n, s in zip(self._padded_spatial, self.strides, strict=True)]

    def _phase_and_start(self, offset: Sequence[int], dims: Sequence[int]):
        """Stride phase and start in that phase's grid of `offset` along `dims`.

        Offset `o` reads cells `o * dilation + stride * i` of a dim: phase `o * dilation
        mod stride`, cells `o * dilation // stride + i` of that phase, a unit-stride block.
        """
        starts, phase = [], []
        for o, dim in zip(offset, dims, strict=True):
            start, p = divmod(o * self.dilation_rate[dim], self.strides[dim])
            starts.append(start)
            phase.append(p)
        return tuple(phase), starts

    def _phase_split(self, x):
        """A function from a stride phase to that phase's cells of `x` `(*padded, batch, C)`,
        `(*grid, batch, C)`, each computed once: the input padded to whole strides and
        reshaped, so no strided slice runs per offset (with unit strides, `x` itself)."""
        if all(s == 1 for s in self.strides):
            return lambda phase: x
        grid = self._phase_grid()
        extra = [
            g * s - n for g, s, n in zip(grid, self.strides, self._padded_spatial, strict=True)
        ]
        x = ops.pad(x, [*((0, e) for e in extra), (0, 0), (0, 0)])
        shape = [size for g, s in zip(grid, self.strides, strict=True) for size in (g, s)]
        x = ops.reshape(x, (*shape, -1, self._channels))
        cache = {}

        def phase_cells(phase):
            if phase not in cache:
                cache[phase] = x[tuple(i for p in phase for i in (slice(None), p))]
            return cache[phase]

        return phase_cells

    def _window(self, phases, offset: Sequence[int]):
        """The `(*out, batch, C)` cells of the padded input that kernel offset `offset`
        reads, a unit-stride slice of its phase (`phases` from `_phase_split`)."""
        phase, starts = self._phase_and_start(offset, range(self.rank))
        block = tuple(slice(a, a + n) for a, n in zip(starts, self.output_size, strict=True))
        return phases(phase)[block]

    # --------------------------------------------------------------------- build
    def build(self, input_shape):
        spatial, channels = self._split_input_shape(input_shape)
        if channels is None:
            raise ValueError(
                f"{type(self).__name__} needs a known number of input channels, got input "
                f"shape {tuple(input_shape)}."
            )
        self.output_size, self._pads = self._geometry(input_shape)
        padded = [size + sum(pad) for size, pad in zip(spatial, self._pads, strict=True)]
        self._padding_needed = any(before or after for before, after in self._pads)
        self._input_spatial = tuple(spatial)
        self._padded_spatial = tuple(padded)
        self._positions = math.prod(self.output_size)
        self._kernel_volume = math.prod(self.kernel_size)
        self._channels = channels
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self._positions, self._kernel_volume * channels, self.filters),
            initializer=self._per_position_initializer(),
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(*self.output_size, self.filters),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None
        spatial_axes = (
            range(1, self.rank + 1)
            if self.data_format == "channels_last"
            else (range(2, self.rank + 2))
        )
        channel_axis = -1 if self.data_format == "channels_last" else 1
        self.input_spec = keras.layers.InputSpec(
            ndim=self.rank + 2,
            axes={channel_axis: channels, **dict(zip(spatial_axes, spatial, strict=True))},
        )

    def _per_position_initializer(self):
        """Give each position's filter the fans of the matching convolution filter.

        Keras computes fans over the whole `(positions, patch, filters)` kernel, which
        makes every fan `positions` times too large (the legacy layer's defect: DeepFace's
        L4 started 55x too small). For variance-scaling initializers (Glorot, He, LeCun)
        the scale is corrected so that the variance equals Conv's: fan_in = patch size,
        fan_out = kernel volume x filters. Other initializers do not depend on fans.
        """
        initializer = self.kernel_initializer
        if not isinstance(initializer, keras.initializers.VarianceScaling):
            return initializer
        patch = self._kernel_volume * self._channels
        conv_fans = {"fan_in": patch, "fan_out": self._kernel_volume * self.filters}
        kernel_fans = {"fan_in": self._positions * patch, "fan_out": self._positions * self.filters}
        for fans in (conv_fans, kernel_fans):
            fans["fan_avg"] = (fans["fan_in"] + fans["fan_out"]) / 2
        mode = initializer.mode
        return keras.initializers.VarianceScaling(
            scale=initializer.scale * kernel_fans[mode] / conv_fans[mode],
            mode=mode,
            distribution=initializer.distribution,
            seed=initializer.seed,
        )

    # ---------------------------------------------------------------------- call
    def call(self, inputs):
        if fused.applies(self, inputs):
            return self._activate(self._fused_matmul(inputs))
        rank = self.rank
        if self.data_format == "channels_last":
            to_position_major = (*range(1, rank + 1), 0, rank + 1)
            from_position_major = (rank, *range(rank), rank + 1)
        else:
            to_position_major = (*range(2, rank + 2), 0, 1)
            from_position_major = (rank, rank + 1, *range(rank))

        x = ops.transpose(inputs, to_position_major)  # (*spatial, batch, C)
        if self._padding_needed:
            x = ops.pad(x, [*self._pads, (0, 0), (0, 0)])
        # A reshape reads the variable into a tensor (TF's custom_gradient must not see
        # the variable itself).
        kernel = ops.reshape(self.kernel, self.kernel.shape)
        outputs = self._local_matmul(x, kernel)  # (P, batch, F)
        outputs = ops.reshape(outputs, (*self.output_size, -1, self.filters))
        if self.use_bias:
            outputs = outputs + ops.expand_dims(self.bias, -2)
        return self._activate(ops.transpose(outputs, from_position_major))

    def _activate(self, outputs):
        return self.activation(outputs) if self.activation is not None else outputs

    def _fused_matmul(self, inputs):
        """`(batch, *out, F)` outputs of the fused CPU kernel (`zoo.layers.fused`)."""
        # Reshapes read the variables into tensors (custom_gradient must not see variables).
        kernel = ops.reshape(self.kernel, self.kernel.shape)
        bias = ops.reshape(self.bias, (self._positions, self.filters)) if self.use_bias else None
        geometry = fused.geometry(self, self._padded_spatial)
        # (batch, P, F), bias added; the kernel pads and lays out the input itself
        outputs = fused.local_matmul(inputs, kernel, bias, geometry, fused.pads(self))
        return ops.reshape(outputs, (-1, *self.output_size, self.filters))

    def _group_kernel(self, kernel, first: int, count: int):
        """The kernel rows of `count` consecutive offsets from `first`: `(P, depth, F)`.

        A slice of the legacy layout (no copy of the whole kernel): contiguous rows for
        channels_last (patch order `(*kernel, C)`), a strided view for channels_first
        (`(C, *kernel)`), with rows in the group's patch order in both.
        """
        if self.data_format == "channels_last":
            channels = self._channels
            return kernel[:, first * channels : (first + count) * channels]
        kernel = ops.reshape(kernel, (self._positions, self._channels, self._kernel_volume, -1))
        return ops.reshape(kernel[:, :, first : first + count], (self._positions, -1, self.filters))

    def _group_patches(self, phases, offsets):
        """`(P, batch, depth)` patches of a run of offsets: slices of the input's stride
        phases, stacked in the kernel's patch order (one slice for a single offset)."""
        pieces = [self._window(phases, offset) for offset in offsets]  # (*out, batch, C)
        if len(pieces) > 1:
            axis = self.rank + 1 if self.data_format == "channels_last" else self.rank + 2
            pieces = [ops.stack(pieces, axis=axis)]
        depth = len(offsets) * self._channels
        return ops.reshape(pieces[0], (self._positions, -1, depth))

    def _group_pieces(self, patches_grad, count: int):
        """Split a run's patch gradient `(P, batch, depth)` into one `(*out, batch, C)`
        piece per offset (inverse of `_group_patches`)."""
        if count == 1:
            return [ops.reshape(patches_grad, (*self.output_size, -1, self._channels))]
        if self.data_format == "channels_last":
            grouped = ops.reshape(patches_grad, (*self.output_size, -1, count, self._channels))
            return [grouped[(Ellipsis, t, slice(None))] for t in range(count)]
        grouped = ops.reshape(patches_grad, (*self.output_size, -1, self._channels, count))
        return [grouped[(Ellipsis, t)] for t in range(count)]

    @staticmethod
    def _after(tensor, previous):
        """`tensor`, computed only once `previous` is (`tensor` itself if it is None).

        TensorFlow's executor runs every op as soon as its inputs exist, so without this
        the slices of all kernel offsets (2 GB for DeepFace's L4 at batch 128) would be
        made before the first product consumes them. An input-sized add of zero per
        kernel row orders the forward's rows, so it holds one row's slices at a time (the
        same ordering in the backward cost more time than it saved memory: bench/RESULTS.md).
        """
        if previous is None:
            return tensor
        return tensor + ops.cast(0, tensor.dtype) * ops.sum(previous[:1, :1, :1])

    def _local_matmul(self, x, kernel):
        """`(P, batch, F)` outputs of the padded position-major input `x` `(*padded, batch, C)`.

        One batched matmul per run of kernel offsets (`_offset_groups`), summed: the
        offset's slice of `x` is already `(positions, batch, C)`, and its kernel
        rows are a slice of the legacy layout. No patch tensor, gather or segment sum.
        The gradient is written by hand with the same shape (`_gradients`).
        """
        groups = self._offset_groups()

        @ops.custom_gradient
        def local_matmul(x, kernel):
            outputs, row = None, None
            for first, offsets in groups:
                if offsets[0][0] != row:  # a new kernel row: its slices wait for the last
                    phases = self._phase_split(self._after(x, outputs))
                    row = offsets[0][0]
                weights = self._group_kernel(kernel, first, len(offsets))
                y = ops.einsum("pbk,pkf->pbf", self._group_patches(phases, offsets), weights)
                outputs = y if outputs is None else outputs + y

            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                return self._gradients(x, kernel, upstream, groups)

            return outputs, grad

        return local_matmul(x, kernel)

    def _input_gradient(self, pieces):
        """The sum of every offset's input-gradient piece at the cells that offset read.

        `pieces` yields `(offset, piece)`, piece `(*out, batch, C)`. The cells an offset
        reads are one stride phase of the padded input (`o * dilation mod stride` per
        dim) and, within that phase's grid of `ceil(padded / stride)` cells, a block
        starting at `o * dilation // stride`: so a piece is placed by zero padding alone,
        and every sum is over tensors about the size of a piece. Pieces are first summed
        along the last spatial dim (a band per leading offset), then the bands into their
        phase, and the phases are interleaved at the end (with unit strides, the one
        phase is the padded input).
        """
        grid = self._phase_grid()

        def place(offset, dims):
            """Pad widths and phase of `offset` in `dims` of the phase grid."""
            phase, starts = self._phase_and_start(offset, dims)
            sizes = [(grid[d], self.output_size[d]) for d in dims]
            widths = [(a, g - a - n) for a, (g, n) in zip(starts, sizes, strict=True)]
            return widths, phase

        def accumulate(sums, key, tensor):
            sums[key] = sums[key] + tensor if key in sums else tensor

        bands, lead = {}, [(0, 0)] * (self.rank - 1)
        for offset, piece in pieces:
            widths, phase = place(offset[-1:], [self.rank - 1])
            band = ops.pad(piece, [*lead, *widths, (0, 0), (0, 0)])
            accumulate(bands, (offset[:-1], phase), band)
        phases = {}
        for (offset, last_phase), band in bands.items():
            widths, phase = place(offset, range(self.rank - 1))
            accumulate(phases, phase + last_phase, ops.pad(band, [*widths, (0, 0), (0, 0), (0, 0)]))
        if all(s == 1 for s in self.strides):
            return phases[(0,) * self.rank]
        zeros = ops.zeros_like(next(iter(phases.values())))
        every_phase = itertools.product(*(range(s) for s in self.strides))
        grads = ops.stack([phases.get(phase, zeros) for phase in every_phase], axis=0)
        grads = ops.reshape(grads, (*self.strides, *grid, -1, self._channels))
        interleaved = [axis for dim in range(self.rank) for axis in (self.rank + dim, dim)]
        grads = ops.transpose(grads, (*interleaved, 2 * self.rank, 2 * self.rank + 1))
        full = [g * s for g, s in zip(grid, self.strides, strict=True)]
        grads = ops.reshape(grads, (*full, -1, self._channels))
        return grads[tuple(slice(0, n) for n in self._padded_spatial)]

    def _gradients(self, x, kernel, upstream, groups):
        """Input and kernel gradients of `_local_matmul`, one run of offsets at a time.

        Per run: the kernel gradient `patches^T @ upstream` `(P, depth, F)` and the patch
        gradient `upstream @ kernel^T` `(P, batch, depth)`, whose per-offset pieces are
        added at the input cells the offset read (`_input_gradient`). The kernel
        gradient's runs are joined in the legacy layout at the end.
        """
        kernel_grads = []

        phases = self._phase_split(x)

        def pieces():
            for first, offsets in groups:
                weights = self._group_kernel(kernel, first, len(offsets))
                patches = self._group_patches(phases, offsets)
                kernel_grads.append(ops.einsum("pbk,pbf->pkf", patches, upstream))
                patches_grad = ops.einsum("pbf,pkf->pbk", upstream, weights)
                split = self._group_pieces(patches_grad, len(offsets))
                yield from zip(offsets, split, strict=True)

        x_grad = self._input_gradient(pieces())
        if self.data_format == "channels_last":
            return x_grad, ops.concatenate(kernel_grads, axis=1)
        shape = (self._positions, self._channels, -1, self.filters)
        kernel_grad = ops.concatenate([ops.reshape(g, shape) for g in kernel_grads], axis=2)
        return x_grad, ops.reshape(kernel_grad, kernel.shape)

    def compute_output_shape(self, input_shape):
        output_size, _ = self._geometry(input_shape)
        if self.data_format == "channels_last":
            return (input_shape[0], *output_size, self.filters)
        return (input_shape[0], self.filters, *output_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "data_format": self.data_format,
                "dilation_rate": self.dilation_rate,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint),
                "implementation": self.implementation,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="zoo")
class LocallyConnected2D(BaseLocallyConnected):
    """2D locally connected layer: `Conv2D`'s shape, a separate filter per output position.

    Every output position `(i, j)` has its own `kernel_size` filter bank and its own
    bias, so the layer has `out_h * out_w` times the weights of the same-shape
    `Conv2D` and exactly its FLOPs. It is the layer Keras 3 removed, written with
    `keras.ops` so that it runs on every backend, with the legacy weight layout so
    that Keras 2 weights load unchanged (see `zoo.layers.legacy`).

    Args:
        filters: number of output channels.
        kernel_size: int or `(kh, kw)`.
        strides: int or `(sh, sw)`. Default 1.
        padding: `"valid"` or `"same"` (the same padding `Conv2D` uses).
        data_format: `"channels_last"` (default from `keras.config.image_data_format()`)
            or `"channels_first"`.
        dilation_rate: int or `(dh, dw)`; may be combined with strides.
        activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint:
            as for `Conv2D`. Variance-scaling initializers (the default Glorot uniform,
            He, LeCun) use the fans of one position's filter, i.e. each filter starts
            like the matching `Conv2D` filter; the legacy layer used fans over all
            positions and started `sqrt(out_h * out_w)` times too small.
        implementation: accepted for compatibility with the legacy API (1, 2 or 3);
            every value runs the same single computation and keeps the mode-1 layout.

    Weights:
        kernel: `(out_h * out_w, kh * kw * in_c, filters)`; positions row-major; each
            patch flattened `(kh, kw, in_c)` for channels_last and `(in_c, kh, kw)` for
            channels_first, exactly as legacy `implementation=1`.
        bias: `(out_h, out_w, filters)`: position `(i, j)`, filter `f`, in both formats.

    Input shape: `(batch, h, w, c)` or `(batch, c, h, w)`; `h`, `w`, `c` must be known.
    Output shape: `(batch, out_h, out_w, filters)` or `(batch, filters, out_h, out_w)`.

    Example:
    >>> layer = LocallyConnected2D(16, 9, activation="relu")
    >>> layer(keras.ops.ones((2, 63, 63, 16))).shape
    (2, 55, 55, 16)
    >>> layer.kernel.shape
    (3025, 1296, 16)
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        data_format=None,
        dilation_rate=(1, 1),
        **kwargs,
    ):
        super().__init__(
            2,
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            **kwargs,
        )


@keras.saving.register_keras_serializable(package="zoo")
class LocallyConnected1D(BaseLocallyConnected):
    """1D locally connected layer: `Conv1D`'s shape, a separate filter per output step.

    Same arguments and behaviour as `LocallyConnected2D`, with one spatial axis.

    Weights:
        kernel: `(out_len, k * in_c, filters)`, patches flattened `(k, in_c)` for
            channels_last and `(in_c, k)` for channels_first (legacy `implementation=1`).
        bias: `(out_len, filters)`.

    Example:
    >>> layer = LocallyConnected1D(8, 3)
    >>> layer(keras.ops.ones((2, 10, 4))).shape
    (2, 8, 8)
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        **kwargs,
    ):
        super().__init__(
            1,
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            **kwargs,
        )
