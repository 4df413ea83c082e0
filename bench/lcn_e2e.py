"""lcn training throughput: this checkout's layer vs a git revision's, and the cnn beside them.

The three models (`zoo.models.build_cnn` on 28x28x1 MNIST-shaped inputs: `cnn`, `lcn`, and
`lcn@REV` with the layer module, fused kernel included, of revision REV) train on the same
fixed batch in one process, round after round, so every round compares steps taken seconds
apart on the same machine state. The optimizer is the pipeline's (`--optimizer adamw`:
`python train.py model=lcn`), from bench/optimizer.py like bench/deepface_e2e.py's.

    python bench/lcn_e2e.py --baseline d8fa0df --rounds 15
    python bench/lcn_e2e.py --baseline d8fa0df --optimizer sgd --json bench/results/lcn_e2e.json

Reported per model: min and median ms per training step (each round the mean of `--steps`
steps), images/s at the median, and the median per-round ratio lcn@REV / lcn.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git revision of the other layer")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10, help="training steps per round")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    parser.add_argument("--json", help="write the results here as well")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    from ab import layer_module_at
    from deepface_e2e import make_optimizer

    import zoo.models.cnn as cnn
    from zoo import machine
    from zoo.data.spec import DataSpec
    from zoo.layers import LocallyConnected2D

    spec = DataSpec("synthetic", (28, 28, 1), 10, tuple(map(str, range(10))))
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, args.batch)
    layers = {  # the locally connected variants' layer classes
        "lcn": LocallyConnected2D,
        f"lcn@{args.baseline}": layer_module_at(args.baseline).LocallyConnected2D,
    }
    models = {}
    for name in ("cnn", *layers):
        keras.utils.set_random_seed(0)
        cnn.LocallyConnected2D = layers.get(name, LocallyConnected2D)  # what build_cnn uses
        try:
            model = cnn.build_cnn(spec, locally_connected=name != "cnn")
        finally:
            cnn.LocallyConnected2D = LocallyConnected2D
        model.compile(
            optimizer=make_optimizer(keras, args.optimizer), loss="sparse_categorical_crossentropy"
        )
        for _ in range(3):  # trace, build the optimizer, warm up
            model.train_on_batch(x, y)
        models[name] = model
    seconds = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                model.train_on_batch(x, y)
            seconds[name].append((time.perf_counter() - start) / args.steps)
    print(
        f"machine: {machine.describe()}; batch {args.batch}, {args.optimizer}, {args.rounds} rounds"
    )
    rows = []
    for name, spent in seconds.items():
        median = statistics.median(spent)
        rows.append(
            {
                "model": name,
                "min_ms": 1e3 * min(spent),
                "median_ms": 1e3 * median,
                "images_per_s": args.batch / median,
            }
        )
        print(
            f"  {name:16s} min {1e3 * min(spent):7.2f}  median {1e3 * median:7.2f} ms/step"
            f"  {args.batch / median:7.0f} images/s"
        )
    ratios = [a / b for a, b in zip(seconds[f"lcn@{args.baseline}"], seconds["lcn"], strict=True)]
    print(
        f"  lcn@{args.baseline} / lcn per round: median {statistics.median(ratios):.2f} "
        f"({min(ratios):.2f}-{max(ratios):.2f}); lcn / cnn: "
        f"{statistics.median(seconds['lcn']) / statistics.median(seconds['cnn']):.2f}"
    )
    if args.json:
        record = {
            "machine": machine.describe(),
            "baseline": args.baseline,
            "batch": args.batch,
            "optimizer": args.optimizer,
            "rounds": args.rounds,
            "steps": args.steps,
            "rows": rows,
            "median_ratio_baseline_over_this": statistics.median(ratios),
        }
        Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
