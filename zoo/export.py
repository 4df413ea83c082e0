"""Exports users can serve: TensorFlow SavedModel, `.keras`, ONNX and LiteRT (TFLite).

Every export is reloaded by its own runtime and run on a sample batch; the largest absolute
difference from the Keras outputs is recorded, so an export that loads but computes
something else is caught at export time, not in production.

`LocallyConnected2D` is written with `keras.ops` (transpose, pad, reshape, gather, einsum,
add), all of which SavedModel, ONNX (`Gather`, `Einsum`, opset >= 12) and LiteRT (`GATHER`,
`BATCH_MATMUL`) hold natively: no custom op or Flex delegate is needed. Its custom gradient
only matters for training and is not part of any inference graph.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from zoo.layers import fused

log = logging.getLogger(__name__)

FORMATS = ("saved_model", "keras", "onnx", "litert")
SERVING_ENDPOINT = "serve"  # the signature name users call: loaded.signatures["serve"]
ONNX_OPSET = 17
ONNX_GRAPH_PASSES = ("remove_identity", "remove_back_to_back")
# The packages each format's exporter and its reload check import (the `export` extra).
_RUNTIMES = {"onnx": ("tf2onnx", "onnx", "onnxruntime"), "litert": ("ai_edge_litert",)}
TOLERANCE = 1e-4  # outputs are softmax probabilities / activations; float32 re-ordering only


@dataclass(frozen=True)
class ExportResult:
    """One export: where it is, and how far its reloaded outputs are from Keras'.

    Attributes:
        format: one of `FORMATS`.
        path: the exported file or directory (inside `directory/<format>/`).
        max_abs_diff: max |reloaded output - Keras output| on the sample batch.
        details: what the check ran (runtime, signature, opset, ...).
    """

    format: str
    path: Path
    max_abs_diff: float
    details: str = ""

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= TOLERANCE


class ExportError(RuntimeError):
    """An export failed, or its reloaded outputs differ from Keras beyond `TOLERANCE`."""


def check_formats(formats: list[str]) -> list[str]:
    """Validate `export.formats` early (before training), with the fix in the message."""
    unknown = [fmt for fmt in formats if fmt not in FORMATS]
    if unknown:
        raise ValueError(
            f"export.formats: unknown format(s) {unknown}; choose from {list(FORMATS)}, "
            f"e.g. export.formats=[{','.join(FORMATS)}] or export=all"
        )
    for fmt in formats:
        missing = [m for m in _RUNTIMES.get(fmt, ()) if importlib.util.find_spec(m) is None]
        if missing:
            raise ValueError(
                f"export.formats: {fmt} needs {', '.join(missing)}, which is not installed; "
                "install the export extra: pip install -e '.[export]' (or drop "
                f"{fmt} from export.formats)"
            )
    return list(dict.fromkeys(formats))


def export_model(
    model: keras.Model, formats: list[str], directory: Path, sample: np.ndarray
) -> dict[str, ExportResult]:
    """Export `model` in each of `formats` to `directory/<format>/` and check each one.

    Args:
        model: a built Keras model with one input and one output.
        formats: any of `FORMATS`.
        directory: parent directory; each format gets its own sub-directory.
        sample: a batch of inputs, `(n, *input_shape)`, used to compare outputs.

    Returns:
        `{format: ExportResult}`; a `summary.json` of them is written to `directory`.

    Raises:
        ValueError: an unknown format.
        ExportError: a format failed to export or reload, or its outputs differ from
            Keras by more than `TOLERANCE`; the message says which and why.
    """
    formats = check_formats(formats)
    directory = Path(directory)
    sample = np.asarray(sample, dtype="float32")
    expected = predict(model, sample)
    results = {}
    for fmt in formats:
        target = directory / fmt
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        try:
            with fused.disabled():  # stock TensorFlow ops only in exported graphs
                path, outputs, details = _EXPORTERS[fmt](model, target, sample)
        except ExportError:
            raise
        except Exception as err:
            raise ExportError(f"{fmt} export of model {model.name!r} failed: {err}") from err
        diff = float(np.max(np.abs(np.asarray(outputs, dtype="float32") - expected)))
        result = ExportResult(fmt, path, diff, details)
        log.info("Exported %s to %s: max |diff| from Keras = %.3g", fmt, path, diff)
        if not result.ok:
            raise ExportError(
                f"{fmt} export of model {model.name!r} reloads but its outputs differ from "
                f"Keras by {diff:.3g} (> {TOLERANCE}); the exported file is at {path}"
            )
        results[fmt] = result
    summary = {
        fmt: {
            "path": str(r.path.relative_to(directory)),
            "max_abs_diff": r.max_abs_diff,
            "details": r.details,
        }
        for fmt, r in results.items()
    }
    (directory / "summary.json").write_text(json.dumps(summary, indent=2))
    return results


def predict(model: keras.Model, inputs: np.ndarray) -> np.ndarray:
    """Inference outputs through Keras' compiled predict function (graph mode, one batch)."""
    return np.asarray(model.predict(inputs, batch_size=len(inputs), verbose=0))


def _input_signature(model: keras.Model):
    import tensorflow as tf

    (shape,) = [tuple(model.inputs[0].shape)]
    return [tf.TensorSpec((None, *shape[1:]), tf.float32, name=model.inputs[0].name)]


# --------------------------------------------------------------------------- SavedModel
_RELOAD_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
path, sample, out, endpoint = sys.argv[1:5]
loaded = tf.saved_model.load(path)
signature = loaded.signatures[endpoint]
(name,) = signature.structured_input_signature[1]
outputs = signature(**{name: tf.constant(np.load(sample))})
(value,) = outputs.values()
np.save(out, value.numpy())
print(json.dumps({"signatures": sorted(loaded.signatures), "input": name}))
"""


def _write_serving_archive(model: keras.Model, path: Path) -> None:
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SERVING_ENDPOINT,
        fn=lambda image: model(image, training=False),
        input_signature=_input_signature(model),
    )
    archive.write_out(str(path), verbose=False)


def _saved_model(model: keras.Model, target: Path, sample: np.ndarray):
    """`model.export` with a `serve` signature, reloaded by `tf.saved_model.load` in a
    fresh Python process (no Keras, no zoo import: what a serving stack sees)."""
    path = target / "model"
    _write_serving_archive(model, path)
    with tempfile.TemporaryDirectory() as tmp:
        sample_path, out_path = Path(tmp) / "sample.npy", Path(tmp) / "out.npy"
        np.save(sample_path, sample)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                _RELOAD_SCRIPT,
                str(path),
                str(sample_path),
                str(out_path),
                SERVING_ENDPOINT,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if proc.returncode:
            raise ExportError(
                "saved_model: tf.saved_model.load in a fresh process failed:\n"
                + proc.stderr[-2000:]
            )
        outputs = np.load(out_path)
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    cli = saved_model_cli_show(path)
    (target / "saved_model_cli.txt").write_text(cli)
    return path, outputs, f"signatures {info['signatures']}, input {info['input']!r}"


def saved_model_cli_show(path: Path) -> str:
    """`saved_model_cli show --dir PATH --all`: the signatures as TensorFlow's tool sees them."""
    cli = shutil.which("saved_model_cli") or str(Path(sys.executable).parent / "saved_model_cli")
    proc = subprocess.run(
        [cli, "show", "--dir", str(path), "--all"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if proc.returncode:
        raise ExportError(f"saved_model_cli show --dir {path} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout


# ------------------------------------------------------------------------------ .keras
def _keras(model: keras.Model, target: Path, sample: np.ndarray):
    path = target / f"{model.name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    return path, predict(reloaded, sample), "keras.saving.load_model(safe_mode=True)"


# -------------------------------------------------------------------------------- ONNX
def _onnx(model: keras.Model, target: Path, sample: np.ndarray):
    """tf2onnx from a traced `tf.function` (tf2onnx's `from_keras` predates Keras 3)."""
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    path = target / f"{model.name}.onnx"
    function = tf.function(lambda image: model(image, training=False))
    with _onnx_graph_passes(ONNX_GRAPH_PASSES):
        tf2onnx.convert.from_function(
            function,
            input_signature=_input_signature(model),
            opset=ONNX_OPSET,
            output_path=str(path),
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_input,) = session.get_inputs()
    (outputs,) = session.run(None, {onnx_input.name: sample})
    return path, outputs, f"onnxruntime {onnxruntime.__version__}, opset {ONNX_OPSET}"


@contextlib.contextmanager
def _onnx_graph_passes(names: tuple[str, ...]):
    """Run only these tf2onnx graph optimisers (`from_function` has no argument for it).

    tf2onnx's default passes (constant folding, duplicate merging, transpose pushing)
    copy weight tensors over and over: on DeepFace (103M parameters) they took the
    conversion past 21 GB of host memory; with these two passes it peaks near 12 GB (the
    frozen graph, the ONNX proto and the onnxruntime session each hold the weights) and
    gives the same outputs (onnxruntime runs `Einsum` natively).
    """
    import tf2onnx.optimizer

    default = tf2onnx.optimizer._optimizers
    tf2onnx.optimizer._optimizers = OrderedDict((n, default[n]) for n in names)
    try:
        yield
    finally:
        tf2onnx.optimizer._optimizers = default


# ------------------------------------------------------------------------------ LiteRT
def _litert(model: keras.Model, target: Path, sample: np.ndarray):
    """TFLite flatbuffer with builtin ops only (no Flex delegate), run by LiteRT's interpreter."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    path = target / f"{model.name}.tflite"
    with tempfile.TemporaryDirectory() as tmp:
        # Through a SavedModel: its variables are frozen into constants. Converting the
        # traced function directly keeps them as READ_VARIABLE ops, which LiteRT then
        # reads uninitialised (NaN outputs, or "variable != nullptr" without XNNPACK).
        _write_serving_archive(model, Path(tmp))
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[SERVING_ENDPOINT])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        path.write_bytes(converter.convert())
    interpreter = Interpreter(model_path=str(path))
    (input_detail,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(input_detail["index"], sample.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(input_detail["index"], sample)
    interpreter.invoke()
    (output_detail,) = interpreter.get_output_details()
    outputs = interpreter.get_tensor(output_detail["index"])
    return path, outputs, "ai_edge_litert Interpreter, TFLITE_BUILTINS only"


_EXPORTERS: dict[str, Callable] = {
    "saved_model": _saved_model,
    "keras": _keras,
    "onnx": _onnx,
    "litert": _litert,
}
