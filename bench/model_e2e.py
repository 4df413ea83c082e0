"""Training throughput of a zoo model: this checkout's layer vs a git revision's, beside the
same network with convolutions, all in one process.

Three models train on the same fixed batch, round after round, so every round compares steps
taken seconds apart on the same machine state (separate processes on a shared 2-core machine
varied up to 2x for the same code within minutes, see bench/RESULTS.md round 7):

  --model lcn       `cnn`, `lcn`, `lcn@REV` (`zoo.models.build_cnn`, 28x28x1, batch 128)
  --model deepface  `conv` (every locally connected layer a Conv2D of the same shape: the
                    lower bound of bench/deepface_e2e.py), `deepface`, `deepface@REV`
                    (`zoo.models.build_deepface`, 152x152x3, 4,030 classes, batch 32)

`@REV` is the model built with the layer module, fused kernel included, of git revision REV.
The optimizer is the pipeline's (`--optimizer adamw`: `python train.py model=...`; `sgd`: the
paper's), from bench/optimizer.py as in bench/deepface_e2e.py.

    python bench/model_e2e.py --model lcn --baseline d8fa0df --rounds 15
    python bench/model_e2e.py --model deepface --baseline d8fa0df --optimizer sgd --rounds 7

Reported per model: min and median ms per training step (each round the mean of `--steps`
steps), images/s at the median; per round, the revision's time over this one's and this
one's over the reference's (medians).
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

# model -> (input shape, classes, default batch, default steps per round, reference's name)
MODELS = {
    "lcn": ((28, 28, 1), 10, 128, 10, "cnn"),
    "deepface": ((152, 152, 3), 4030, 32, 2, "conv"),
}


def builders(model: str, baseline: str) -> dict:
    """name -> a function building that variant (reference, this layer, the revision's)."""
    from ab import layer_module_at

    from zoo.data.spec import DataSpec

    shape, classes, *_, reference = MODELS[model]
    spec = DataSpec("synthetic", shape, classes, tuple(map(str, range(classes))))
    if model == "lcn":
        import zoo.models.cnn as module

        build = lambda: module.build_cnn(spec, locally_connected=True)  # noqa: E731
        build_reference = lambda: module.build_cnn(spec)  # noqa: E731
    else:
        import deepface_e2e

        import zoo.models.deepface as module

        build = lambda: module.build_deepface(spec)  # noqa: E731
        build_reference = lambda: deepface_e2e.build("conv")[1]  # noqa: E731
    old_layer = layer_module_at(baseline).LocallyConnected2D

    def with_old_layer():
        current, module.LocallyConnected2D = module.LocallyConnected2D, old_layer
        try:
            return build()
        finally:
            module.LocallyConnected2D = current

    return {reference: build_reference, model: build, f"{model}@{baseline}": with_old_layer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(MODELS), default="lcn")
    parser.add_argument("--baseline", required=True, help="git revision of the other layer")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, help="training steps per round")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    parser.add_argument("--json", help="write the results here as well")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    from deepface_e2e import make_optimizer

    from zoo import machine

    shape, classes, batch, steps, reference = MODELS[args.model]
    batch, steps = args.batch or batch, args.steps or steps
    rng = np.random.default_rng(0)
    x = rng.random((batch, *shape), dtype=np.float32)
    y = rng.integers(0, classes, batch)
    models = {}
    for name, build in builders(args.model, args.baseline).items():
        keras.utils.set_random_seed(0)
        model = build()
        model.compile(
            optimizer=make_optimizer(keras, args.optimizer), loss="sparse_categorical_crossentropy"
        )
        for _ in range(2):  # trace, build the optimizer, warm up
            model.train_on_batch(x, y)
        models[name] = model
    seconds = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            start = time.perf_counter()
            for _ in range(steps):
                model.train_on_batch(x, y)
            seconds[name].append((time.perf_counter() - start) / steps)
    print(f"machine: {machine.describe()}; batch {batch}, {args.optimizer}, {args.rounds} rounds")
    rows = []
    for name, spent in seconds.items():
        median = statistics.median(spent)
        rows.append(
            {
                "model": name,
                "min_ms": 1e3 * min(spent),
                "median_ms": 1e3 * median,
                "images_per_s": batch / median,
            }
        )
        print(
            f"  {name:20s} min {1e3 * min(spent):8.2f}  median {1e3 * median:8.2f} ms/step"
            f"  {batch / median:7.1f} images/s"
        )
    this, old = seconds[args.model], seconds[f"{args.model}@{args.baseline}"]
    speedup = statistics.median(a / b for a, b in zip(old, this, strict=True))
    over_reference = statistics.median(a / b for a, b in zip(this, seconds[reference], strict=True))
    print(
        f"  per round: {args.model}@{args.baseline} / {args.model} {speedup:.2f}; "
        f"{args.model} / {reference} {over_reference:.2f} (throughput ratio "
        f"{1 / over_reference:.2f})"
    )
    if args.json:
        record = {
            "machine": machine.describe(),
            "model": args.model,
            "baseline": args.baseline,
            "batch": batch,
            "optimizer": args.optimizer,
            "rounds": args.rounds,
            "steps": steps,
            "rows": rows,
            "median_ratio_baseline_over_this": speedup,
            "median_ratio_this_over_reference": over_reference,
        }
        Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
