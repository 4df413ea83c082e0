"""A packed data set (`zoo.data.packing`) as a source: its splits, read by record key."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from zoo.data.packing import LABELS, PLAN, PROGRESS, SPLITS, sha256_of_file, shards_of
from zoo.data.spec import RawSplits

log = logging.getLogger(__name__)

_RESUME = "run the pack command again (it resumes: the finished shards are kept)"


def _complete_plan(root: Path) -> dict[str, Any]:
    """``pack.json`` of a complete pack, after checking its shards are there, whole."""
    plan_file = root / PLAN
    if not plan_file.exists():
        raise ValueError(
            f"{root} is not a packed data set (no {PLAN}); make one with `python pack.py "
            "data=<config> out=<folder>`, or use data=folder for a folder of images"
        )
    plan = json.loads(plan_file.read_text())
    if not plan.get("complete"):
        progress = root / PROGRESS
        landed = len(progress.read_text().splitlines()) if progress.exists() else 0
        raise ValueError(
            f"the pack in {root} is unfinished ({landed} of {len(shards_of(plan))} shards "
            f"written); {_RESUME}"
        )
    for entry in plan["shards"]:
        file = root / entry["file"]
        size = file.stat().st_size if file.exists() else None
        if size != entry["bytes"]:
            found = "missing" if size is None else f"{size} bytes, {entry['bytes']} expected"
            raise ValueError(f"packed shard {file} is {found}; pack again into a new folder")
    return plan


def verify(path: str | os.PathLike) -> None:
    """Check every shard of the pack at ``path`` against the SHA-256 recorded when it was
    written; a ValueError names the first that differs."""
    root = Path(path).expanduser()
    for entry in _complete_plan(root)["shards"]:
        if sha256_of_file(root / entry["file"]) != entry["sha256"]:
            raise ValueError(
                f"packed shard {root / entry['file']} fails its sha256 check (its bytes "
                "changed since it was written); pack again into a new folder"
            )


def _reader(root: Path):
    """``keys int64 [b] → encoded images tf.string [b]`` over all splits' shards, in order."""
    import tensorflow_datasets as tfds  # TFDS's metadata and ArrayRecord reader
    from array_record.python.array_record_data_source import ArrayRecordDataSource

    builder = tfds.builder_from_directory(root)
    instructions = [
        instruction
        for split in SPLITS
        if split in builder.info.splits
        for instruction in builder.info.splits[split].file_instructions
    ]
    # Its readers read each record on its own (no read-ahead): the keys come shuffled.
    records = ArrayRecordDataSource(instructions)

    def fetch(keys: np.ndarray) -> np.ndarray:
        if not len(keys):  # a process's share of a short last batch can be empty
            return np.zeros(0, dtype=object)
        return np.asarray(records.__getitems__(keys.tolist()), dtype=object)

    def read(keys: tf.Tensor) -> tf.Tensor:
        serialized = tf.numpy_function(fetch, [keys], tf.string, stateful=False)
        serialized = tf.ensure_shape(serialized, keys.shape)
        features = {"image": tf.io.FixedLenFeature([], tf.string)}
        return tf.io.parse_example(serialized, features)["image"]

    return read


def load_packed(path: str, verify_checksums: bool = False) -> RawSplits:
    """The splits of a pack made by ``pack.py`` (``zoo.data.packing.pack``).

    The splits are the ones fixed when the pack was made; each is a sequence of record keys
    (int64) and labels that the pipeline shuffles, reads and decodes exactly as it does the
    file paths of the folder the pack came from, so that both give the same batches.

    Args:
        path: the pack's folder (holding ``pack.json``).
        verify_checksums: also read every shard and check its SHA-256 (slow on big packs;
            the sizes are always checked).
    """
    root = Path(path).expanduser()
    plan = _complete_plan(root)
    if verify_checksums:
        verify(root)
    with np.load(root / LABELS) as stored:
        labels = {split: stored[f"{split}_labels"] for split in SPLITS}
    offsets = np.cumsum([0] + [len(labels[split]) for split in SPLITS])
    splits = {
        split: tf.data.Dataset.from_tensor_slices(
            (np.arange(offsets[i], offsets[i + 1], dtype=np.int64), labels[split])
        )
        for i, split in enumerate(SPLITS)
    }
    log.info(
        "Packed data %s: %s examples, split when packed (seed %d; the run's seed orders "
        "the epochs)",
        root,
        plan["splits"],
        plan["seed"],
    )
    return RawSplits(
        name=plan["name"],
        **splits,
        class_names=tuple(plan["class_names"]),
        shapes={tuple(shape[:3]): shape[3] for shape in plan["shapes"]},
        read=_reader(root),
    )
