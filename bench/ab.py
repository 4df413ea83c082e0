"""Interleaved, same-process timings: Keras Conv, the zoo layer, and the zoo layer of a
git revision (TensorFlow backend).

Separate processes (`run.py`) see different neighbours on a shared machine; here every
implementation runs once per round, round after round, in one process, so each round's
ratio to Conv compares steps taken seconds apart. Reported per implementation: min and
median time, and min and median of the per-round ratios to Conv.

    python bench/ab.py --cases L4_b32 --baseline bcb0fdc --rounds 7
    python bench/ab.py --cases L4_b32,L6_b32 --impls conv,zoo --modes fwd,fwdbwd
    python bench/ab.py --cases L4_b32 --impls conv,zoo,stock   # fused kernel vs stock ops

`--baseline REV` loads the layer as it was at REV (`git show`: `zoo/layers/locally_connected.py`
and, where REV has them, its fused kernel `zoo/layers/fused.py` with the C++ source, compiled
into the usual cache) and times it as `zoo@REV`. Peak memory is per process, so it is
measured by `run.py`, not here.

`fwdbwd` returns the loss with the gradients: without it TensorFlow prunes the forward pass
wherever the gradients do not need its outputs (no activation: Conv2D's and the layer's
backward passes do not read `y`), and `fwdbwd` would time the backward pass alone. Of the
gradients it returns one element each (see `step_functions`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import tensorflow as tf  # noqa: E402
from cases import CASES, Case  # noqa: E402

from zoo import machine  # noqa: E402

LAYER_PATH = "zoo/layers/locally_connected.py"
FUSED_PATH = "zoo/layers/fused.py"
KERNEL_PATH = "zoo/layers/kernels/locally_connected.cc"


def _at(revision: str, path: str) -> str | None:
    """The text of `path` at git `revision`, or None where it did not exist."""
    shown = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:{path}"], capture_output=True, text=True
    )
    return shown.stdout if shown.returncode == 0 else None


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def layer_module_at(revision: str):
    """The layer module as it was at git `revision`, imported under a private name, with
    the fused kernel module (and its C++ source) of that revision where it had one."""
    source = _at(revision, LAYER_PATH)
    if source is None:
        raise SystemExit(f"{LAYER_PATH} does not exist at {revision}")
    scratch = Path(tempfile.mkdtemp())
    fused_source, kernel_source = _at(revision, FUSED_PATH), _at(revision, KERNEL_PATH)
    fused = None
    if fused_source is not None and kernel_source is not None:
        (scratch / "kernels").mkdir()
        (scratch / "kernels" / "locally_connected.cc").write_text(kernel_source)
        (scratch / f"fused_{revision}.py").write_text(fused_source)
        fused = _load(scratch / f"fused_{revision}.py")  # its SOURCE: the file beside it
    (scratch / f"locally_connected_{revision}.py").write_text(source)
    module = _load(scratch / f"locally_connected_{revision}.py")
    if fused is not None:
        module.fused = fused
    return module


def build_layer(case: Case, impl: str, baseline, activation: str | None = None):
    import keras

    if impl == "conv":
        classes = (keras.layers.Conv1D, keras.layers.Conv2D)
    elif impl in ("zoo", "stock"):
        from zoo.layers import LocallyConnected1D, LocallyConnected2D

        classes = (LocallyConnected1D, LocallyConnected2D)
    else:
        classes = (baseline.LocallyConnected1D, baseline.LocallyConnected2D)
    layer = classes[case.rank - 1](
        case.filters, case.kernel, case.strides, case.padding, activation=activation
    )
    layer.build((None, *case.spatial, case.channels))
    return layer


def step_functions(layer, stock: bool = False) -> dict:
    """Forward and forward + backward; `stock`: the zoo layer traced without its fused
    kernel (`zoo.layers.fused.disabled`)."""
    from zoo.layers import fused

    def call(x):
        with fused.disabled() if stock else contextlib.nullcontext():
            return layer(x)

    @tf.function
    def forward(x):
        return tf.reduce_sum(call(x))

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(call(x))
        grads = tape.gradient(loss, [x, *layer.trainable_weights])
        # The loss keeps the forward pass (see the module docstring). Of each gradient one
        # element: no large copy is timed, nor a pass over it that neither layer makes (a sum
        # over the 251 MB kernel gradient of L4 took ~20 ms, a cost the Conv2D kernel
        # gradient of 83 KB does not have; bench/RESULTS.md, round 6).
        return [loss, *(tf.reshape(g, [-1])[:1] for g in grads)]

    return {"fwd": forward, "fwdbwd": forward_backward}


def timed(fn, x) -> float:
    start = time.perf_counter()
    tf.nest.map_structure(lambda t: t.numpy(), fn(x))
    return time.perf_counter() - start


def run_case(
    case: Case, impls: list[str], modes: list[str], rounds: int, baseline, activation=None
) -> dict:
    x = tf.random.normal((case.batch, *case.spatial, case.channels), seed=0)
    functions = {
        impl: step_functions(build_layer(case, impl, baseline, activation), stock=impl == "stock")
        for impl in impls
    }
    for impl in impls:  # trace and warm up every function before the first timed round
        for mode in modes:
            timed(functions[impl][mode], x)
            timed(functions[impl][mode], x)
    times = {(impl, mode): [] for impl in impls for mode in modes}
    for _ in range(rounds):
        for mode in modes:
            for impl in impls:
                times[impl, mode].append(timed(functions[impl][mode], x) * 1e3)
    result = {}
    for mode in modes:
        for impl in impls:
            series = times[impl, mode]
            ratios = [t / c for t, c in zip(series, times["conv", mode], strict=True)]
            result[f"{impl} {mode}"] = {
                "min_ms": min(series),
                "median_ms": statistics.median(series),
                "ratio_min": min(ratios),
                "ratio_median": statistics.median(ratios),
                "times_ms": [round(t, 1) for t in series],
            }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="L4_b32", help="comma-separated case names")
    parser.add_argument(
        "--impls", default="conv,zoo", help="conv, zoo, stock (zoo without its fused kernel)"
    )
    parser.add_argument("--baseline", help="git revision whose layer is timed as zoo@REV")
    parser.add_argument("--modes", default="fwd,fwdbwd")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--activation", help="every layer's activation (e.g. relu, as in DeepFace); default none"
    )
    parser.add_argument("--json", help="write the results here as well")
    args = parser.parse_args()
    impls = args.impls.split(",")
    if "conv" not in impls:
        impls.insert(0, "conv")
    baseline = None
    if args.baseline:
        baseline = layer_module_at(args.baseline)
        impls.append(f"zoo@{args.baseline}")
    unknown = sorted(set(args.cases.split(",")) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    modes = args.modes.split(",")
    print(f"machine: {machine.describe()}; load average {os.getloadavg()[0]:.2f} at the start")
    report = {"machine": machine.describe(), "command": " ".join(sys.argv), "cases": {}}
    for name in args.cases.split(","):
        result = run_case(CASES[name], impls, modes, args.rounds, baseline, args.activation)
        report["cases"][name] = result
        activation = f", activation {args.activation}" if args.activation else ""
        print(f"{name} ({CASES[name].describe()}{activation}), {args.rounds} interleaved rounds")
        for key, r in result.items():
            print(
                f"  {key:22s} min {r['min_ms']:8.1f} ms  median {r['median_ms']:8.1f} ms  "
                f"x conv min {r['ratio_min']:5.2f} median {r['ratio_median']:5.2f}",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
