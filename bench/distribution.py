"""Data-parallel training throughput (images/s) at 1 and 2 devices, and the scaling.

Each (backend, model, devices) runs in its own process: the devices are simulated CPU
devices here (TensorFlow logical devices, XLA host devices on JAX), or real GPUs where the
machine has them (`--gpus`). The model is built and trained inside `zoo.training.
distribution.scope("data_parallel")`, as `train.py trainer.distribution=data_parallel`
does, on synthetic inputs; the global batch stays the same at every device count.

    python bench/distribution.py                          # lcn and deepface, TF and JAX, 1 and 2
    python bench/distribution.py --models lcn --backends jax --devices 1 2 4
    python bench/distribution.py --gpus                   # the machine's GPUs, not simulated

Scaling efficiency = (images/s at N devices) / (N x images/s at 1 device). On a CPU the
simulated devices share the same cores, so the figure there measures the engines' overhead,
not a speed-up; on GPUs it is the real scaling. Output: `bench/results/distribution.{json,md}`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = {  # name -> (input shape, classes, global batch)
    "lcn": ((28, 28, 1), 10, 128),
    "deepface": ((152, 152, 3), 40, 32),
}


def child(backend: str, model_name: str, devices: int, steps: int, gpus: bool) -> dict:
    os.environ["KERAS_BACKEND"] = backend
    from zoo.runtime import configure_tensorflow

    configure_tensorflow()
    from zoo.training import distribution

    if not gpus:
        distribution.simulate_cpu_devices(devices)
    import numpy as np
    import tensorflow as tf
    if backend == "jax":
        tf.config.set_visible_devices([], "GPU")  # tf.data only; JAX owns the GPUs
    import keras

    from zoo.data.spec import DataSpec
    from zoo.models import build_cnn, build_deepface

    shape, classes, batch = MODELS[model_name]
    spec = DataSpec("synthetic", shape, classes, tuple(map(str, range(classes))))
    rng = np.random.default_rng(0)
    images = rng.random((batch * 4, *shape), dtype=np.float32)
    labels = rng.integers(0, classes, batch * 4)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch).repeat()
    kind = "data_parallel" if devices > 1 else None
    with distribution.scope(kind) as placement:
        if model_name == "lcn":
            model = build_cnn(spec, locally_connected=True)
        else:
            model = build_deepface(spec)
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
        model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)  # trace, compile, warm up
        start = time.perf_counter()
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
        seconds = time.perf_counter() - start
    return {
        "backend": backend,
        "model": model_name,
        "devices": placement.devices,
        "engine": placement.engine,
        "global_batch": batch,
        "images_per_s": steps * batch / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    parser.add_argument("--devices", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--gpus", action="store_true", help="the machine's GPUs, not simulated")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        backend, model_name, devices = args.child
        print("RESULT", json.dumps(child(backend, model_name, int(devices), args.steps, args.gpus)))
        return
    from zoo import machine
    from zoo.runtime import configure_tensorflow

    configure_tensorflow()  # what the children run with, so the report names it
    rows = []
    for backend in args.backends:
        for model_name in args.models:
            for devices in args.devices:
                command = [sys.executable, __file__, "--child", backend, model_name, str(devices)]
                command += ["--steps", str(args.steps), *(["--gpus"] if args.gpus else [])]
                done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
                lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
                if done.returncode or not lines:
                    print(done.stderr[-2000:], file=sys.stderr)
                    raise SystemExit(f"{backend} {model_name} x{devices} failed")
                rows.append(json.loads(lines[-1][len("RESULT ") :]))
                print(rows[-1], flush=True)
    for row in rows:
        one = next(
            r["images_per_s"]
            for r in rows
            if (r["backend"], r["model"], r["devices"]) == (row["backend"], row["model"], 1)
        )
        row["scaling_efficiency"] = row["images_per_s"] / (row["devices"] * one)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "distribution.json").write_text(json.dumps(rows, indent=1))
    where = "GPUs" if args.gpus else "simulated CPU devices sharing the same cores"
    lines = [
        "# Data-parallel throughput",
        "",
        f"`python {' '.join(sys.argv)}`; {where}. Machine: {machine.describe()}.",
        "",
        "| backend | model | engine | devices | global batch | images/s | scaling efficiency |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['model']} | {r['engine']} | {r['devices']} | "
            f"{r['global_batch']} | {r['images_per_s']:.1f} | {r['scaling_efficiency']:.2f} |"
        )
    (args.out / "distribution.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
