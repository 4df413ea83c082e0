"""Installing zoo teaches Keras its layers: no `import zoo` before loading a model with them."""

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from zoo import autoload
from zoo.layers import LocallyConnected2D

PROBE = """
import importlib.util
import sys

def zoo_layers():
    return "zoo.layers" in sys.modules

before = zoo_layers()
importlib.util.find_spec("keras")  # asked, not imported: nothing may happen yet
asked = zoo_layers()
import keras
cls = keras.saving.get_registered_object("zoo>LocallyConnected2D")
print(before, asked, zoo_layers(), cls.__module__ if cls else None, "tensorflow" in sys.modules)
"""

LOAD = """
import sys
import keras
try:
    model = keras.saving.load_model(sys.argv[1])
except TypeError as err:
    print("TypeError", str(err).splitlines()[0][:120])
else:
    print("loaded", type(model.layers[1]).__name__)
"""


def _run(script, *args, **env):
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_the_installed_distribution_ships_the_hook():
    pth = next(f for f in importlib.metadata.files("zoo") if f.name == "zoo-autoload.pth")
    text = Path(pth.locate()).read_text()
    assert text.strip() == "import zoo.autoload; zoo.autoload.install()"
    assert Path(pth.locate()).parent.name == "site-packages"


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_importing_keras_registers_zoo_layers_and_not_before(backend):
    before, asked, after, module, tensorflow = _run(PROBE, KERAS_BACKEND=backend).split()
    assert (before, asked, after) == ("False", "False", "True")
    assert module == "zoo.layers.locally_connected"
    # On JAX the registration imports no TensorFlow (zoo.layers uses keras.ops only)
    assert tensorflow == str(backend == "tensorflow")


def test_a_model_file_loads_in_a_fresh_process_and_the_off_switch_shows_why(tmp_path):
    inputs = keras.Input((6, 6, 2))
    model = keras.Model(inputs, LocallyConnected2D(3, 3)(inputs))
    model.save(tmp_path / "lc.keras")
    assert _run(LOAD, tmp_path / "lc.keras") == "loaded LocallyConnected2D"
    off = _run(LOAD, tmp_path / "lc.keras", ZOO_AUTOLOAD="0")
    assert off.startswith("TypeError"), off


def test_a_zoo_that_cannot_register_warns_and_keeps_keras(monkeypatch):
    finder = autoload._AfterKeras()
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    monkeypatch.setattr(autoload, "REGISTERS", "zoo.no_such_module")
    with pytest.warns(RuntimeWarning, match=r"zoo\.no_such_module.*import zoo\.no_such_module"):
        autoload._register(finder)
    assert finder not in sys.meta_path


def test_installed_after_keras_it_registers_at_once_and_warns_on_failure(monkeypatch):
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    autoload.install()  # keras is already imported in this process: nothing to wait for
    assert not any(isinstance(f, autoload._AfterKeras) for f in sys.meta_path)
    assert keras.saving.get_registered_object("zoo>LocallyConnected2D") is LocallyConnected2D
    monkeypatch.setattr(autoload, "REGISTERS", "zoo.no_such_module")
    with pytest.warns(RuntimeWarning, match=r"zoo\.no_such_module"):
        autoload.install()
