"""Pack a data set's splits into sharded ArrayRecord files that TFDS reads back.

Why ArrayRecord and not TFRecord: the pipeline's order is a seeded shuffle of *indices*
(`build_datasets`), and only a random-access format serves example ``i`` without reading
its predecessors, so a packed data set gives the batches of the folder it came from, in the
same order, and a resumed run skips to its step without reading the epoch so far. TFDS
writes and reads ArrayRecord (``file_format="array_record"``, ``as_data_source``) and so
does Grain; the shards, ``dataset_info.json`` and ``features.json`` here are TFDS's own
layout (``tfds.folder_dataset.write_metadata``), so ``tfds.builder_from_directory(out)``
opens a pack without the zoo.

Each example keeps the file's encoded bytes as they are (JPEG and PNG; PGM, BMP and GIF are
converted to PNG, losslessly), its label and its file name. The splits are fixed when the
pack is made (``pack.json`` records the seed and the source); ``labels.npz`` holds the
labels per split so that nothing is read to list them.

Shards are written in parallel (one process per core, each writing whole shards to a
temporary file that is renamed when complete), a progress bar counts the examples, and
every finished shard is recorded with its SHA-256 in ``progress.jsonl`` as it lands: a
killed pack started again with the same command writes only the shards it lacks.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image

from zoo.data.pgm import parse_pgm
from zoo.data.spec import RawSplits

log = logging.getLogger(__name__)

FORMAT = 1
PLAN, PROGRESS, LABELS = "pack.json", "progress.jsonl", "labels.npz"
SPLITS = ("train", "validation", "test")
TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
_JPEG, _PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
_PGM_SUFFIXES = (".pgm", ".pnm")
_SIZE_SAMPLE = 1000  # files whose sizes estimate the mean, for the shard size

# A shard to write: (its path, channels, images (file paths or arrays), labels, file names).
Task = tuple[str, int, list[Any], list[int], list[str]]


@dataclass(frozen=True)
class Shard:
    """One file of a split: examples ``[first, first + size)`` of the split's order."""

    split: str
    index: int
    of: int
    first: int
    size: int

    def filename(self, dataset: str) -> str:
        return f"{dataset}-{self.split}.array_record-{self.index:05d}-of-{self.of:05d}"


def encoded_image(data: bytes, name: str) -> bytes:
    """An image file's bytes as stored: JPEG and PNG as they are, other formats as PNG."""
    if data.startswith((_JPEG, _PNG)):
        return data
    if name.lower().endswith(_PGM_SUFFIXES):
        return png_bytes(parse_pgm(data)[..., np.newaxis])
    with Image.open(io.BytesIO(data)) as image:  # BMP, GIF (first frame)
        mode = "RGBA" if image.mode in ("RGBA", "LA", "PA") else "RGB"
        return png_bytes(np.asarray(image.convert("L" if image.mode == "L" else mode)))


def png_bytes(image: np.ndarray) -> bytes:
    """``uint8 (h, w, c)`` or ``(h, w)`` → PNG bytes (lossless; fast compression)."""
    pixels = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, np.uint8)).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _features(channels: int):
    import tensorflow_datasets as tfds  # the writer's and reader's dependency only

    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(None, None, channels)),
            "label": tfds.features.Scalar(dtype=np.int64),
            "file_name": tfds.features.Text(),
        }
    )


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_shard(task: Task) -> dict[str, Any]:
    """Worker: write one shard to a temporary file, rename it when complete."""
    from array_record.python.array_record_module import ArrayRecordWriter

    path, channels, images, labels, names = task
    features = _features(channels)
    temporary = f"{path}.tmp-{os.getpid()}"
    # group_size:1: every record is its own chunk, so that one can be read without the rest.
    writer = ArrayRecordWriter(temporary, "group_size:1")
    try:
        for image, label, name in zip(images, labels, names, strict=True):
            if isinstance(image, str):
                data = encoded_image(Path(image).read_bytes(), image)
            else:
                data = png_bytes(image)
            example = {"image": data, "label": int(label), "file_name": name}
            writer.write(features.serialize_example(example))
    finally:
        writer.close()
    os.replace(temporary, path)
    return {
        "file": Path(path).name,
        "examples": len(labels),
        "bytes": os.path.getsize(path),
        "sha256": sha256_of_file(Path(path)),
    }


def _written(
    tasks: Iterator[Task], workers: int
) -> Iterator[tuple[str, Callable[[], dict[str, Any]]]]:
    """``(shard path, call that waits for its entry)`` per task, in order: in this process
    for one worker, else in a pool of fresh processes (not forked: TensorFlow's threads do
    not survive a fork), with at most two shards per worker in flight so memory stays
    bounded."""
    if workers == 1:
        for task in tasks:
            yield task[0], functools.partial(_write_shard, task)
        return
    with get_context("spawn").Pool(workers) as pool:
        pending: deque = deque()
        for task in tasks:
            pending.append((task[0], pool.apply_async(_write_shard, (task,)).get))
            if len(pending) >= 2 * workers:
                yield pending.popleft()
        while pending:
            yield pending.popleft()


def _dataset_name(name: str) -> str:
    """A name TFDS accepts in a file name template: lower case letters, digits, ``_``."""
    cleaned = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return cleaned if cleaned and cleaned[0].isalpha() else f"packed_{cleaned}".rstrip("_")


def _references(split: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray] | None:
    """``(file paths, labels)`` of a split of file paths, in its order; None for images."""
    if split.element_spec[0].dtype != tf.string:
        return None
    paths, labels = [np.zeros(0, str)], [np.zeros(0, np.int64)]
    for batch_paths, batch_labels in split.batch(1 << 16).as_numpy_iterator():
        paths.append(batch_paths.astype(str))
        labels.append(batch_labels.astype(np.int64))
    return np.concatenate(paths), np.concatenate(labels)


def _count(split: tf.data.Dataset) -> int:
    count = int(split.cardinality())
    return count if count >= 0 else sum(1 for _ in split)


def _mean_bytes(raw: RawSplits, files: Mapping[str, tuple[np.ndarray, np.ndarray] | None]) -> float:
    """An estimate of one stored example's size: sampled file sizes, or raw pixel bytes."""
    paths = next((refs[0] for refs in files.values() if refs is not None and len(refs[0])), None)
    if paths is not None:
        return float(np.mean([os.path.getsize(p) for p in paths[:_SIZE_SAMPLE]]))
    for split in (raw.train, raw.validation, raw.test):
        for image, _ in split.take(1):
            return float(np.prod(image.shape))
    return 1.0


def _plan(
    raw: RawSplits, seed: int, source: Mapping[str, Any], shard_megabytes: float
) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, np.ndarray] | None]]:
    """The pack's plan (what ``pack.json`` records) and each split's file references."""
    splits = dict(zip(SPLITS, (raw.train, raw.validation, raw.test), strict=True))
    files = {name: _references(split) for name, split in splits.items()}
    counts = {
        name: len(files[name][1]) if files[name] is not None else _count(split)
        for name, split in splits.items()
    }
    per_shard = max(1, int(shard_megabytes * 1e6 / max(_mean_bytes(raw, files), 1.0)))
    digest = hashlib.sha256(json.dumps([source, seed, counts], sort_keys=True).encode())
    for name in SPLITS:
        if files[name] is not None:
            paths, labels = files[name]
            digest.update("\n".join(paths).encode())
            digest.update(labels.tobytes())
    if raw.shapes is not None:
        shapes = [[*shape, path] for shape, path in sorted(raw.shapes.items())]
    else:
        shapes = None  # learnt while packing
    plan = {
        "format": FORMAT,
        "name": raw.name,
        "dataset": _dataset_name(raw.name),
        "class_names": list(raw.class_names),
        "seed": seed,
        "source": source,
        "digest": digest.hexdigest(),
        "examples_per_shard": per_shard,
        "splits": {name: counts[name] for name in SPLITS},
        "shapes": shapes,
        "complete": False,
    }
    return plan, files


def shards_of(plan: Mapping[str, Any]) -> list[Shard]:
    """Every shard of a plan, split by split, in order."""
    per = plan["examples_per_shard"]
    shards = []
    for split in SPLITS:
        count = plan["splits"][split]
        of = -(-count // per)
        shards += [Shard(split, i, of, i * per, min(per, count - i * per)) for i in range(of)]
    return shards


def _write_json(path: Path, value: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=1) + "\n")
    os.replace(temporary, path)


def _read_progress(out: Path) -> dict[str, dict[str, Any]]:
    """Finished shards by file name: those recorded whose file is there, at its size."""
    done = {}
    progress = out / PROGRESS
    if progress.exists():
        for line in progress.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            file = out / entry["file"]
            if file.exists() and file.stat().st_size == entry["bytes"]:
                done[entry["file"]] = entry
    return done


def _open_plan(out: Path, plan: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """Start or resume the pack in ``out``: the shards already finished, or None when the
    pack is complete."""
    existing = out / PLAN
    if existing.exists():
        previous = json.loads(existing.read_text())
        if previous.get("digest") != plan["digest"]:
            raise ValueError(
                f"{out} holds a pack of other data ({previous.get('name')!r}, seed "
                f"{previous.get('seed')}, {previous.get('splits')}); pack into an empty "
                "folder, or delete this one"
            )
        if previous.get("complete"):
            return None
    elif out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty and holds no pack; pack into an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    for leftover in out.glob("*.tmp-*"):  # shards a killed pack was writing
        leftover.unlink()
    _write_json(existing, plan)
    return _read_progress(out)


def _tasks(
    raw: RawSplits,
    plan: Mapping[str, Any],
    files: Mapping[str, tuple[np.ndarray, np.ndarray] | None],
    out: Path,
    done: Mapping[str, Any],
    channels: int,
    labels: dict[str, list[np.ndarray]],
) -> Iterator[Task]:
    """The shards still to write, as worker tasks, one at a time (images are read lazily)."""
    splits = dict(zip(SPLITS, (raw.train, raw.validation, raw.test), strict=True))
    every_path = [refs[0] for refs in files.values() if refs is not None and len(refs[0])]
    root = os.path.commonpath(np.concatenate(every_path).tolist()) if every_path else "/"
    elements = {name: None for name in SPLITS}
    for shard in shards_of(plan):
        file = shard.filename(plan["dataset"])
        refs = files[shard.split]
        if refs is not None:
            paths = refs[0][shard.first : shard.first + shard.size].tolist()
            shard_labels = refs[1][shard.first : shard.first + shard.size]
            images, names = paths, [os.path.relpath(p, root) for p in paths]
        else:  # in-memory images: walk the split in order, keeping the labels
            if elements[shard.split] is None:
                elements[shard.split] = splits[shard.split].as_numpy_iterator()
            pairs = [next(elements[shard.split]) for _ in range(shard.size)]
            images = [np.asarray(image, np.uint8) for image, _ in pairs]
            shard_labels = np.asarray([label for _, label in pairs], np.int64)
            names = [f"{shard.split}/{shard.first + i}" for i in range(shard.size)]
        labels[shard.split].append(shard_labels)
        if file not in done:
            yield str(out / file), channels, images, shard_labels.tolist(), names


def _channels(plan: Mapping[str, Any], raw: RawSplits) -> int:
    if plan["shapes"]:
        return 3 if any(shape[2] >= 3 for shape in plan["shapes"]) else 1
    for split in (raw.train, raw.validation, raw.test):
        for image, _ in split.take(1):
            return 3 if int(image.shape[-1]) >= 3 else 1
    raise ValueError(f"{raw.name}: every split is empty; there is nothing to pack")


def _shapes_of_images(raw: RawSplits) -> list[list[Any]]:
    """Distinct ``[h, w, c, example]`` of in-memory splits (fixed-size arrays: one)."""
    shapes: dict[tuple[int, int, int], str] = {}
    for name, split in zip(SPLITS, (raw.train, raw.validation, raw.test), strict=True):
        spec = split.element_spec[0].shape
        if spec.is_fully_defined():
            if _count(split):
                shapes.setdefault(tuple(spec.as_list()), f"{name}/0")
            continue
        for i, (image, _) in enumerate(split.as_numpy_iterator()):
            shapes.setdefault(tuple(int(d) for d in image.shape), f"{name}/{i}")
    return [[*shape, example] for shape, example in sorted(shapes.items())]


def _write_metadata(
    out: Path, plan: Mapping[str, Any], entries: Mapping[str, Any], channels: int
) -> None:
    """``dataset_info.json`` and ``features.json``: TFDS's own description of the shards."""
    import tensorflow_datasets as tfds  # the writer's and reader's dependency only

    split_infos = []
    for split in SPLITS:
        shards = [s for s in shards_of(plan) if s.split == split]
        if not shards:
            continue  # TFDS has no empty splits
        split_infos.append(
            tfds.core.SplitInfo(
                name=split,
                shard_lengths=[s.size for s in shards],
                num_bytes=sum(entries[s.filename(plan["dataset"])]["bytes"] for s in shards),
                filename_template=tfds.core.ShardedFileTemplate(
                    data_dir=out,
                    template=TEMPLATE,
                    dataset_name=plan["dataset"],
                    split=split,
                    filetype_suffix="array_record",
                ),
            )
        )
    tfds.folder_dataset.write_metadata(
        data_dir=out,
        features=_features(channels),
        split_infos=split_infos,
        filename_template=TEMPLATE,
        check_data=False,  # TFDS's check reads with as_dataset, which ArrayRecord lacks
        description=f"{plan['name']} packed by zoo: {plan['splits']}, split with seed "
        f"{plan['seed']}; labels index pack.json's class_names",
    )


def pack(
    raw: RawSplits,
    out: str | os.PathLike,
    *,
    seed: int,
    source: Mapping[str, Any],
    shard_megabytes: float = 128.0,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write ``raw``'s three splits into ``out`` as sharded ArrayRecord files (TFDS layout).

    Args:
        raw: the splits as the pipeline would read them (file paths or in-memory images).
        out: an empty folder, or one holding this same pack unfinished (it is resumed).
        seed: the seed the splits were drawn with (recorded; the splits are fixed here).
        source: the data config that produced ``raw`` (recorded; part of the pack's key).
        shard_megabytes: the size a shard aims at (TFDS suggests 100-200 MB).
        workers: processes that write shards; ``None``: one per core this process may use.
        progress: draw a progress bar on stderr.

    Returns:
        ``out``, with ``pack.json`` marked complete: what ``load_packed`` opens.
    """
    from tqdm import tqdm

    out = Path(out).expanduser().resolve()
    if shard_megabytes <= 0:
        raise ValueError(f"shard_megabytes must be > 0, got {shard_megabytes!r}")
    workers = workers or len(os.sched_getaffinity(0))
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    plan, files = _plan(raw, seed, source, shard_megabytes)
    done = _open_plan(out, plan)
    if done is None:
        log.info("Pack %s is complete already: %s", out, plan["splits"])
        return out
    if plan["shapes"] is None:
        plan["shapes"] = _shapes_of_images(raw)
    channels = _channels(plan, raw)
    total = sum(plan["splits"].values())
    files_of_shards = [shard.filename(plan["dataset"]) for shard in shards_of(plan)]
    landed = [done[file] for file in files_of_shards if file in done]
    log.info(
        "Packing %s into %s: %d examples in %d shards (%d done), %d workers",
        plan["name"],
        out,
        total,
        len(files_of_shards),
        len(landed),
        workers,
    )
    labels: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    tasks = _tasks(raw, plan, files, out, done, channels, labels)
    finished = sum(entry["examples"] for entry in landed)
    bar = tqdm(total=total, initial=finished, unit="img", disable=not progress, smoothing=0.05)
    with open(out / PROGRESS, "a") as record:
        for path, written in _written(tasks, workers):
            try:
                entry = written()
            except (OSError, ValueError) as err:
                raise ValueError(
                    f"packing {path}: {err}; fix the source and run the same command again "
                    "(the finished shards are kept)"
                ) from None
            done[entry["file"]] = entry
            record.write(json.dumps(entry) + "\n")
            record.flush()
            os.fsync(record.fileno())
            bar.update(entry["examples"])
    bar.close()
    split_labels = {
        f"{name}_labels": np.concatenate(parts) if parts else np.zeros(0, np.int64)
        for name, parts in labels.items()
    }
    np.savez(out / (LABELS + ".tmp.npz"), **split_labels)
    os.replace(out / (LABELS + ".tmp.npz"), out / LABELS)
    _write_metadata(out, plan, done, channels)
    plan["shards"] = [done[file] for file in files_of_shards]
    plan["complete"] = True
    _write_json(out / PLAN, plan)
    (out / PROGRESS).unlink()
    log.info(
        "Packed %s: %d examples, %.2f GB in %d shards",
        out,
        total,
        sum(e["bytes"] for e in plan["shards"]) / 1e9,
        len(files_of_shards),
    )
    return out
