"""End-to-end DeepFace training throughput (images/s) on synthetic 152x152x3 faces.

Variants, each in its own subprocess (peak RSS per variant):
  zoo     `zoo.models.deepface.build_deepface` (zoo LocallyConnected2D, Keras 3, TF backend)
  stock   the same with the layer's stock ops (`ZOO_FUSED_KERNEL=0`: no fused CPU kernel)
  conv    the same network with every locally connected layer replaced by Conv2D
          (same shapes, shared weights): the lower bound
  legacy  the same network in tf_keras with `LocallyConnected2D(implementation=1)`

    python bench/deepface_e2e.py                                  # default plan
    python bench/deepface_e2e.py --variant zoo --batch 128 --steps 3
    python bench/deepface_e2e.py --variant zoo --jit-compile true   # with XLA
    python bench/deepface_e2e.py --variant conv --optimizer sgd     # the paper's optimizer

The optimizer is the training pipeline's: `--optimizer adamw` (default, `python train.py
model=deepface`) or `sgd` (the paper's, `experiment=deepface_paper`), both
`zoo.training.optimizers` (fused updates); `legacy` takes tf_keras's SGD either way.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cases import MEMORY_LIMIT_BYTES  # noqa: E402
from guard import run_guarded  # noqa: E402

CLASSES = 4030  # the paper's SFC identities
# legacy at batch 32 is predicted at ~25 GiB (3,025 input-sized slice gradients in L4
# alone); batch 16 is the largest power of two under the 14 GiB guard (11.5 GiB measured).
PLAN = [("conv", 32), ("zoo", 32), ("stock", 32), ("zoo", 128), ("stock", 128), ("legacy", 16)]


def build(variant: str):
    if variant == "legacy":
        import tf_keras as k

        local = lambda f, s, **kw: k.layers.LocallyConnected2D(f, s, implementation=1, **kw)  # noqa: E731
    else:
        import keras as k

        if variant in ("zoo", "stock"):
            from zoo.data.spec import DataSpec
            from zoo.models.deepface import build_deepface

            spec = DataSpec("synthetic", (152, 152, 3), CLASSES, tuple(map(str, range(CLASSES))))
            return k, build_deepface(spec)
        local = lambda f, s, **kw: k.layers.Conv2D(f, s, **kw)  # noqa: E731
    model = k.Sequential(
        [
            k.Input((152, 152, 3)),
            k.layers.Conv2D(32, 11, activation="relu"),
            k.layers.MaxPooling2D(3, strides=2, padding="same"),
            k.layers.Conv2D(16, 9, activation="relu"),
            local(16, 9, activation="relu"),
            local(16, 7, strides=2, activation="relu"),
            local(16, 5, activation="relu"),
            k.layers.Flatten(),
            k.layers.Dense(4096, activation="relu"),
            k.layers.Dropout(0.5),
            k.layers.Dense(CLASSES, activation="softmax"),
        ]
    )
    return k, model


def make_optimizer(k, name: str):
    """The fused optimizer `name` with bench/optimizer.py's settings (the recipes')."""
    from optimizer import FAMILIES

    _, fused_class, kwargs = FAMILIES[name]
    if k.__name__ == "tf_keras":  # Keras 2: its own SGD with the paper's settings
        return k.optimizers.SGD(**FAMILIES["sgd"][2])
    return fused_class(**kwargs)


def child(variant: str, batch: int, steps: int, jit_compile: str, optimizer: str) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if variant == "stock":
        os.environ["ZOO_FUSED_KERNEL"] = "0"
    import numpy as np

    start = time.perf_counter()
    k, model = build(variant)
    model.compile(
        optimizer=make_optimizer(k, optimizer),
        loss="sparse_categorical_crossentropy",
        **({} if jit_compile == "auto" else {"jit_compile": jit_compile == "true"}),
    )
    build_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    x = rng.random((batch, 152, 152, 3), dtype=np.float32)
    y = rng.integers(0, CLASSES, batch)
    start = time.perf_counter()
    model.train_on_batch(x, y)
    first_step_s = time.perf_counter() - start
    model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    step = statistics.median(times)
    return {
        "variant": variant,
        "batch": batch,
        "optimizer": optimizer,
        "params": int(model.count_params()),
        "build_s": build_s,
        "first_step_s": first_step_s,
        "step_ms": step * 1e3,
        "images_per_s": batch / step,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "status": "ok",
    }


def guarded_run(command: list[str], timeout_s: float) -> dict:
    """Run one variant under the watchdog; a kill or a crash becomes a "failed" result."""
    stdout, stderr, killed = run_guarded(command, timeout_s, MEMORY_LIMIT_BYTES)
    lines = [x for x in stdout.splitlines() if x.startswith("RESULT ")]
    if lines:
        return json.loads(lines[0][len("RESULT ") :])
    return {"status": "failed", "reason": killed or (stderr.strip().splitlines() or ["?"])[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=["zoo", "stock", "conv", "legacy"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument(
        "--jit-compile",
        choices=["auto", "true", "false"],
        default="auto",
        help="Keras compile(jit_compile=...) for --variant; auto = Keras's choice (no XLA on CPU)",
    )
    parser.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    parser.add_argument("--timeout", type=float, default=400)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    if args.variant:
        result = child(args.variant, args.batch, args.steps, args.jit_compile, args.optimizer)
        print("RESULT " + json.dumps(result), flush=True)
        return
    results = []
    for variant, batch in PLAN:
        command = [sys.executable, __file__, "--variant", variant, "--batch", str(batch)]
        command += ["--steps", str(args.steps), "--optimizer", args.optimizer]
        result = guarded_run(command, args.timeout)
        result.update(variant=variant, batch=batch)
        results.append(result)
        print(json.dumps(result), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "deepface_e2e.json").write_text(json.dumps(results, indent=1))
    from zoo import machine

    lines = [f"Machine: {machine.describe()}.", f"Optimizer: {args.optimizer}.", ""]
    lines.append("| variant | batch | images/s | step ms | peak RSS GiB | build+first step s |")
    lines.append("|---|---|---|---|---|---|")
    for r in results:
        if r["status"] != "ok":
            lines.append(f"| {r['variant']} | {r['batch']} | {r['status']}: {r['reason']} ||||")
            continue
        lines.append(
            f"| {r['variant']} | {r['batch']} | {r['images_per_s']:.1f} | {r['step_ms']:.0f} "
            f"| {r['peak_rss_gib']:.2f} | {r['build_s'] + r['first_step_s']:.1f} |"
        )
    (out / "deepface_e2e.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
