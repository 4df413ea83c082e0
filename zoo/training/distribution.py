"""`trainer.distribution`: one model trained over several devices, with the engines Keras has.

    null            the single device the backend picks
    data_parallel   each global batch (`trainer.batch_size`) split over all local devices:
                    `tf.distribute.MirroredStrategy` on TensorFlow,
                    `keras.distribution.DataParallel` on JAX

The whole training job runs inside `scope(...)`, so that the variables are created as the
strategy wants them (mirrored on TensorFlow, replicated on a JAX device mesh) and `fit`
splits the batches. Gradients are averaged over the devices, so for the same seed and global
batch the update is the single-device update up to float rounding; layers that draw random
numbers per replica (dropout) differ, as they do with any data-parallel engine.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import keras

log = logging.getLogger(__name__)

KINDS = (None, "data_parallel")
@dataclass(frozen=True)
class Placement:
    """Where training runs: the engine and how many devices share each batch."""

    engine: str
    devices: int

    @property
    def batch_multiple(self) -> int:
        """What every batch's size must be a multiple of: JAX shards each batch evenly over
        the devices (keras-team/keras#21167); TensorFlow's strategy takes uneven ones."""
        return self.devices if self.engine == "DataParallel" else 1

    def tags(self) -> dict[str, str]:
        return {
            "backend": keras.backend.backend(),
            "distribution": self.engine,
            "world_size": str(self.devices),
        }


def simulate_cpu_devices(count: int) -> None:
    """Split the CPU into `count` devices, for tests and benchmarks without several chips:
    XLA host devices on JAX (set before JAX loads), logical devices on TensorFlow (set
    before TensorFlow first uses the CPU)."""
    if keras.backend.backend() == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}"
        return
    import tensorflow as tf

    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * count
    )


def accelerators() -> list[str]:
    """The GPUs the current backend sees (empty on a CPU-only machine)."""
    if keras.backend.backend() == "jax":
        import jax

        return [str(d) for d in jax.devices() if d.platform == "gpu"]
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def check_kind(kind: str | None) -> str | None:
    if kind not in KINDS:
        raise ValueError(
            f"trainer.distribution must be null or data_parallel, got {kind!r}; "
            "data_parallel splits each batch over all local devices"
        )
    return kind


@contextlib.contextmanager
def scope(kind: str | None) -> Iterator[Placement]:
    """Build, compile and restore the model inside this; it yields where training runs."""
    kind = check_kind(kind)
    backend = keras.backend.backend()
    if kind is None:
        yield Placement("single device", 1)
        return
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
        placement = Placement("MirroredStrategy", strategy.num_replicas_in_sync)
        log.info("Distribution: %s over %d devices", placement.engine, placement.devices)
        with strategy.scope():
            yield placement
        return
    if backend == "jax":
        import jax

        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        placement = Placement("DataParallel", jax.device_count())
        log.info("Distribution: %s over %d devices", placement.engine, placement.devices)
        try:
            yield placement
        finally:
            keras.distribution.set_distribution(previous)
        return
    raise ValueError(
        f"trainer.distribution=data_parallel works on the tensorflow and jax backends, not "
        f"{backend!r}; set KERAS_BACKEND=tensorflow or jax"
    )
