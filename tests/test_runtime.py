import os
import subprocess
import sys

from zoo.runtime import configure_tensorflow

ONEDNN = "from tensorflow.python.util import _pywrap_util_port as port; print(port.IsMklEnabled())"


def test_defaults_fill_only_what_the_environment_leaves_unset(monkeypatch):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    configure_tensorflow()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def _onednn_enabled(prelude: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", f"{prelude}{ONEDNN}"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def test_tensorflow_loaded_after_configure_uses_onednn_unless_the_user_says_no():
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    prelude = "from zoo.runtime import configure_tensorflow; configure_tensorflow(); "
    assert _onednn_enabled(prelude, env) == "True"
    assert _onednn_enabled(prelude, {**env, "TF_ENABLE_ONEDNN_OPTS": "0"}) == "False"
