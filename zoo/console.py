"""What a command prints: TensorFlow's CUDA probe on CPU-only machines, Keras' progress."""

from __future__ import annotations

import glob
import os
import sys
import tempfile

# TensorFlow's CUDA probe and its oneDNN notice are written from C++ through absl before
# absl's logging is set up, so TF_CPP_MIN_LOG_LEVEL does not reach them.
START_UP_MARKERS = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "cudart_stub.cc",
    "cuda_platform.cc",
    "failed call to cuInit",
    "oneDNN custom operations are on",  # zoo.runtime turns them on; README "Speed" says so
)
VERBOSITIES = ("auto", 0, 1, 2)


def has_nvidia_device() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def load_tensorflow_quietly() -> None:
    """Import TensorFlow and let it look for GPUs without its CUDA lines on CPU-only machines.

    Where there is no NVIDIA device, stderr (file descriptor 2, which TensorFlow's C++
    writes to) goes to a temporary file during the import and the first device query;
    every captured line that is not part of the CUDA probe is then written out, so real
    errors and warnings still show. With a GPU nothing is hidden.
    """
    if has_nvidia_device():
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # the probe runs on the first query
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        lines = captured.read().decode(errors="replace").splitlines(keepends=True)
    sys.stderr.writelines(line for line in lines if not any(m in line for m in START_UP_MARKERS))


def keras_verbosity(setting: str | int) -> int:
    """`trainer.verbose`: `auto` is the progress bar on a terminal, one line per epoch otherwise.

    Keras' own `auto` draws the bar wherever it runs, so a redirected log fills with `\\r`
    redraws and ANSI colour codes.
    """
    if setting not in VERBOSITIES:
        raise ValueError(
            f"trainer.verbose must be auto, 0, 1 or 2, got {setting!r}; e.g. trainer.verbose=2 "
            "for one line per epoch."
        )
    if setting == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(setting)
