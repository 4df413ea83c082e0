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
    sys.path.insert(0, str(ROOT))
    from zoo.runtime import configure_tensorflow

    configure_tensorflow()  # before zoo.training loads TensorFlow, as train.py would
    from zoo.training.distribution import simulate_cpu_devices

    simulate_cpu_devices(int(os.environ.get("ZOO_CPU_DEVICES", "1")))
    sys.argv[0] = str(ROOT / "train.py")
    runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
