"""TensorFlow's CUDA probe hidden on CPU-only machines; Keras' verbosity for pipes."""

import subprocess
import sys

import pytest

from zoo.console import START_UP_MARKERS, has_nvidia_device, keras_verbosity

QUIET = "from zoo.console import load_tensorflow_quietly; load_tensorflow_quietly()"
AFTER = "import sys; print('still talking', file=sys.stderr)"


def _stderr(code: str) -> str:
    configure = "from zoo.runtime import configure_tensorflow; configure_tensorflow()"
    env_code = f"{configure}; {code}; {AFTER}"
    result = subprocess.run(
        [sys.executable, "-c", env_code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


@pytest.mark.skipif(has_nvidia_device(), reason="the probe lines only appear without a GPU")
def test_cuda_probe_lines_are_hidden_and_stderr_still_works():
    # Without it, `import tensorflow; tf.config.list_physical_devices()` prints "failed call
    # to cuInit ... (303)" and "Could not find cuda drivers" here, TF_CPP_MIN_LOG_LEVEL=2 or not.
    quiet = _stderr(QUIET)
    assert not [marker for marker in START_UP_MARKERS if marker in quiet], quiet
    assert quiet.endswith("still talking\n")


def test_keras_verbosity_is_one_line_per_epoch_when_not_a_terminal(monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert keras_verbosity("auto") == 2
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert keras_verbosity("auto") == 1
    assert [keras_verbosity(v) for v in (0, 1, 2)] == [0, 1, 2]
    with pytest.raises(ValueError, match=r"trainer.verbose must be auto, 0, 1 or 2, got 'yes'"):
        keras_verbosity("yes")
