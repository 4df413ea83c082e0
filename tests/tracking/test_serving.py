"""`mlflow models serve` on loopback answers like Keras; the SavedModel's signature runs in
`saved_model_cli run` exactly as the README documents it."""

import contextlib
import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
from serving_helpers import free_port, serving

from zoo.tracking import load_keras_model


def _invocations(port: int, batch: np.ndarray) -> np.ndarray:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps({"inputs": batch.tolist()}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as reply:
        return np.asarray(json.load(reply)["predictions"], dtype="float32")


def _mlflow_cli() -> str:
    return shutil.which("mlflow") or str(Path(sys.executable).parent / "mlflow")


def test_served_run_and_registered_model_predict_like_keras(trained, tracking_uri, tmp_path):
    batch = np.random.default_rng(1).uniform(size=(6, 8, 8, 1)).astype("float32")
    expected = load_keras_model(trained.model_uri).predict(batch, verbose=0)
    uris = (trained.model_uri, trained.registered_uri)
    ports = [free_port() for _ in uris]
    with contextlib.ExitStack() as servers:  # both start at once: start-up is the slow part
        for index, (uri, port) in enumerate(zip(uris, ports, strict=True)):
            command = [
                _mlflow_cli(),
                "models",
                "serve",
                "-m",
                uri,
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ]
            log = tmp_path / f"serve{index}.log"
            servers.enter_context(serving(command, f"http://127.0.0.1:{port}/ping", log))
        for uri, port in zip(uris, ports, strict=True):
            predictions = _invocations(port, batch)
            np.testing.assert_allclose(predictions, expected, rtol=1e-5, atol=1e-6, err_msg=uri)


def test_saved_model_cli_runs_the_serve_signature(trained, tracking_uri, tmp_path):
    exported = mlflow.artifacts.download_artifacts(
        run_id=trained.run_id, artifact_path="exports/saved_model/model", dst_path=tmp_path
    )
    batch = np.random.default_rng(2).uniform(size=(3, 8, 8, 1)).astype("float32")
    np.save(tmp_path / "images.npy", batch)
    cli = shutil.which("saved_model_cli") or str(Path(sys.executable).parent / "saved_model_cli")
    # the README's command, with this model's input name (`image`; DeepFace's is `face`)
    command = [
        cli,
        "run",
        "--dir",
        exported,
        "--tag_set",
        "serve",
        "--signature_def",
        "serve",
        "--inputs",
        f"image={tmp_path / 'images.npy'}",
        "--outdir",
        tmp_path / "out",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = load_keras_model(trained.model_uri).predict(batch, verbose=0)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "output_0.npy"), expected, rtol=1e-5)
