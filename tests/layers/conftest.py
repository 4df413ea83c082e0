"""Backend-agnostic helpers for the layer tests (they run under TensorFlow, JAX and torch)."""

import keras
import numpy as np
import pytest


def gradients(fn, *args):
    """Gradients of the scalar `fn(*args)` with respect to every argument, as NumPy arrays."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.convert_to_tensor(a) for a in args]
        with tf.GradientTape() as tape:
            for tensor in tensors:
                tape.watch(tensor)
            value = fn(*tensors)
        return [g.numpy() for g in tape.gradient(value, tensors)]
    if backend == "jax":
        import jax

        return [np.asarray(g) for g in jax.grad(fn, argnums=tuple(range(len(args))))(*args)]
    if backend == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in args]
        fn(*tensors).backward()
        return [t.grad.numpy() for t in tensors]
    raise NotImplementedError(f"No gradient helper for backend {backend!r}.")


@pytest.fixture
def float64():
    """Let float64 mean float64 on every backend (JAX truncates it unless x64 is on)."""
    if keras.backend.backend() == "jax":
        import jax

        with jax.enable_x64(True):
            yield
    else:
        yield


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
