"""Custom Keras 3 layers."""

from zoo.layers.locally_connected import (
    BaseLocallyConnected,
    LocallyConnected1D,
    LocallyConnected2D,
)

__all__ = ["BaseLocallyConnected", "LocallyConnected1D", "LocallyConnected2D"]
