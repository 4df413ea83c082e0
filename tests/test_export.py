"""Every export format reloaded by its own runtime, outputs equal to Keras'."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from zoo.data.spec import DataSpec
from zoo.export import FORMATS, TOLERANCE, check_formats, export_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny lcn (the locally connected layer is what might not export) in every format."""
    from zoo.models import build_cnn

    keras.utils.set_random_seed(0)
    spec = DataSpec("tiny", (8, 8, 1), 10, tuple("0123456789"))
    model = build_cnn(spec, filters=4, hidden_units=8, locally_connected=True)
    sample = np.random.default_rng(0).random((3, 8, 8, 1), dtype="float32")
    directory = tmp_path_factory.mktemp("exports")
    results = export_model(model, list(FORMATS), directory, sample)
    other = np.random.default_rng(1).random((5, 8, 8, 1), dtype="float32")
    return model, results, directory, other, model.predict(other, verbose=0)


def test_each_format_lands_in_its_own_directory(exported):
    _, results, directory, _, _ = exported
    assert set(results) == set(FORMATS)
    for fmt, result in results.items():
        assert result.path.exists()
        assert result.path.relative_to(directory).parts[0] == fmt
        assert 0.0 <= result.max_abs_diff <= TOLERANCE
    summary = json.loads((directory / "summary.json").read_text())
    assert set(summary) == set(FORMATS)


def test_exported_graphs_hold_stock_ops_only(exported):
    """The fused CPU kernel runs in this process (`tf.numpy_function`); the exported graphs
    hold TensorFlow's own ops instead, so they run wherever TensorFlow does."""
    results = exported[1]
    from zoo.layers import fused

    assert fused.library() is not None  # the kernel was there to leak
    for fmt in ("saved_model", "onnx", "litert"):
        path = results[fmt].path
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        assert not any(b"PyFunc" in f.read_bytes() for f in files), fmt


def test_saved_model_serves_the_named_signature_in_a_fresh_process(exported):
    _, results, directory, other, expected = exported
    np.save(directory / "other.npy", other)
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "serve = tf.saved_model.load(sys.argv[1]).signatures['serve']\n"
        "(out,) = serve(image=tf.constant(np.load(sys.argv[2]))).values()\n"
        "np.save(sys.argv[3], out.numpy())\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(results["saved_model"].path),
            str(directory / "other.npy"),
            str(directory / "served.npy"),
        ],
        check=True,
        capture_output=True,
    )
    np.testing.assert_allclose(np.load(directory / "served.npy"), expected, atol=TOLERANCE)
    cli = (directory / "saved_model" / "saved_model_cli.txt").read_text()
    assert "signature_def['serve']" in cli
    assert "shape: (-1, 8, 8, 1)" in cli


def test_keras_file_reloads_in_safe_mode(exported):
    _, results, _, other, expected = exported
    import zoo.layers  # noqa: F401

    reloaded = keras.saving.load_model(results["keras"].path, safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(other, verbose=0), expected, atol=TOLERANCE)


def test_onnx_runs_in_onnxruntime(exported):
    import onnxruntime

    _, results, _, other, expected = exported
    session = onnxruntime.InferenceSession(str(results["onnx"].path))
    (outputs,) = session.run(None, {session.get_inputs()[0].name: other})
    np.testing.assert_allclose(outputs, expected, atol=TOLERANCE)


def test_litert_runs_in_the_interpreter_with_builtin_ops(exported):
    from ai_edge_litert.interpreter import Interpreter

    _, results, _, other, expected = exported
    interpreter = Interpreter(model_path=str(results["litert"].path))
    (detail,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(detail["index"], other.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], other)
    interpreter.invoke()
    outputs = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(outputs, expected, atol=TOLERANCE)


def test_unknown_format_names_the_value_and_the_choices():
    with pytest.raises(ValueError, match=r"unknown format\(s\) \['tflite'\].*litert"):
        check_formats(["saved_model", "tflite"])
    assert check_formats(["onnx", "onnx", "keras"]) == ["onnx", "keras"]
