"""Logged models: how a zoo Keras model is stored in MLflow, and the loader that serves it.

Why a `python_function` loader of our own, shipped inside the model (`code/zoo`):
MLflow 3's Keras flavour loads `data/model.keras` with `keras.saving.load_model` and
nothing else — its `log_model` takes no `code_paths` and its loader imports no user
code — and Keras, meeting a class it does not know, only imports modules of its own
packages (keras, keras_hub, keras_cv, keras_nlp). Two mechanisms cover the two cases:

- where zoo is installed, `zoo-autoload.pth` registers the layers whenever Keras is
  imported (`zoo.autoload`), so MLflow's `keras` flavour, kept unchanged, loads the model
  in any fresh process;
- where it is not, the model's `python_function` flavour names this module as its loader,
  with a copy of the `zoo` package in the model's `code/` folder (MLflow's `code`
  mechanism): `mlflow.pyfunc.load_model`, `mlflow models serve` and `spark_udf` put
  `code/` on `sys.path`, import this module — which registers the layers — and load the
  Keras model. `get_raw_model()` of the loaded pyfunc model is the Keras model itself.

The copy is also how the model declares zoo as a requirement: the `zoo` on PyPI is an
unrelated project, so a `zoo==<version>` pin would install the wrong package. The pip
requirements are zoo's own dependencies, pinned to the versions that trained the model,
so `mlflow models serve --env-manager virtualenv` rebuilds the same environment.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
from pathlib import Path
from typing import Any

import keras
import mlflow
import mlflow.keras
import numpy as np
from mlflow.models import Model, infer_signature
from mlflow.models.model import MLMODEL_FILE_NAME
from packaging.requirements import Requirement

import zoo
import zoo.layers  # registers LocallyConnected1D/2D with Keras (the code/ copy has no .pth)

ARTIFACT_PATH = "model"
CODE_DIR = "code"


def pip_requirements() -> list[str]:
    """zoo's dependencies (not its extras), pinned to the installed versions."""
    try:
        declared = importlib.metadata.requires("zoo") or []
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(
            "zoo is not installed, so its dependencies are unknown; install it with "
            "`pip install -e .` in the repository before logging models."
        ) from None
    names = [Requirement(line).name for line in declared if Requirement(line).marker is None]
    return [f"{name}=={importlib.metadata.version(name)}" for name in names]


def save_model(
    model: keras.Model, path: str, mlflow_model: Model | None = None, **kwargs: Any
) -> None:
    """MLflow's Keras flavour, plus our `python_function` loader and `code/zoo` (see above).

    The flavour-module interface `mlflow.models.Model.log` calls; `kwargs` go to
    `mlflow.keras.save_model` (signature, pip_requirements, ...).
    """
    mlflow_model = mlflow_model or Model()
    mlflow.keras.save_model(model, path, mlflow_model=mlflow_model, **kwargs)
    shutil.copytree(
        Path(zoo.__file__).parent,
        Path(path, CODE_DIR, "zoo"),
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pth"),
    )
    python_function = mlflow_model.flavors[mlflow.pyfunc.FLAVOR_NAME]
    python_function.update(loader_module=__name__, code=CODE_DIR)
    mlflow_model.save(str(Path(path, MLMODEL_FILE_NAME)))


def inference_copy(model: keras.Model) -> keras.Model:
    """`model`'s architecture and weights without its compile state.

    A compiled model's `.keras` file also holds the optimizer's slots: twice the weights
    with SGD momentum, three times with Adam (DeepFace on ORL: 0.41 GB of weights, 0.82 GB
    with the paper's SGD). A logged model is for inference; the training checkpoint
    (`outputs/.../checkpoints/`) is the copy that can resume training.
    """
    copy = type(model).from_config(model.get_config())  # clone_model would compile it too
    copy.set_weights(model.get_weights())
    return copy


def log_model(
    model: keras.Model, example: np.ndarray, registered_model_name: str | None = None
) -> str:
    """Log `model` with an input/output signature and pinned requirements; returns its URI.

    `registered_model_name` also registers it (`models:/<name>/<version>`).
    """
    signature = infer_signature(example, model.predict(example, verbose=0))
    info = Model.log(
        artifact_path=None,
        name=ARTIFACT_PATH,
        flavor=sys.modules[__name__],  # this module's save_model
        flavor_name=mlflow.keras.FLAVOR_NAME,
        model=inference_copy(model),
        signature=signature,
        registered_model_name=registered_model_name,
        pip_requirements=pip_requirements(),
    )
    return info.model_uri


# A model from elsewhere never runs code while loading (Keras' default, stated so it stays).
SAFE = {"safe_mode": True}


def load_keras_model(model_uri: str) -> keras.Model:
    """The Keras model behind an MLflow model URI (`runs:/<id>/model`, `models:/<name>/<v>`)."""
    try:
        return mlflow.keras.load_model(model_uri, load_model_kwargs=SAFE)
    except (OSError, mlflow.exceptions.MlflowException) as err:
        raise ValueError(
            f"model_uri={model_uri!r} could not be loaded ({str(err).splitlines()[0]}); "
            "check the run has a logged model (artifact 'model', tracking.log_model=true)."
        ) from None


class KerasPredictor:
    """What `mlflow.pyfunc.load_model` wraps: the Keras model's `predict`, without progress bars.

    MLflow has already checked the input against the logged signature (its shape and
    dtype), so the data arrives as a batch of model inputs.
    """

    def __init__(self, model: keras.Model):
        self.model = model

    def get_raw_model(self) -> keras.Model:
        return self.model

    def predict(self, data: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        return self.model.predict(np.asarray(data, dtype="float32"), verbose=0)


def _load_pyfunc(path: str) -> KerasPredictor:
    """Called by `mlflow.pyfunc.load_model` with the model's local directory."""
    return KerasPredictor(mlflow.keras.load_model(path, load_model_kwargs=SAFE))
