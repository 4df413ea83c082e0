"""What resumable training costs: op determinism, and a checkpoint against training steps.

    python bench/resilience.py            # writes bench/results/resilience.{json,md}

Each measurement runs in its own process (op determinism is process-wide): the zoo model
on MNIST through `fit` on the resumable data order, median optimizer-step time over the
timed steps after a warm-up, with `trainer.deterministic` off and on, interleaved
(off, on, off, on) so drift on a shared machine hits both alike. The same process times
writing one checkpoint (`TrainingState.save`: model, optimizer and metric variables,
checksummed, fsynced, renamed) and reports it as a share of `every_steps` steps. DeepFace
is too slow to train on a CPU: only its checkpoint (size, write time) is measured.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MODELS = ("cnn", "lcn")
WARMUP, TIMED, EVERY_STEPS, BATCH = 10, 60, 100, 64


def worker(model_name: str, deterministic: bool) -> dict:
    """One measurement (runs in a child process)."""
    import keras
    import tensorflow as tf
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from zoo.data import load_data
    from zoo.training import compile_model
    from zoo.training.signals import SignalFlag
    from zoo.training.state import TrainingState

    keras.utils.set_random_seed(0)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", [f"model={model_name}", "data=mnist", "baselines=none"])
    data = load_data(cfg.data, batch_size=BATCH, seed=0)
    model = instantiate(cfg.model.builder)(data.spec)
    compile_model(model, cfg, data.spec.num_classes)
    times: list[float] = []

    class StepTimes(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.start)

    steps = WARMUP + TIMED
    epochs = -(-steps * BATCH // 3500) + 1  # enough epochs of the 3,500 train images
    model.fit(
        data.train_epochs(0, epochs, 0),
        steps_per_epoch=steps,
        epochs=1,
        callbacks=[StepTimes()],
        verbose=0,
    )
    step = statistics.median(times[WARMUP:])
    with tempfile.TemporaryDirectory() as directory:
        state = TrainingState(Path(directory), EVERY_STEPS, 2, steps, 1, [], SignalFlag())
        state.set_model(model)
        saves = []
        for _ in range(3):
            start = time.perf_counter()
            path = state.save()
            saves.append(time.perf_counter() - start)
        size = path.stat().st_size
    return {
        "model": model_name,
        "deterministic": deterministic,
        "step_s": step,
        "checkpoint_s": statistics.median(saves),
        "checkpoint_bytes": size,
    }


def deepface_checkpoint() -> dict:
    """DeepFace's checkpoint: size and write time (no training step on a CPU)."""
    import keras
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from zoo.data.spec import DataSpec
    from zoo.training import checkpoint, compile_model

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", ["model=deepface", "baselines=none"])
    spec = DataSpec("faces", (152, 152, 3), 40, tuple(str(i) for i in range(40)))
    model = instantiate(cfg.model.builder)(spec)
    compile_model(model, cfg, spec.num_classes)
    model.optimizer.build(model.trainable_variables)
    variables = [*model.variables, *model.optimizer.variables]
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        arrays = {f"v/{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(variables)}
        path = checkpoint.write(Path(directory), 1, arrays, {})
        seconds = time.perf_counter() - start
        size = path.stat().st_size
    return {"model": "deepface", "checkpoint_s": seconds, "checkpoint_bytes": size}


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    flags = [f for f in fields.get("Flags", "").split() if f.startswith(("avx", "fma", "amx"))]
    name, cpus = fields.get("Model name", "?").strip(), fields.get("CPU(s)", "?").strip()
    return f"{name}, {cpus} CPUs, {' '.join(flags)}"


def child(*args: str) -> dict:
    command = [sys.executable, __file__, "--worker", *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    rows = []
    for model_name in MODELS:
        for deterministic in (False, True, False, True):
            rows.append(child(model_name, str(deterministic)))
    deepface = child("deepface")
    lines = [
        "# Resumable training: costs",
        "",
        f"Machine: {machine()} (shared with other work while measured).",
        f"MNIST, batch {BATCH}, median of {TIMED} steps after {WARMUP} warm-up steps; "
        "off/on interleaved, two runs each.",
        "",
        "| model | step, deterministic off | step, on | on / off | checkpoint | size | "
        f"checkpoint / {EVERY_STEPS} steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for model_name in MODELS:
        off = [r for r in rows if r["model"] == model_name and not r["deterministic"]]
        on = [r for r in rows if r["model"] == model_name and r["deterministic"]]
        step_off = statistics.median(r["step_s"] for r in off)
        step_on = statistics.median(r["step_s"] for r in on)
        save = statistics.median(r["checkpoint_s"] for r in off)
        lines.append(
            f"| {model_name} | {1000 * step_off:.2f} ms | {1000 * step_on:.2f} ms | "
            f"{step_on / step_off:.2f} | {1000 * save:.1f} ms | "
            f"{off[0]['checkpoint_bytes'] / 2**20:.1f} MiB | "
            f"{100 * save / (EVERY_STEPS * step_off):.2f} % |"
        )
    lines += [
        "",
        f"DeepFace checkpoint (weights + SGD momentum): {deepface['checkpoint_bytes'] / 2**30:.2f} "
        f"GiB written in {deepface['checkpoint_s']:.1f} s.",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "resilience.json").write_text(
        json.dumps({"machine": machine(), "runs": rows, "deepface": deepface}, indent=2)
    )
    (RESULTS / "resilience.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        sys.path.insert(0, str(ROOT))
        if sys.argv[2] == "deepface":
            print(json.dumps(deepface_checkpoint()))
        else:
            print(json.dumps(worker(sys.argv[2], sys.argv[3] == "True")))
    else:
        main()
