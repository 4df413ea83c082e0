"""Every file of an image folder decoded once, in parallel, and the verdicts remembered.

A folder of a million faces cannot be decoded at every start: at ~4,000 JPEGs/s per core
that is minutes before the first step. So each file is checked once, over all cores, and
the verdict (its height, width and channels, or why it cannot be decoded) is written to
``$XDG_CACHE_HOME/zoo/folder-checks/`` (``~/.cache/zoo/folder-checks/``) keyed by the
folder's path. A later start reuses the verdict of every file whose path, size and
modification time are unchanged and checks only the others, so adding a hundred images to
a million costs a hundred decodes.

JPEGs are decoded at 1/8 scale (libjpeg's scaled IDCT through PIL's ``draft``): every
byte of the entropy-coded data is still read and decoded, so truncation and corrupt
Huffman data are found, at ~1.6x the speed of a full decode.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from zoo.data.pgm import parse_pgm

logger = logging.getLogger(__name__)

_CHUNK = 512  # files per task: large enough to amortise the pickling, small for balance
_FORMAT = 1  # bump when a verdict's meaning changes: older caches are then ignored


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "zoo" / "folder-checks"


def decode_problem(path: str) -> tuple[tuple[int, int, int], str]:
    """``((height, width, channels), "")`` for a decodable image, else ``((0, 0, 0), why)``.

    Channels are those the pipeline's decoder gives: 1 for grey, 3 for colour (an alpha
    channel counts as colour and is dropped later).
    """
    try:
        if path.lower().endswith((".pgm", ".pnm")):
            with open(path, "rb") as file:
                height, width = parse_pgm(file.read()).shape  # the pipeline's own decoder
            return (height, width, 1), ""
        with Image.open(path) as image:
            size, mode = image.size, image.mode
            if image.format == "JPEG":
                image.draft(image.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
            image.load()  # decodes every pixel: a truncated or corrupt file fails here
        channels = 1 if mode in ("1", "L", "I", "I;16", "F") else 3
        return (size[1], size[0], channels), ""
    except Exception as err:  # PIL and the PGM parser raise many types for bad data
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return (0, 0, 0), f"cannot be decoded as an image ({reason})"


def _check_chunk(paths: list[str]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    shapes = np.zeros((len(paths), 3), np.int32)
    problems = []
    for row, path in enumerate(paths):
        shape, problem = decode_problem(path)
        shapes[row] = shape
        if problem:
            problems.append((row, problem))
    return shapes, problems


@dataclass(frozen=True)
class FileChecks:
    """The verdict on each file of a listing, in the listing's order.

    Attributes:
        shapes: ``int32 (n, 3)``: height, width, channels; zeros for a bad file.
        problems: ``{index: why the file cannot be decoded}``.
        checked: how many files were decoded now (the rest came from the cache).
    """

    shapes: np.ndarray
    problems: dict[int, str]
    checked: int


def distinct_shapes(shapes: np.ndarray, paths: np.ndarray) -> dict[tuple[int, int, int], str]:
    """``{(height, width, channels): the first of paths with that shape}``, in that order."""
    if not len(shapes):
        return {}
    unique, first = np.unique(shapes, axis=0, return_index=True)
    pairs = sorted(zip(first.tolist(), map(tuple, unique.tolist()), strict=True))
    return {shape: str(paths[index]) for index, shape in pairs}


def _cache_file(root: Path) -> Path:
    return cache_dir() / (hashlib.sha256(str(root).encode()).hexdigest()[:32] + ".npz")


def _load_cache(file: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(file) as cached:
            entries = {key: cached[key] for key in cached.files}
    except (OSError, ValueError, EOFError):
        return None
    return entries if int(entries.get("format", -1)) == _FORMAT else None


def _reused(
    cached: dict[str, np.ndarray] | None, names: np.ndarray, stats: np.ndarray
) -> np.ndarray:
    """For each file, its row in the cache when its name, size and mtime are unchanged, else -1."""
    rows = np.full(len(names), -1, np.int64)
    if cached is None or not len(cached["names"]):
        return rows
    order = np.argsort(cached["names"], kind="stable")
    sorted_names = cached["names"][order]
    at = np.minimum(np.searchsorted(sorted_names, names), len(sorted_names) - 1)
    candidate = order[at]
    same = (sorted_names[at] == names) & np.all(cached["stats"][candidate] == stats, axis=1)
    rows[same] = candidate[same]
    return rows


def _decode_all(paths: list[str], workers: int) -> tuple[np.ndarray, dict[int, str]]:
    chunks = [paths[start : start + _CHUNK] for start in range(0, len(paths), _CHUNK)]
    shapes = np.zeros((len(paths), 3), np.int32)
    problems: dict[int, str] = {}
    started = last_log = time.monotonic()

    def take(index: int, result: tuple[np.ndarray, list[tuple[int, str]]]) -> None:
        nonlocal last_log
        chunk_shapes, chunk_problems = result
        offset = index * _CHUNK
        shapes[offset : offset + len(chunk_shapes)] = chunk_shapes
        problems.update({offset + row: why for row, why in chunk_problems})
        if time.monotonic() - last_log > 10:
            last_log = time.monotonic()
            done = min(len(paths), (index + 1) * _CHUNK)
            rate = done / (last_log - started)
            logger.info("Checking images: %d / %d (%.0f files/s)", done, len(paths), rate)

    if workers <= 1 or len(chunks) <= 1:
        for index, chunk in enumerate(chunks):
            take(index, _check_chunk(chunk))
        return shapes, problems
    # fork: the workers need only PIL and numpy, and start in milliseconds (spawn would
    # import the whole pipeline, TensorFlow included, once per worker).
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for index, result in enumerate(pool.imap(_check_chunk, chunks)):
            take(index, result)
    return shapes, problems


def check_files(
    root: Path, names: np.ndarray, stats: np.ndarray, workers: int | None = None
) -> FileChecks:
    """Decode the files not seen before (in parallel), remember every verdict.

    Args:
        root: the folder the names are relative to (absolute).
        names: relative paths, a ``str`` array ``(n,)``.
        stats: ``int64 (n, 2)``: each file's size in bytes and modification time (ns).
        workers: processes to decode with; default: every core this process may use.
    """
    file = _cache_file(root)
    cached = _load_cache(file)
    rows = _reused(cached, names, stats)
    shapes = np.zeros((len(names), 3), np.int32)
    problems: dict[int, str] = {}
    if cached is not None:
        known = rows >= 0
        shapes[known] = cached["shapes"][rows[known]]
        old_rows, old_text = cached["problem_rows"], cached["problem_text"]
        for index in np.flatnonzero(np.isin(rows, old_rows)):
            problems[int(index)] = str(old_text[np.searchsorted(old_rows, rows[index])])
    new = np.flatnonzero(rows < 0)
    if len(new):
        workers = workers or len(os.sched_getaffinity(0))
        started = time.monotonic()
        new_shapes, new_problems = _decode_all([str(root / n) for n in names[new]], workers)
        shapes[new] = new_shapes
        problems.update({int(new[i]): why for i, why in new_problems.items()})
        seconds = time.monotonic() - started
        logger.info(
            "Checked %d new or changed files of %s in %.1f s on %d processes (%d reused from "
            "%s)",
            len(new),
            root,
            seconds,
            workers,
            len(names) - len(new),
            file,
        )
        _save_cache(file, names, stats, shapes, problems)
    return FileChecks(shapes=shapes, problems=problems, checked=len(new))


def _save_cache(
    file: Path, names: np.ndarray, stats: np.ndarray, shapes: np.ndarray, problems: dict
) -> None:
    """Write the verdicts to a temporary file, then rename it: a killed start leaves the
    previous cache, never half of one."""
    file.parent.mkdir(parents=True, exist_ok=True)
    rows = sorted(problems)
    partial = file.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(
        partial,
        format=np.int64(_FORMAT),
        names=names,
        stats=stats,
        shapes=shapes,
        problem_rows=np.asarray(rows, np.int64),
        problem_text=np.asarray([problems[r] for r in rows], dtype=str),
    )
    os.replace(partial, file)
