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
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

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


class _Digesting:
    """A write-only stream that passes bytes on to `file` and hashes them on the way."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


def _encode_into(file: BinaryIO, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """MAGIC, the `.npz` payload and its sha256 into `file`, the payload streamed: no copy
    of a gigabyte checkpoint is ever built in memory (np.savez into a buffer made three)."""
    if _META in arrays:
        raise ValueError(f"array name {_META!r} is reserved for the checkpoint metadata")
    entries = {**arrays, _META: np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    file.write(MAGIC)
    payload = _Digesting(file)  # no tell(): zipfile writes a streamed archive, as np.savez's
    with zipfile.ZipFile(payload, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, value in entries.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)
    file.write(payload.sha256.digest())


def _write_file(path: Path, encode: Callable[[BinaryIO], None]) -> None:
    """What `encode` writes, to `path` via a temporary file, flushed and fsynced, renamed
    into place."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as file:
        encode(file)
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
    _write_file(path, lambda file: _encode_into(file, arrays, {**meta, "step": step}))
    for old in list_checkpoints(directory)[keep:]:
        old.unlink(missing_ok=True)
    for partial in directory.glob(".step-*.tmp"):  # left by a process killed mid-write
        partial.unlink(missing_ok=True)
    return path


def remove_all(directory: Path) -> int:
    """Delete every checkpoint file (and partial write) in `directory`; how many went."""
    files = list_checkpoints(directory)
    for path in [*files, *Path(directory).glob(".step-*.tmp")]:
        path.unlink(missing_ok=True)
    return len(files)


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
