"""The run's inputs: each split logged with `mlflow.log_input`, so runs on different data differ.

Each split is one MLflow dataset: name `<data>-<split>` (e.g. `digits-train`), a source
that says where the examples came from (a TFDS `name:version`, a folder, or the zoo loader
of a data set shipped in a package), a digest of the split's images and labels, and a
profile with the number of examples, of classes and the split seed. The digest is of the
raw examples (uint8 pixels or file paths, in split order), so it changes with the data,
the split fractions or the seed, and not with resizing or augmentation.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import tensorflow as tf
from mlflow.data.dataset import Dataset
from mlflow.data.dataset_source import DatasetSource
from mlflow.exceptions import MlflowException

from zoo.data.spec import RawSplits

log = logging.getLogger(__name__)

CONTEXTS = {"train": "training", "validation": "validation", "test": "testing"}
PATH_ARGUMENTS = ("path", "root", "directory")


class ZooDataSource(DatasetSource):
    """Where a zoo data set comes from, as one string (see `describe_source`)."""

    def __init__(self, uri: str):
        self.uri = uri

    @staticmethod
    def _get_source_type() -> str:
        return "zoo"

    def load(self, **kwargs: Any) -> str:
        return self.uri

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source: Any) -> ZooDataSource:
        return cls(str(raw_source))

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri}

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> ZooDataSource:
        return cls(source_dict["uri"])


class SplitDataset(Dataset):
    """One split, described by its numbers; the examples stay with the data pipeline."""

    def __init__(self, source: ZooDataSource, name: str, digest: str, profile: dict[str, Any]):
        self._profile = profile
        super().__init__(source=source, name=name, digest=digest)

    def _compute_digest(self) -> str:
        raise AssertionError("a SplitDataset is always given its digest")

    @property
    def profile(self) -> dict[str, Any]:
        return self._profile

    @property
    def schema(self) -> None:
        return None

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self._profile)}


def describe_source(source_cfg: Mapping[str, Any]) -> str:
    """`tfds:<name>:<version>`, an absolute folder, or the loader of a packaged data set."""
    target = str(source_cfg["_target_"])
    if target.rsplit(".", 1)[-1].startswith("load_tfds"):
        import tensorflow_datasets as tfds

        name = str(source_cfg["name"])
        if ":" not in name:
            name = f"{name}:{tfds.builder(name, data_dir=source_cfg.get('data_dir')).version}"
        return f"tfds:{name}"
    for key in PATH_ARGUMENTS:
        if source_cfg.get(key):
            return str(Path(source_cfg[key]).expanduser().resolve())
    return target


def split_summary(split: tf.data.Dataset) -> dict[str, Any]:
    """Digest, number of examples and of classes of `(image or file path, label)` pairs."""
    digest = hashlib.sha256()
    labels = []
    for batch_images, batch_labels in split.batch(1024):
        images = batch_images.numpy()
        digest.update(b"\0".join(images) if images.dtype == object else images.tobytes())
        labels.append(batch_labels.numpy().astype(np.int64))
        digest.update(labels[-1].tobytes())
    labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    return {
        "digest": digest.hexdigest()[:10],
        "num_examples": len(labels),
        "num_classes": len(np.unique(labels)),
    }


# MLflow's SQL store logs a dataset by looking it up, then inserting it if it was absent, with
# nothing to catch a concurrent insert: two runs of one experiment logging the same split at
# the same moment (the trials of a parallel sweep) can make one fail with BAD_REQUEST,
# "UNIQUE constraint failed: datasets..." (SQLite) or "duplicate key value violates unique
# constraint "dataset_pk"" (PostgreSQL), and the run with it. Reproduced with 8 processes
# logging one dataset at once through a 4-worker server: 1 failure in 48 calls. The loser's
# second try finds the winner's dataset and links it to its run.
_RACE_ATTEMPTS = 3


def lost_dataset_race(error: Exception) -> bool:
    """Whether `error` is the store's concurrent-insert failure described above."""
    text = str(error)
    return (
        isinstance(error, MlflowException)
        and error.error_code == "BAD_REQUEST"
        and ("datasets" in text or "dataset_pk" in text)
        and ("UNIQUE constraint failed" in text or "duplicate key value" in text)
    )


def retry_lost_race(call: Callable[[], Any], attempts: int = _RACE_ATTEMPTS) -> Any:
    """`call()`, tried again (up to `attempts` in all) while it loses the dataset race."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except MlflowException as err:
            if attempt == attempts or not lost_dataset_race(err):
                raise
            log.info("Another run logged the same dataset at the same moment; linking it")


def log_datasets(raw: RawSplits, source_cfg: Mapping[str, Any], seed: int) -> None:
    """Log the train, validation and test splits of `raw` as inputs of the active run."""
    source = ZooDataSource(describe_source(source_cfg))
    for split, context in CONTEXTS.items():
        profile = split_summary(getattr(raw, split))
        digest = profile.pop("digest")
        profile["split_seed"] = seed
        dataset = SplitDataset(source, f"{raw.name}-{split}", digest, profile)
        retry_lost_race(lambda d=dataset, c=context: mlflow.log_input(d, context=c))
