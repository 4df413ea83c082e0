"""Process-wide TensorFlow settings, which take effect only if set before TensorFlow loads."""

from __future__ import annotations

import os

DEFAULTS = {
    # TensorFlow's C++ start-up chatter.
    "TF_CPP_MIN_LOG_LEVEL": "2",
    # TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI, BF16 or
    # AMX; on an AVX2 machine they train DeepFace 2.3x faster (README, "Speed").
    "TF_ENABLE_ONEDNN_OPTS": "1",
}


def configure_tensorflow() -> None:
    """Apply `DEFAULTS`, except where the environment already sets a value (the user's wins)."""
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
