"""`train.py` on N simulated CPU devices, for the data-parallel tests.

    ZOO_CPU_DEVICES=2 python tests/training/devices_train.py <overrides>

TensorFlow: the CPU split into N logical devices before TensorFlow starts using it.
JAX: N host devices (XLA's --xla_force_host_platform_device_count), set before JAX loads.
"""

import os
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

if __name__ == "__main__":
    count = int(os.environ.get("ZOO_CPU_DEVICES", "1"))
    if os.environ.get("KERAS_BACKEND") == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}"
    else:
        import tensorflow as tf

        (cpu,) = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count
        )
    sys.argv[0] = str(ROOT / "train.py")
    runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
