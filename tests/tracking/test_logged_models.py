"""A logged model loads in a fresh process with no zoo import, and says what it needs."""

import importlib.metadata
import os
import site
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np

from zoo.tracking import load_keras_model

ROOT = Path(__file__).resolve().parents[2]

WITHOUT_ZOO = """
import sys
import mlflow
import numpy as np

batch, out, *uris = sys.argv[1:]
try:
    import zoo
except ModuleNotFoundError:
    pass
else:
    raise SystemExit(f"zoo is importable here, from {zoo.__file__}")
for index, uri in enumerate(uris):
    model = mlflow.pyfunc.load_model(uri)
    np.save(f"{out}{index}.npy", model.predict(np.load(batch)))
    print(uri, "layer", type(model.get_raw_model().get_layer("local")).__name__)
print("zoo from", sys.modules["zoo"].__file__)
"""

WITH_ZOO_INSTALLED = """
import sys
import keras
import mlflow
import numpy as np

batch, out, *uris = sys.argv[1:]
for index, uri in enumerate(uris):
    model = mlflow.keras.load_model(uri)
    np.save(f"{out}{index}.npy", model.predict(np.load(batch), verbose=0))
    layer = model.get_layer("local")
    print(uri, "layer", type(layer).__module__, type(layer).__name__)
local = mlflow.artifacts.download_artifacts(uris[0])
print("keras.saving", type(keras.saving.load_model(f"{local}/data/model.keras")).__name__)
"""


def _batch(tmp_path, count=5):
    batch = np.random.default_rng(0).uniform(size=(count, 8, 8, 1)).astype("float32")
    np.save(tmp_path / "batch.npy", batch)
    return batch


def _run_fresh(script, tmp_path, uris, *python_flags, env=None):
    command = [sys.executable, *python_flags, "-c", script, tmp_path / "batch.npy", tmp_path / "p"]
    result = subprocess.run(
        [*command, *uris], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def _assert_predictions(tmp_path, uris, expected):
    for index, uri in enumerate(uris):
        np.testing.assert_allclose(
            np.load(tmp_path / f"p{index}.npy"), expected, rtol=1e-6, atol=1e-7, err_msg=uri
        )


def test_keras_flavour_loads_in_a_fresh_process_with_no_zoo_import(trained, tracking_uri, tmp_path):
    """Wherever zoo is installed, Keras knows its layers (zoo/autoload.py): no import needed."""
    batch = _batch(tmp_path)
    expected = load_keras_model(trained.model_uri).predict(batch, verbose=0)
    uris = (trained.model_uri, trained.registered_uri)
    stdout = _run_fresh(WITH_ZOO_INSTALLED, tmp_path, uris)
    for uri in uris:
        assert f"{uri} layer zoo.layers.locally_connected LocallyConnected2D" in stdout, stdout
    assert "keras.saving Functional" in stdout, stdout
    _assert_predictions(tmp_path, uris, expected)


def test_pyfunc_loads_where_zoo_is_not_installed(trained, tracking_uri, tmp_path):
    """The model's own code/ folder is enough: `python -S` with only site-packages on the
    path sees none of the .pth files (neither the editable checkout nor zoo-autoload.pth)."""
    batch = _batch(tmp_path)
    expected = load_keras_model(trained.model_uri).predict(batch, verbose=0)
    uris = (trained.model_uri, trained.registered_uri)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(site.getsitepackages())}
    stdout = _run_fresh(WITHOUT_ZOO, tmp_path, uris, "-S", env=env)
    for uri in uris:
        assert f"{uri} layer LocallyConnected2D" in stdout
    # zoo came with the model (its code/ folder), not from this checkout or site-packages
    assert "/code/zoo/__init__.py" in stdout, stdout
    _assert_predictions(tmp_path, uris, expected)


def test_keras_flavour_is_the_same_model(trained, tracking_uri, tmp_path):
    batch = _batch(tmp_path)
    keras_model = mlflow.keras.load_model(trained.model_uri)
    pyfunc_model = mlflow.pyfunc.load_model(trained.model_uri)
    np.testing.assert_allclose(
        pyfunc_model.predict(batch), keras_model.predict(batch, verbose=0), rtol=1e-6
    )


def test_model_pins_zoos_dependencies_and_ships_its_code(trained, tracking_uri):
    local = Path(mlflow.artifacts.download_artifacts(trained.model_uri))
    requirements = set(local.joinpath("requirements.txt").read_text().split())
    for name in ("tensorflow", "keras", "mlflow", "numpy", "hydra-core", "scikit-learn"):
        assert f"{name}=={importlib.metadata.version(name)}" in requirements
    assert not any(line.startswith(("zoo", "tf-keras", "pytest")) for line in requirements)
    layer = "zoo/layers/locally_connected.py"
    assert local.joinpath("code", layer).read_bytes() == ROOT.joinpath(layer).read_bytes()
    assert not list(local.joinpath("code").rglob("__pycache__"))


def test_logged_model_holds_weights_not_optimizer_slots(trained, tracking_uri):
    model = mlflow.keras.load_model(trained.model_uri)
    assert not model.compiled and getattr(model, "optimizer", None) is None
    local = Path(mlflow.artifacts.download_artifacts(trained.model_uri))
    parameters = mlflow.MlflowClient().get_run(trained.run_id).data.metrics["parameters"]
    weights_bytes = 4 * parameters  # float32; Adam's two slots would make it three times that
    assert local.joinpath("data", "model.keras").stat().st_size < 1.2 * weights_bytes + 50_000
