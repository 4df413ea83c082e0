"""Many identities: DeepFace's memory and training-step time as its classifier grows.

Each identity count runs in a fresh process: DeepFace (152x152x3, F7 of 4096 units, F8 of K
classes) compiled as `train.py` compiles it (AdamW, sparse cross-entropy from logits),
trained on random batches held in memory (the input is not what is measured here); the
median step time over the timed steps and the process's peak RSS.

    python bench/classifier.py --classes 10 10000 100000 --out classifier.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from report import child_result, publish


def measure(classes: int, batch_size: int, steps: int) -> dict:
    import keras
    import numpy as np

    from zoo.models import build_deepface

    model = build_deepface(num_classes=classes)
    model.compile(
        optimizer=keras.optimizers.AdamW(3e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    images = rng.random((batch_size, 152, 152, 3), np.float32)
    labels = rng.integers(0, classes, batch_size)
    for _ in range(2):  # build, trace, warm up
        model.train_on_batch(images, labels)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(images, labels)
        times.append(time.perf_counter() - start)
    head = model.layers[-1]
    return {
        "classes": classes,
        "batch_size": batch_size,
        "step_s": float(np.median(times)),
        "step_times_s": times,
        "parameters": int(model.count_params()),
        "classifier_parameters": int(head.count_params()),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 10_000, 100_000])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", help="write the result here as JSON")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.batch_size, args.steps)))
        return
    rows = []
    for classes in args.classes:
        command = [
            sys.executable,
            __file__,
            "--one",
            str(classes),
            "--batch-size",
            str(args.batch_size),
            "--steps",
            str(args.steps),
        ]
        rows.append(child_result(command))
        print(json.dumps(rows[-1]), flush=True)
    smallest = rows[0]
    for row in rows:
        row["step_over_smallest"] = row["step_s"] / smallest["step_s"]
    publish({"rows": rows}, args.out)


if __name__ == "__main__":
    main()
