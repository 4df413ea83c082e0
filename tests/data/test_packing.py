"""Packed records: the folder's batches, in the folder's order; resumable, checksummed packs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from zoo.data.folder import load_folder
from zoo.data.packed import load_packed, verify
from zoo.data.packing import PLAN, PROGRESS, pack, shards_of
from zoo.data.pgm import parse_pgm
from zoo.data.pipeline import build_datasets
from zoo.data.splits import split_examples

AUGMENT = {"horizontal_flip": True, "max_shift": 1, "rotation": 5.0}
SOURCE = {"source": {"path": "faces"}, "split": {"validation": 0.2, "test": 0.2}}


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".pgm":
        height, width = pixels.shape[:2]
        path.write_bytes(b"P5\n%d %d\n255\n" % (width, height) + pixels[..., 0].tobytes())
    else:
        image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
        image.save(path, quality=90) if path.suffix == ".jpg" else image.save(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """53 images of 5 people in four formats, grey and colour, two sizes."""
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(4)
    suffixes = (".jpg", ".png", ".pgm", ".bmp")
    for index in range(53):
        suffix = suffixes[index % 4]
        channels = 1 if suffix == ".pgm" else 3
        size = (12, 10) if index % 3 else (9, 11)
        _save(
            root / f"person{index % 5}" / f"{index:03d}{suffix}",
            rng.integers(0, 256, (*size, channels), np.uint8),
        )
    return root


def raw_of(folder: Path, by: str = "example"):
    return split_examples(load_folder(str(folder)), validation=0.2, test=0.2, by=by, seed=3)


@pytest.fixture(scope="module")
def packed(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "faces"
    # Tiny shards (~4 examples), two workers: the shard boundaries and processes matter.
    return pack(
        raw_of(folder), out, seed=3, source=SOURCE, shard_megabytes=0.002, workers=2, progress=False
    )


def batches(raw, **options) -> dict[str, list[tuple[np.ndarray, ...]]]:
    data = build_datasets(raw, batch_size=8, image_size=(10, 10), channels=3, seed=5, **options)
    splits = {
        "validation": data.validation,
        "test": data.test,
        "epochs": data.train_epochs(0, 3, 0),
    }
    return {
        name: [tuple(np.asarray(p) for p in b) for b in split] for name, split in splits.items()
    }


@pytest.mark.parametrize(
    "options",
    [
        {"cache": "none", "augment": AUGMENT},
        {"cache": "memory", "augment": AUGMENT},
        {"cache": "none", "pad_batches_to": 4, "processes": 2, "process_index": 1},
    ],
    ids=["decoded-each-epoch", "cached", "second-of-two-processes"],
)
def test_a_pack_gives_the_folder_s_batches_in_the_folder_s_order(folder, packed, options):
    got, want = batches(load_packed(str(packed)), **options), batches(raw_of(folder), **options)
    for name in want:
        assert len(got[name]) == len(want[name]) > 0, name
        for mine, theirs in zip(got[name], want[name], strict=True):
            for a, b in zip(mine, theirs, strict=True):
                np.testing.assert_array_equal(a, b, err_msg=name)


def test_a_pack_holds_each_file_s_pixels_and_label_as_tfds_reads_them(folder, packed):
    builder = tfds.builder_from_directory(packed)
    raw = raw_of(folder)
    assert builder.info.file_format.value == "array_record"
    for split, dataset in (("train", raw.train), ("test", raw.test)):
        source = builder.as_data_source(split=split)
        expected = list(dataset.as_numpy_iterator())
        assert len(source) == len(expected)
        for index in (0, len(expected) - 1):
            path, label = expected[index]
            record = source[index]
            assert record["label"] == label
            assert record["file_name"].decode() == os.path.relpath(path.decode(), folder)
            if path.endswith(b".pgm"):  # grey, converted to PNG losslessly
                pixels = parse_pgm(Path(path.decode()).read_bytes())
                np.testing.assert_array_equal(record["image"][..., 0], pixels)
    plan = json.loads((packed / PLAN).read_text())
    assert plan["complete"] and plan["seed"] == 3
    assert sum(plan["splits"].values()) == 53
    assert len(plan["shards"]) == len(shards_of(plan)) > 3  # several shards per split
    verify(packed)


def test_identity_splits_keep_their_labels_when_packed(folder, tmp_path):
    raw = raw_of(folder, by="identity")
    out = pack(raw, tmp_path / "p", seed=3, source=SOURCE, workers=1, progress=False)
    packed = load_packed(str(out))
    assert packed.class_names == raw.class_names
    for mine, theirs in ((packed.test, raw.test), (packed.train, raw.train)):
        np.testing.assert_array_equal(
            [label for _, label in mine.as_numpy_iterator()],
            [label for _, label in theirs.as_numpy_iterator()],
        )


def test_in_memory_images_pack_losslessly(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 6, 5, 1), np.uint8)
    labels = np.arange(30) % 3
    split = tf.data.Dataset.from_tensor_slices((images, labels))
    from zoo.data.spec import RawSplits

    raw = RawSplits(
        "arrays", split.take(20), split.skip(20).take(4), split.skip(24), ("a", "b", "c")
    )
    out = pack(
        raw,
        tmp_path / "arrays",
        seed=0,
        source={"source": "arrays"},
        workers=1,
        shard_megabytes=0.0001,
        progress=False,
    )
    got = batches(load_packed(str(out)), cache="none")
    want = batches(raw, cache="none")
    for name in want:
        for mine, theirs in zip(got[name], want[name], strict=True):
            np.testing.assert_array_equal(mine[0], theirs[0])


def test_a_damaged_or_unfinished_pack_is_named_with_the_fix(folder, packed, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in packed.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    plan = json.loads((copy / PLAN).read_text())
    shard = copy / plan["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{shard.name} fails its sha256 check"):
        verify(copy)
    shard.write_bytes(bytes(data[:-10]))
    with pytest.raises(ValueError, match=rf"{shard.name} is {len(data) - 10} bytes"):
        load_packed(str(copy))
    plan["complete"] = False
    (copy / PLAN).write_text(json.dumps(plan))
    with pytest.raises(ValueError, match=r"unfinished \(0 of \d+ shards written\); run the pack"):
        load_packed(str(copy))
    with pytest.raises(ValueError, match="holds a pack of other data"):
        pack(raw_of(folder, by="identity"), copy, seed=3, source=SOURCE, progress=False)
    with pytest.raises(ValueError, match="not a packed data set"):
        load_packed(str(folder))


@pytest.mark.slow
def test_a_killed_pack_command_resumes_and_writes_only_what_it_lacks(tmp_path):
    """`pack.py` killed (SIGKILL) after its fourth shard landed on disk but before it was
    recorded, then run again: the recorded shards are kept, the pack is the one never killed."""
    folder = tmp_path / "many"
    for index in range(30):
        pixels = np.full((4, 4, 3), index * 8, np.uint8)
        _save(folder / f"p{index % 3}" / f"{index:03d}.png", pixels)
    out, reference = tmp_path / "resumed", tmp_path / "reference"
    overrides = [
        f"data.source.path={folder}",
        f"out={out}",
        "shard_megabytes=1e-6",
        "workers=1",
        "progress=false",
        "hydra.run.dir=" + str(tmp_path / "hydra"),
    ]
    repo = Path(__file__).parents[2]
    environment = {**os.environ, "ZOO_KILL_AFTER_SHARDS": "3"}
    killed = subprocess.run(
        [sys.executable, "tests/data/faulty_pack.py", *overrides],
        cwd=repo,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, (killed.stdout + killed.stderr)[-3000:]
    recorded = [json.loads(line)["file"] for line in (out / PROGRESS).read_text().splitlines()]
    assert len(recorded) == 3 and not json.loads((out / PLAN).read_text())["complete"]
    landed = {file: (out / file).stat().st_mtime_ns for file in recorded}
    with pytest.raises(ValueError, match=r"unfinished \(3 of 30 shards written\)"):
        load_packed(str(out))

    finished = subprocess.run(
        [sys.executable, "pack.py", *overrides],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, (finished.stdout + finished.stderr)[-3000:]
    assert f"train on it: python train.py data=packed data.source.path={out}" in finished.stdout
    for file, mtime in landed.items():  # the recorded shards were kept, not written again
        assert (out / file).stat().st_mtime_ns == mtime, file
    assert not list(out.glob("*.tmp-*")) and not (out / PROGRESS).exists()
    defaults = split_examples(load_folder(str(folder)), validation=0.1, test=0.2, seed=0)
    pack(
        defaults, reference, seed=0, source=SOURCE, shard_megabytes=1e-6, workers=1, progress=False
    )
    assert len(json.loads((out / PLAN).read_text())["shards"]) == 30
    verify(out)
    assert records(out) == records(reference)


def records(out: Path) -> list[tuple]:
    """Every record of a pack as stored: (split, encoded image bytes, label, file name)."""
    builder = tfds.builder_from_directory(out)
    skip = {"image": tfds.decode.SkipDecoding()}
    return [
        (split, r["image"], int(r["label"]), r["file_name"])
        for split in builder.info.splits
        for r in builder.as_data_source(split=split, decoders=skip)
    ]
