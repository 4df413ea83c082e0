"""`train.py` with one fault injected, for the fault-tolerance tests.

    ZOO_FAULT=kill@17 python tests/training/faulty_train.py <overrides>

Faults, at global optimizer step N (1-based, counted over all epochs):
    kill@N           SIGKILL right after step N, before its checkpoint (if any) is written
    term@N           SIGTERM right after step N (preemption)
    nan@N            a weight set to NaN before step N, so step N's loss is NaN
    kill-in-write@N  SIGKILL halfway through writing checkpoint N's temporary file
Without ZOO_FAULT this is `train.py` itself.
"""

import io
import os
import runpy
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def install(kind: str, at: int) -> None:
    import numpy as np

    from zoo.training import checkpoint, state

    def kill() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    if kind in ("kill", "term"):
        original = state.TrainingState.on_train_batch_end

        def on_train_batch_end(self, batch, logs=None):
            if self.global_step + 1 == at:
                if kind == "kill":
                    kill()
                os.kill(os.getpid(), signal.SIGTERM)
            original(self, batch, logs)

        state.TrainingState.on_train_batch_end = on_train_batch_end
    elif kind == "nan":

        def on_train_batch_begin(self, batch, logs=None):
            if self.global_step + 1 == at:
                kernel = self.model.trainable_variables[0]
                kernel.assign(np.full(kernel.shape, np.nan, kernel.dtype))

        state.TrainingState.on_train_batch_begin = on_train_batch_begin
    elif kind == "kill-in-write":
        write_file = checkpoint._write_file

        def half_then_kill(path, encode):
            if checkpoint.step_of(path) == at:
                buffer = io.BytesIO()
                encode(buffer)
                data = buffer.getvalue()
                temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                temporary.write_bytes(data[: len(data) // 2])
                kill()
            write_file(path, encode)

        checkpoint._write_file = half_then_kill
    else:
        raise SystemExit(f"unknown fault {kind!r}")


if __name__ == "__main__":
    if os.environ.get("ZOO_FAULT"):
        kind, at = os.environ["ZOO_FAULT"].split("@")
        install(kind, int(at))
    sys.path.insert(0, str(ROOT))
    sys.argv[0] = str(ROOT / "train.py")
    runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
