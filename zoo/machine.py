"""The machine a timing belongs to: CPU model, cores, the vector extensions kernels use, and
the C++ compiler that builds them."""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu() -> tuple[str, list[str]]:
    """(CPU model, the `VECTOR_FLAGS` it has), read from /proc/cpuinfo where there is one."""
    model, flags = platform.processor() or "unknown CPU", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return model, [flag for flag in VECTOR_FLAGS if flag in flags]


def describe() -> str:
    """E.g. 'AMD EPYC, 2 cores, avx2 fma, oneDNN on': one line for a results table."""
    model, vector = cpu()
    onednn = {"0": "off", "1": "on"}.get(os.environ.get("TF_ENABLE_ONEDNN_OPTS", ""), "default")
    return f"{model}, {os.cpu_count()} cores, {' '.join(vector) or 'no AVX2'}, oneDNN {onednn}"


def compiler() -> tuple[str, str | None]:
    """The C++ compiler's name (`$CXX`, default `g++`) and its path on PATH, or None."""
    name = os.environ.get("CXX", "g++")
    return name, shutil.which(name)
