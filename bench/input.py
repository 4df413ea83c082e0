"""Input throughput: the pipeline against the bare decode rate of the same files, per core
count; and DeepFace's training step with real input against the same step fed from memory.

Every figure comes from this one run on this machine. For each core count k (1 .. the cores
here), a child process pinned to k cores measures, on the same files:
  * bare decode: PIL decoding each JPEG fully to RGB pixels, in k processes (nothing else);
  * the pipeline: `build_datasets` on the folder (and on a pack of it, when given): read,
    decode, resize to 152x152, DeepFace's augmentation, batch; images/s over whole batches;
    and the folder's without augmentation (read, decode, resize, batch).

    python bench/make_faces.py /data/faces-100k --images 100000 --identities 10000
    python pack.py data=folder data.source.path=/data/faces-100k out=/data/faces-100k-packed
    python bench/input.py /data/faces-100k --packed /data/faces-100k-packed --out input.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time

import numpy as np
from report import child_result, publish

AUGMENT = {  # conf/model/deepface.yaml's
    "horizontal_flip": True,
    "max_shift": 8,
    "rotation": 8,
    "zoom": 0.1,
    "brightness": 0.1,
    "contrast": 0.2,
}


def _decode_all(paths: list[str]) -> int:
    from PIL import Image

    for path in paths:
        with Image.open(path) as image:
            np.asarray(image.convert("RGB"))
    return len(paths)


def bare_decode(paths: list[str], cores: int) -> float:
    """Images/s of PIL decoding ``paths`` in ``cores`` processes (after one warm pass)."""
    _decode_all(paths[:200])
    chunks = [paths[i::cores] for i in range(cores)]
    with multiprocessing.get_context("fork").Pool(cores) as pool:
        start = time.perf_counter()
        decoded = sum(pool.map(_decode_all, chunks))
        return decoded / (time.perf_counter() - start)


def pipeline_rate(raw, batches: int, batch_size: int, augment: bool = True) -> float:
    """Images/s of the training pipeline (decode each epoch), after its first batch."""
    from zoo.data.pipeline import build_datasets

    data = build_datasets(
        raw,
        batch_size=batch_size,
        image_size=(152, 152),
        channels=3,
        augment=AUGMENT if augment else None,
        cache="none",
        seed=0,
    )
    iterator = iter(data.train_epochs(0, 1, 0))
    next(iterator)
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        images += int(next(iterator)[1].shape[0])
    return images / (time.perf_counter() - start)


def measure(args: argparse.Namespace) -> dict:
    """Child process: everything at this process's core count (TensorFlow sizes its thread
    pools by the cores it may use)."""
    from zoo.data.folder import load_folder
    from zoo.data.packed import load_packed
    from zoo.data.splits import split_examples

    raw = split_examples(load_folder(args.folder), seed=0)
    count = args.batches * args.batch_size
    paths = [p.decode() for p, _ in raw.train.take(count + args.batch_size).as_numpy_iterator()]
    cores = len(os.sched_getaffinity(0))
    result = {"cores": cores, "bare_decode_per_s": bare_decode(paths, cores)}
    result["folder_pipeline_per_s"] = pipeline_rate(raw, args.batches, args.batch_size)
    result["folder_without_augment_per_s"] = pipeline_rate(
        raw, args.batches, args.batch_size, augment=False
    )
    if args.packed:
        packed = load_packed(args.packed)
        result["packed_pipeline_per_s"] = pipeline_rate(packed, args.batches, args.batch_size)
    return result


def step_times(args: argparse.Namespace) -> dict:
    """Child process, all cores: DeepFace's train step, real input against one batch in memory."""
    import keras
    import tensorflow as tf

    from zoo.data.folder import load_folder
    from zoo.data.pipeline import build_datasets
    from zoo.data.splits import split_examples
    from zoo.models import build_deepface

    raw = split_examples(load_folder(args.folder), seed=0)
    data = build_datasets(
        raw,
        batch_size=args.batch_size,
        image_size=(152, 152),
        channels=3,
        augment=AUGMENT,
        cache="none",
        seed=0,
    )
    model = build_deepface(num_classes=len(raw.class_names))  # 152x152x3, as defined
    model.compile(
        optimizer=keras.optimizers.AdamW(3e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )

    def seconds_per_step(dataset: tf.data.Dataset) -> float:
        model.fit(dataset.take(2), verbose=0)  # compile and warm up
        start = time.perf_counter()
        model.fit(dataset.take(args.steps), verbose=0)
        return (time.perf_counter() - start) / args.steps

    real = data.train_epochs(0, 1, 0)
    in_memory = real.take(1).cache().repeat()
    # Alternated in rounds, each ratio taken within its round: the machine's slow spells
    # (a shared host's step time moves by up to 1.7x over minutes) hit both feeds alike.
    rounds = [(seconds_per_step(in_memory), seconds_per_step(real)) for _ in range(args.rounds)]
    memory_s = float(np.median([memory for memory, _ in rounds]))
    real_s = float(np.median([real for _, real in rounds]))
    ratio = float(np.median([real / memory for memory, real in rounds]))
    return {
        "batch_size": args.batch_size,
        "deepface_step_real_input_s": real_s,
        "deepface_step_from_memory_s": memory_s,
        "real_over_memory": ratio,
        "rounds": rounds,
        "images_per_s_consumed": args.batch_size / memory_s,
    }


def child(args: argparse.Namespace, role: str, cores: list[int]) -> dict:
    command = [
        sys.executable,
        __file__,
        args.folder,
        "--role",
        role,
        "--batches",
        str(args.batches),
        "--batch-size",
        str(args.batch_size),
        "--steps",
        str(args.steps),
        "--rounds",
        str(args.rounds),
    ] + (["--packed", args.packed] if args.packed else [])
    return child_result(["taskset", "-c", ",".join(map(str, cores)), *command])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--packed", help="a pack of the same folder (pack.py)")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="DeepFace steps timed per feed")
    parser.add_argument("--rounds", type=int, default=4, help="alternations of the two feeds")
    parser.add_argument("--skip-steps", action="store_true", help="no DeepFace step timing")
    parser.add_argument("--out", help="write the result here as JSON")
    parser.add_argument("--role", choices=("rates", "steps"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        print(json.dumps(measure(args) if args.role == "rates" else step_times(args)))
        return
    cores = sorted(os.sched_getaffinity(0))
    rows = [child(args, "rates", cores[:k]) for k in range(1, len(cores) + 1)]
    for row in rows:
        for key in (
            "folder_pipeline_per_s",
            "folder_without_augment_per_s",
            "packed_pipeline_per_s",
        ):
            if key in row:
                row[key.replace("_per_s", "_over_bare")] = row[key] / row["bare_decode_per_s"]
    result = {
        "images_per_core_count": rows,
        "scaling_folder": rows[-1]["folder_pipeline_per_s"] / rows[0]["folder_pipeline_per_s"],
    }
    if not args.skip_steps:
        result["deepface"] = child(args, "steps", cores)
    publish(result, args.out)


if __name__ == "__main__":
    main()
