"""Parameters and FLOPs per layer, read from a built model (never from hard-coded figures).

FLOPs count one multiply-add as 2 FLOPs, per example, for the layers that do arithmetic:
`Conv2D` and `LocallyConnected2D` (out_h·out_w·kh·kw·in_c·filters MACs, the same for both:
unshared filters change the weights, not the work), `Dense` (in·units MACs), plus one FLOP
per output for biases. Pooling, activations and reshapes are not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras

from zoo.layers import BaseLocallyConnected


@dataclass(frozen=True)
class LayerCost:
    """One layer's cost. `weights` excludes biases; `parameters` includes them."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    weights: int
    parameters: int
    flops: int


def _output_shape(layer: keras.layers.Layer) -> tuple[int, ...]:
    return tuple(int(d) for d in layer.output.shape[1:])


def _weights(layer: keras.layers.Layer) -> int:
    kernel = getattr(layer, "kernel", None)
    return math.prod(kernel.shape) if kernel is not None else 0


def _flops(layer: keras.layers.Layer) -> int:
    out = _output_shape(layer)
    has_bias = bool(getattr(layer, "use_bias", False))
    if isinstance(layer, keras.layers.Conv2D | BaseLocallyConnected):
        in_channels = int(layer.input.shape[-1])
        positions = math.prod(out[:-1])
        macs = positions * math.prod(layer.kernel_size) * in_channels * layer.filters
        return 2 * macs + (math.prod(out) if has_bias else 0)
    if isinstance(layer, keras.layers.Dense):
        return 2 * int(layer.input.shape[-1]) * layer.units + (layer.units if has_bias else 0)
    return 0


def layer_costs(model: keras.Model) -> list[LayerCost]:
    """Every layer of a functional `model` with its output shape, weights, parameters, FLOPs."""
    costs = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        costs.append(
            LayerCost(
                name=layer.name,
                kind=type(layer).__name__,
                output_shape=_output_shape(layer),
                weights=_weights(layer),
                parameters=layer.count_params(),
                flops=_flops(layer),
            )
        )
    return costs


def totals(model: keras.Model) -> dict[str, int]:
    """`{"parameters": ..., "flops_per_example": ...}` of the whole model."""
    costs = layer_costs(model)
    return {
        "parameters": sum(c.parameters for c in costs),
        "flops_per_example": sum(c.flops for c in costs),
    }


def markdown_table(model: keras.Model) -> str:
    """The layer table (DeepFace's Fig. 2 style) as markdown, with a total row."""
    rows = [
        f"| {c.name} | {c.kind} | {'x'.join(map(str, c.output_shape))} | {c.weights:,} | "
        f"{c.parameters:,} | {c.flops:,} |"
        for c in layer_costs(model)
    ]
    total = totals(model)
    return "\n".join(
        [
            f"Model `{model.name}`, input {'x'.join(str(d) for d in model.input.shape[1:])}",
            "",
            "| layer | type | output | weights | parameters | FLOPs / example |",
            "|---|---|---|---:|---:|---:|",
            *rows,
            f"| **total** | | | | **{total['parameters']:,}** | "
            f"**{total['flops_per_example']:,}** |",
        ]
    )


@dataclass(frozen=True)
class SeedFigure:
    """A parameter count quoted by the seed articles, next to the count of a built layer."""

    example: str
    layer: str
    quoted: int
    measured: int


def seed_figures() -> list[SeedFigure]:
    """Build the seed articles' models with the zoo's builders and count their weights.

    The quoted figures are the articles' (weights only); `measured` comes from the built
    layers' kernels, so a builder that drifts from the articles shows up here.
    """
    from zoo.data.spec import DataSpec
    from zoo.models import build_cnn, build_mlp

    def spec(shape: tuple[int, int, int], classes: int = 10) -> DataSpec:
        return DataSpec("seed", shape, classes, tuple(str(i) for i in range(classes)))

    def weights(model: keras.Model, layer: str) -> int:
        return _weights(model.get_layer(layer))

    mnist, cifar, large = spec((28, 28, 1)), spec((32, 32, 3)), spec((128, 128, 1), 2)
    mlp = build_mlp(mnist)
    cnn = build_cnn(mnist, padding="valid")
    cifar_mlp = build_mlp(cifar, hidden_units=1000)
    cifar_cnn = build_cnn(cifar, filters=64, hidden_units=1)
    large_conv = build_cnn(large, filters=256, kernel_size=5, padding="valid", hidden_units=1)
    figures = [
        SeedFigure("MNIST, dense 784->128", "mlp/hidden", 100_352, weights(mlp, "hidden")),
        SeedFigure("MNIST, conv 32 filters 3x3x1", "cnn/conv", 288, weights(cnn, "conv")),
    ]
    del mlp
    same = build_cnn(mnist)  # 'same' padding keeps 28x28, pooled to 14x14: the seed's count
    figures += [
        SeedFigure("MNIST CNN dense 14*14*32->128", "cnn/hidden", 802_816, weights(same, "hidden")),
        SeedFigure("MNIST CNN output 128->10", "cnn/classes", 1_280, weights(same, "classes")),
        SeedFigure("CIFAR-10, dense 1000", "mlp/hidden", 3_072_000, weights(cifar_mlp, "hidden")),
        SeedFigure(
            "CIFAR-10, conv 64 filters 3x3x3", "cnn/conv", 1_728, weights(cifar_cnn, "conv")
        ),
        SeedFigure(
            "128x128, 256 filters 5x5, conv", "cnn/conv", 6_400, weights(large_conv, "conv")
        ),
    ]
    del large_conv, cifar_mlp, cifar_cnn, cnn
    large_local = build_cnn(
        large, filters=256, kernel_size=5, padding="valid", hidden_units=1, locally_connected=True
    )
    figures.append(
        SeedFigure(
            "128x128, 256 5x5, locally connected",
            "lcn/local",
            98_406_400,
            weights(large_local, "local"),
        )
    )
    return figures


def seed_table(figures: list[SeedFigure]) -> str:
    rows = [
        f"| {f.example} | {f.layer} | {f.quoted:,} | {f.measured:,} | "
        f"{'yes' if f.quoted == f.measured else '**no**'} |"
        for f in figures
    ]
    return "\n".join(
        [
            "| seed example | built layer | quoted | measured | equal |",
            "|---|---|---:|---:|---|",
            *rows,
        ]
    )
