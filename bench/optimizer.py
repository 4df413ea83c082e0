"""The optimizer update at DeepFace's size: `keras.optimizers.AdamW` / `SGD` (momentum 0.9) vs
`zoo.training.optimizers.AdamW` / `SGD` (TensorFlow's fused kernels), interleaved in one
process, and whole DeepFace training steps with each, so the update's share of a step is
measured too.

    python bench/optimizer.py                  # update only, ~1 min
    python bench/optimizer.py --steps 4        # plus DeepFace train steps (batch 32), ~3 min
    python bench/optimizer.py --family sgd     # the paper's SGD only

Prints one markdown table with the machine line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras
import numpy as np
import tensorflow as tf

from zoo import machine
from zoo.models import build_deepface
from zoo.training import optimizers

# family -> (Keras's optimizer, ours, arguments): the default recipe's and the paper's.
FAMILIES = {
    "adamw": (
        keras.optimizers.AdamW,
        optimizers.AdamW,
        {"learning_rate": 3e-4, "weight_decay": 0.05},
    ),
    "sgd": (keras.optimizers.SGD, optimizers.SGD, {"learning_rate": 0.01, "momentum": 0.9}),
}


def _pair(family: str) -> dict:
    keras_class, fused_class, kwargs = FAMILIES[family]
    return {
        f"keras.optimizers.{keras_class.__name__}": lambda: keras_class(**kwargs),
        f"zoo {fused_class.__name__} (fused)": lambda: fused_class(**kwargs),
    }


def _interleaved(functions: dict, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return times


def _update_function(optimizer, grads, variables):
    return tf.function(lambda: optimizer.apply_gradients(zip(grads, variables, strict=True)))


def update_only(family: str, rounds: int) -> dict[str, list[float]]:
    """`apply_gradients` on DeepFace's (ORL, 40 classes) variables with fixed gradients."""
    shapes = [tuple(w.shape) for w in build_deepface(num_classes=40).trainable_weights]
    rng = np.random.default_rng(0)
    steps = {}
    for name, make in _pair(family).items():
        variables = [keras.Variable(rng.normal(0, 0.01, s).astype("float32")) for s in shapes]
        grads = [tf.constant(rng.normal(0, 0.01, s).astype("float32")) for s in shapes]
        optimizer = make()
        # A closure, not default arguments: tf.function would trace those as tensors.
        step = _update_function(optimizer, grads, variables)
        step()
        steps[name] = step
    return _interleaved(steps, rounds)


def train_steps(family: str, rounds: int, batch: int) -> dict[str, list[float]]:
    """DeepFace `train_on_batch` on random faces, one model per optimizer."""
    rng = np.random.default_rng(0)
    x = rng.random((batch, 152, 152, 3), dtype="float32")
    y = rng.integers(0, 40, batch)
    steps = {}
    for name, make in _pair(family).items():
        model = build_deepface(num_classes=40)
        model.compile(optimizer=make(), loss="sparse_categorical_crossentropy")
        model.train_on_batch(x, y)
        steps[name] = lambda m=model: m.train_on_batch(x, y)
    return _interleaved(steps, rounds)


def _rows(label: str, times: dict[str, list[float]]) -> list[str]:
    reference = min(next(iter(times.values())))  # Keras's own, the first of the pair
    return [
        f"| {label} | {name} | {min(t) * 1e3:.0f} | {statistics.median(t) * 1e3:.0f} | "
        f"{reference / min(t):.2f}x |"
        for name, t in times.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=0, help="DeepFace train-step rounds")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--family", choices=[*FAMILIES, "all"], default="all")
    args = parser.parse_args()
    print(f"Machine: {machine.describe()}\n")
    print("| what | optimizer | min ms | median ms | speed-up (min) |\n|---|---|---|---|---|")
    size = build_deepface(num_classes=40).count_params()
    rows = []
    for family in FAMILIES if args.family == "all" else [args.family]:
        rows += _rows(f"update of {size:,} parameters", update_only(family, args.rounds))
        if args.steps:
            steps = train_steps(family, args.steps, args.batch)
            rows += _rows(f"DeepFace train step, batch {args.batch}", steps)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
