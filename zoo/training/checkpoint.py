"""Atomic, self-checking checkpoint files: one file per checkpoint, the last few kept.

A checkpoint is ``MAGIC + payload + sha256(payload)``; the payload is an ``.npz`` archive
(no pickles) of named arrays plus a JSON ``__meta__`` entry. It is written to a temporary
file in the same folder, flushed and fsynced, then renamed over its final name (a rename is
atomic on POSIX), and the folder is fsynced; older checkpoints are deleted only after the
new one is complete. Reading checks the digest, so a truncated or damaged file is detected
and the previous checkpoint is used instead, with a warning that says so.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MAGIC = b"ZOOCKPT1"
_DIGEST_BYTES = 32
_NAME = re.compile(r"step-(\d+)\.ckpt")
_META = "__meta__"


class DamagedCheckpointError(ValueError):
    """A checkpoint file that is truncated, altered or not a checkpoint at all."""


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint read back: its file, global step, arrays and JSON metadata."""

    path: Path
    step: int
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


def checkpoint_path(directory: Path, step: int) -> Path:
    return Path(directory) / f"step-{step:010d}.ckpt"


def step_of(path: Path) -> int:
    """The global step in a checkpoint file's name."""
    return int(_NAME.fullmatch(Path(path).name).group(1))


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    if _META in arrays:
        raise ValueError(f"array name {_META!r} is reserved for the checkpoint metadata")
    buffer = io.BytesIO()
    meta_bytes = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(buffer, **arrays, **{_META: meta_bytes})
    payload = buffer.getvalue()
    return MAGIC + payload + hashlib.sha256(payload).digest()


def _write_file(path: Path, data: bytes) -> None:
    """`data` to `path` via a temporary file, flushed and fsynced, renamed into place."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    _fsync_directory(path.parent)


def write(
    directory: Path, step: int, arrays: dict[str, np.ndarray], meta: dict[str, Any], keep: int = 2
) -> Path:
    """Write checkpoint `step` atomically, then delete all but the newest `keep` ones."""
    if keep < 1:
        raise ValueError(f"trainer.checkpoint.keep must be >= 1, got {keep!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(directory, step)
    _write_file(path, _encode(arrays, {**meta, "step": step}))
    for old in list_checkpoints(directory)[keep:]:
        old.unlink(missing_ok=True)
    for partial in directory.glob(".step-*.tmp"):  # left by a process killed mid-write
        partial.unlink(missing_ok=True)
    return path


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoint files in `directory`, newest (highest step) first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _NAME.fullmatch(p.name)]
    return sorted(found, key=step_of, reverse=True)


def read(path: Path) -> Checkpoint:
    """Read and verify one checkpoint; `DamagedCheckpointError` if it is not intact."""
    data = Path(path).read_bytes()
    if len(data) < len(MAGIC) + _DIGEST_BYTES or not data.startswith(MAGIC):
        raise DamagedCheckpointError(f"{path} is truncated or not a checkpoint ({len(data)} bytes)")
    payload, digest = data[len(MAGIC) : -_DIGEST_BYTES], data[-_DIGEST_BYTES:]
    if hashlib.sha256(payload).digest() != digest:
        raise DamagedCheckpointError(f"{path} fails its sha256 check (truncated or altered)")
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(arrays.pop(_META).tobytes().decode())
    return Checkpoint(Path(path), int(meta["step"]), arrays, meta)


def read_latest(directory: Path) -> Checkpoint | None:
    """The newest intact checkpoint in `directory`, or None; damaged ones are skipped with a
    warning naming the file and the checkpoint used instead."""
    damaged: list[str] = []
    for path in list_checkpoints(directory):
        try:
            checkpoint = read(path)
        except (DamagedCheckpointError, OSError, ValueError, KeyError) as err:
            damaged.append(str(err))
            continue
        for reason in damaged:
            log.warning("Damaged checkpoint: %s; using the previous one, %s", reason, path)
        return checkpoint
    for reason in damaged:
        log.warning("Damaged checkpoint: %s; no intact checkpoint left in %s", reason, directory)
    return None
