"""Keras learns zoo's layers as it is imported, in every process of an environment with zoo.

Keras 3 deserialises a class it does not know only if the class was registered first
(`keras.saving.register_keras_serializable`, which `import zoo.layers` does); it imports
modules of its own packages only (keras, keras_hub, keras_cv, keras_nlp). So a `.keras`
file with a `zoo>LocallyConnected2D` in it — a logged model loaded with
`mlflow.keras.load_model`, `keras.saving.load_model`, TensorBoard, a notebook — fails in a
process that never imported zoo. And MLflow's Keras loader runs no user code at all.

zoo's wheel therefore installs `zoo-autoload.pth` (pyproject.toml, `force-include`), whose
one line, run by `site` when Python starts, calls `install()`: it puts a finder in front of
`sys.meta_path` that waits for `keras`, lets the usual finder find and run it, then imports
`zoo.layers` — about 12 ms on top of Keras' seconds, nothing at all in a process that never
imports Keras (the finder only compares a module name). `ZOO_AUTOLOAD=0` turns it off for a
process that wants Keras without zoo's classes.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings

# No importlib.abc, typing or types here: their imports alone cost ~16 ms at every start.

WATCHED = "keras"
REGISTERS = "zoo.layers"


class _AfterKeras:  # a meta path finder (importlib.abc.MetaPathFinder's protocol)
    """Finds nothing itself: it hands `keras`'s spec back with a loader that also registers."""

    def find_spec(self, name: str, path=None, target=None):
        if name != WATCHED:
            return None
        spec = _spec_from_the_other_finders(self, name, path, target)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run_keras = loader.exec_module

        def exec_module(module) -> None:
            run_keras(module)
            _register(self)

        # `find_spec` may be asked without an import following (importlib.util.find_spec),
        # so the finder stays until a `keras` module has really run.
        loader.exec_module = exec_module
        return spec


def _spec_from_the_other_finders(finder, name, path, target):
    for other in sys.meta_path:
        if other is not finder and hasattr(other, "find_spec"):
            spec = other.find_spec(name, path, target)
            if spec is not None:
                return spec
    return None


def _register(finder: _AfterKeras | None) -> None:
    if finder is not None and finder in sys.meta_path:
        sys.meta_path.remove(finder)
    try:
        importlib.import_module(REGISTERS)
    except Exception as err:  # Keras itself must import whatever is wrong with zoo
        warnings.warn(
            f"zoo's layers could not be registered with Keras ({type(err).__name__}: {err}); "
            f"models with locally connected layers load only after `import {REGISTERS}` "
            "works in this environment.",
            RuntimeWarning,
            stacklevel=2,
        )


def install() -> None:
    """Register zoo's layers when Keras is imported (see the module's docstring)."""
    if os.environ.get("ZOO_AUTOLOAD", "1") == "0":
        return
    if WATCHED in sys.modules:  # Keras came first (install() called late): register now
        _register(None)
        return
    if not any(isinstance(finder, _AfterKeras) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterKeras())
