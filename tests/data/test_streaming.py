"""Data that does not fit in memory: decoded every epoch, capped epochs, per-process shares."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from zoo.data.folder import load_folder
from zoo.data.pipeline import build_datasets
from zoo.data.splits import split_examples

AUGMENT = {"horizontal_flip": True, "max_shift": 1, "brightness": 0.1}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    for index in range(37):
        path = root / f"p{index % 4}" / f"{index:03d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(1, 256, (9, 7, 3), np.uint8)).save(path)
    return root


def raw_of(folder: Path):
    return split_examples(load_folder(str(folder)), validation=0.2, test=0.2, seed=1)


def arrays(dataset: tf.data.Dataset) -> list[tuple[np.ndarray, ...]]:
    return [tuple(np.asarray(part) for part in batch) for batch in dataset]


def assert_same_batches(got: list, want: list) -> None:
    assert len(got) == len(want)
    for got_batch, want_batch in zip(got, want, strict=True):
        for got_part, want_part in zip(got_batch, want_batch, strict=True):
            np.testing.assert_array_equal(got_part, want_part)


def test_decoding_every_epoch_gives_the_cached_numbers(folder: Path):
    options = {"batch_size": 5, "image_size": (8, 6), "augment": AUGMENT, "seed": 3}
    cached = build_datasets(raw_of(folder), cache="memory", **options)
    streamed = build_datasets(raw_of(folder), cache="none", **options)
    assert_same_batches(
        arrays(streamed.train_epochs(0, 2, 1)), arrays(cached.train_epochs(0, 2, 1))
    )
    assert_same_batches(arrays(streamed.validation), arrays(cached.validation))
    assert_same_batches(arrays(streamed.test), arrays(cached.test))


def test_auto_cache_keeps_in_memory_only_what_fits_the_budget(folder: Path, caplog):
    caplog.set_level(logging.INFO, logger="zoo.data.pipeline")
    build_datasets(raw_of(folder), batch_size=4, cache="auto")
    assert "Data cache: in memory: 37 decoded examples take 0.00 GB, within" in caplog.text
    caplog.clear()
    build_datasets(raw_of(folder), batch_size=4, cache="auto", cache_memory_fraction=1e-12)
    assert "Data cache: none: 37 decoded examples" in caplog.text
    assert "over the budget" in caplog.text and "every epoch decodes its files again" in caplog.text
    with pytest.raises(ValueError, match=r"data.cache must be one of auto, memory, none.*'disk'"):
        build_datasets(raw_of(folder), batch_size=4, cache="disk")


def test_sizes_come_from_the_source_without_opening_a_file(tmp_path: Path):
    for index in range(6):
        path = tmp_path / f"c{index % 2}" / f"{index}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((5, 4), index, np.uint8)).save(path)
    raw = split_examples(load_folder(str(tmp_path)), validation=0.0, test=0.0)
    for path in tmp_path.rglob("*.png"):
        path.unlink()  # only the remembered check knows their sizes now
    assert build_datasets(raw, batch_size=2, cache="none").spec.input_shape == (5, 4, 1)


@pytest.mark.parametrize(("processes", "multiple"), [(2, 2), (2, 4), (3, 3)])
def test_each_process_decodes_its_share_of_every_global_batch(folder, processes, multiple):
    options = {"batch_size": 7, "augment": AUGMENT, "seed": 5, "pad_batches_to": multiple}
    whole = build_datasets(raw_of(folder), cache="none", **options)
    shares = [
        build_datasets(
            raw_of(folder), cache="none", processes=processes, process_index=i, **options
        )
        for i in range(processes)
    ]
    for split in ("train_epochs", "validation"):
        if split == "train_epochs":
            want = arrays(whole.train_epochs(0, 2, 0))
            parts = [arrays(share.train_epochs(0, 2, 0)) for share in shares]
        else:
            want = arrays(whole.validation)
            parts = [arrays(share.validation) for share in shares]
        rows = [sum(len(batch[1]) for batch in part) for part in parts]
        assert len(set(rows)) == 1  # the same number of rows in each process
        joined = [
            tuple(np.concatenate(pieces) for pieces in zip(*batches, strict=True))
            for batches in zip(*parts, strict=True)
        ]
        assert_same_batches(joined, want)


def test_steps_per_epoch_walks_on_through_the_passes(folder: Path):
    options = {"batch_size": 4, "augment": AUGMENT, "seed": 2, "cache": "none"}
    whole = build_datasets(raw_of(folder), **options)
    capped = build_datasets(raw_of(folder), steps_per_epoch=4, **options)
    assert int(whole.train.cardinality()) == 6 and int(capped.train.cardinality()) == 4
    stream = arrays(whole.train_epochs(0, 3, 0))  # three whole passes: 18 batches
    assert_same_batches(arrays(capped.train_epochs(0, 3, 0)), stream[:12])  # epoch 1 spans two
    assert_same_batches(arrays(capped.train_epochs(1, 3, 1)), stream[5:12])  # resumed mid-epoch
    assert_same_batches(arrays(capped.train_epochs(3, 4, 0)), stream[12:16])
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive integer or null"):
        build_datasets(raw_of(folder), batch_size=4, steps_per_epoch=0)
