"""Start-up on an image folder: listing, the remembered check, splits, the pipeline, the first
batch; and the peak memory of the process. Run it twice: the first run decodes every file
once (in parallel), the second reuses the verdicts.

    python bench/make_faces.py /data/faces-1m --images 1000000 --identities 10000
    python bench/folder_startup.py /data/faces-1m --image-size 152 152 --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time

from zoo import machine
from zoo.data.folder import load_folder
from zoo.data.pipeline import build_datasets
from zoo.data.splits import split_examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--image-size", type=int, nargs=2, default=(152, 152))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    times = {}
    start = time.perf_counter()
    examples = load_folder(args.folder)
    times["list_and_check_s"] = time.perf_counter() - start
    raw = split_examples(examples, seed=args.seed)
    times["split_s"] = time.perf_counter() - start - times["list_and_check_s"]
    data = build_datasets(
        raw, batch_size=args.batch_size, image_size=args.image_size, seed=args.seed
    )
    next(iter(data.train_epochs(0, 1, 0)))
    times["first_batch_s"] = time.perf_counter() - start
    result = {
        "images": len(examples.images),
        "classes": len(examples.class_names),
        **{key: round(value, 2) for key, value in times.items()},
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "machine": machine.describe(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
