"""Locally connected networks for Keras 3: layers, reference models, and a training pipeline."""

__version__ = "0.1.0"
