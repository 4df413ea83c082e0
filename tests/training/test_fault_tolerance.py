"""Fault injection: `train.py` killed, preempted, poisoned with NaN, its checkpoint damaged.

Each run is a real `train.py` process (through `faulty_train.py`, which injects one fault at
a given optimizer step); each outcome is compared with one uninterrupted reference run of
the same config (final weights, optimizer state and per-epoch metrics) or with the error
expected, and the MLflow store is checked: run status, tags, one value per metric step.
"""

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from entry_points import run_script
from mlflow.tracking import MlflowClient
from PIL import Image

from zoo.training import checkpoint

EPOCHS, STEPS_PER_EPOCH, EVERY = 3, 20, 5  # digits: 1,257 train images / 64 = 20 batches
TINY = (
    "model=mlp",
    "data=digits",
    "baselines=none",
    f"trainer.epochs={EPOCHS}",
    "trainer.batch_size=64",
    "trainer.deterministic=true",
    f"trainer.checkpoint.every_steps={EVERY}",
    "trainer.checkpoint.keep_finished=true",  # the final state is compared with the reference
    "tracking.log_model=false",
    "trainer.verbose=0",
)
FAULTY = "tests/training/faulty_train.py"


def train(store, *overrides, fault=None):
    """`(exit code, output)` of one train.py process on `store`, with `fault` injected."""
    env = dict(os.environ)
    os.environ.pop("ZOO_FAULT", None)
    if fault:
        os.environ["ZOO_FAULT"] = fault
    try:
        return run_script(store, FAULTY, *TINY, *overrides)
    finally:
        os.environ.clear()
        os.environ.update(env)


def runs(store):
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    experiment = client.get_experiment_by_name("tests")
    return client, client.search_runs([experiment.experiment_id], order_by=["start_time ASC"])


def final_state(run) -> dict[str, np.ndarray]:
    """Model, optimizer and metric variables of the run's newest intact checkpoint."""
    latest = checkpoint.read_latest(run.data.tags["zoo.checkpoint_dir"])
    assert latest is not None
    assert latest.step == EPOCHS * STEPS_PER_EPOCH, latest.path
    return {k: v for k, v in latest.arrays.items() if k.split("/")[0] in ("model", "optimizer")}


def epoch_metrics(client, run_id) -> dict[str, list[float]]:
    """Every metric of the run, checked: one value per step; epoch metrics at steps 0..E-1."""
    metrics = {}
    for name in client.get_run(run_id).data.metrics:
        history = client.get_metric_history(run_id, name)
        steps = [m.step for m in history]
        assert len(steps) == len(set(steps)), (name, sorted(steps))
        if name in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
            assert sorted(steps) == list(range(EPOCHS)), (name, sorted(steps))
            metrics[name] = [m.value for m in sorted(history, key=lambda m: m.step)]
    return metrics


def assert_same_training(store, run, reference):
    client, _ = runs(store)
    assert run.info.status == "FINISHED"
    state, expected = final_state(run), reference["state"]
    assert state.keys() == expected.keys()
    worst = max(float(np.max(np.abs(state[k] - expected[k]))) for k in expected)
    assert worst <= 1e-6, worst
    metrics = epoch_metrics(client, run.info.run_id)
    assert metrics.keys() == reference["metrics"].keys()
    for name, values in metrics.items():
        np.testing.assert_allclose(values, reference["metrics"][name], rtol=0, atol=1e-6)


def resume_command(output: str) -> list[str]:
    """The resume command train.py printed, to run as printed."""
    line = re.findall(r"to resume it if it stops: (.+)", output)[-1]
    command = shlex.split(line)
    return [sys.executable, *command[1:]]


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    """An MLflow SQLite file with its tables made: each test copies it, no process waits for
    MLflow's schema migrations."""
    path = tmp_path_factory.mktemp("empty") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").create_experiment("tests")
    return path


def new_store(directory, empty_store):
    shutil.copy(empty_store, directory / "mlflow.db")
    return directory


@pytest.fixture(scope="module")
def reference(tmp_path_factory, empty_store):
    store = new_store(tmp_path_factory.mktemp("reference"), empty_store)
    code, output = train(store)
    assert code == 0, output[-3000:]
    client, (run,) = runs(store)
    assert run.data.tags["zoo.config_digest"]
    assert re.search(rf"to resume it if it stops: .*resume={run.info.run_id}", output)
    return {"state": final_state(run), "metrics": epoch_metrics(client, run.info.run_id)}


@pytest.mark.slow
def test_killed_preempted_and_damaged_runs_resume_to_the_uninterrupted_result(
    tmp_path, reference, empty_store
):
    """SIGKILL at two seeded random steps, SIGKILL inside a checkpoint write with the newest
    complete checkpoint then damaged, SIGTERM; then the printed resume command."""
    store = new_store(tmp_path, empty_store)
    rng = np.random.default_rng(11)  # seeded: a failure names steps that reproduce it
    total = EPOCHS * STEPS_PER_EPOCH
    first, second = sorted(rng.choice(np.arange(EVERY + 1, total - 4 * EVERY), 2, replace=False))
    in_write = (second // EVERY + 2) * EVERY  # a checkpoint step after the second kill
    term = int(rng.integers(in_write + 1, total))  # before the last step

    code, output = train(store, fault=f"kill@{first}")
    assert code == -signal.SIGKILL, output[-3000:]
    _, (run,) = runs(store)
    assert run.info.status == "RUNNING"  # what MLflow alone leaves behind

    code, output = train(store, "resume=auto", fault=f"kill@{second}")
    assert code == -signal.SIGKILL, output[-3000:]
    _, (killed,) = runs(store)  # one run: resumed, not a new one
    assert killed.data.tags["zoo.killed_reason"].endswith("is gone")
    saved = (first - 1) // EVERY * EVERY  # killed after step `first`, before its checkpoint
    assert int(killed.data.tags["zoo.last_checkpoint_step"]) == saved
    assert f"epoch {saved // STEPS_PER_EPOCH}, step {saved % STEPS_PER_EPOCH} of" in output

    code, output = train(store, f"resume={run.info.run_id}", fault=f"kill-in-write@{in_write}")
    assert code == -signal.SIGKILL, output[-3000:]
    directory = run.data.tags["zoo.checkpoint_dir"]
    files = checkpoint.list_checkpoints(directory)
    assert [checkpoint.step_of(p) for p in files] == [in_write - EVERY, in_write - 2 * EVERY]
    assert any(p.name.endswith(".tmp") for p in os.scandir(directory))  # the half-written one
    newest = files[0]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the newest complete checkpoint
    newest.write_bytes(bytes(data))

    code, output = train(store, "resume=auto", fault=f"term@{term}")
    assert code == 128 + signal.SIGTERM, output[-3000:]
    assert re.search(rf"Damaged checkpoint: .*{newest.name} fails its sha256 check", output)
    fallback = in_write - 2 * EVERY
    assert f"epoch {fallback // STEPS_PER_EPOCH}, step {fallback % STEPS_PER_EPOCH} of" in output
    _, (stopped,) = runs(store)
    assert stopped.info.status == "KILLED"
    assert stopped.data.tags["interrupted"] == "SIGTERM"
    assert int(stopped.data.tags["zoo.last_checkpoint_step"]) == term  # saved at that step
    assert "Stopped by SIGTERM" in output

    command = resume_command(output)
    assert command[-1] == f"resume={run.info.run_id}"
    finished = subprocess.run(command, cwd=store, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, (finished.stdout + finished.stderr)[-3000:]
    resumed_at = f"epoch {term // STEPS_PER_EPOCH}, step {term % STEPS_PER_EPOCH} of"
    assert resumed_at in finished.stdout + finished.stderr
    _, (done,) = runs(store)
    assert_same_training(store, done, reference)


@pytest.mark.slow
def test_nan_loss_fails_the_run_and_writes_nothing_non_finite(tmp_path, empty_store):
    store = new_store(tmp_path, empty_store)
    at = 12
    code, output = train(store, fault=f"nan@{at}")
    assert code == 1, output[-3000:]
    # The NaN kernel makes the loss NaN at step `at`, unless the kernels map NaN through
    # ReLU to 0 (oneDNN can): then the weights check of the next checkpoint (step 15) stops it.
    caught = {
        f"non-finite loss (nan) at epoch 0 step {at}": at,
        "non-finite weights at epoch 0 step 15": 15,
    }
    (step,) = [step for message, step in caught.items() if message in output] or [None]
    assert step is not None, output[-3000:]
    client, (run,) = runs(store)
    assert run.info.status == "FAILED"
    assert run.data.tags["non_finite"] == f"epoch 0 step {step}"
    files = checkpoint.list_checkpoints(run.data.tags["zoo.checkpoint_dir"])
    assert [checkpoint.step_of(p) for p in files] == [10, 5]
    for path in files:
        assert all(np.isfinite(a).all() for a in checkpoint.read(path).arrays.values())
    assert not client.list_artifacts(run.info.run_id, "model")
    assert "loss" not in run.data.metrics  # no epoch ended, so none was logged


def test_a_corrupt_image_stops_train_py_before_training_with_one_line(tmp_path, empty_store):
    store = new_store(tmp_path, empty_store)
    pixels = np.random.default_rng(0).integers(0, 255, (8, 8), np.uint8)
    for name in ("cats/1.png", "cats/2.png", "dogs/1.png", "dogs/2.png"):
        (tmp_path / "faces" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(tmp_path / "faces" / name)
    bad = tmp_path / "faces" / "dogs" / "2.png"
    bad.write_bytes(bad.read_bytes()[:-30])  # truncated
    path = f"data.source.path={tmp_path / 'faces'}"
    code, output = run_script(store, "train.py", "model=mlp", "data=folder", path, "baselines=none")
    assert code == 1, output[-3000:]
    (line,) = [line for line in output.splitlines() if str(bad) in line]
    assert f"{bad}: cannot be decoded as an image" in line
    assert line.endswith("skip bad files with data.source.skip_bad=true (1 found)")
    _, started = runs(store)
    assert started == []  # no run was opened: nothing half-done


@pytest.mark.slow
def test_a_run_on_packed_data_killed_resumes_to_the_in_memory_result(
    tmp_path, reference, empty_store
):
    """digits packed by pack.py (ArrayRecord shards), SIGKILL mid-epoch, `resume=auto`: the
    weights, optimizer state and metrics of the uninterrupted run on digits in memory."""
    packed = tmp_path / "digits-packed"
    command = [
        sys.executable,
        "pack.py",
        "data=digits",
        f"out={packed}",
        "workers=1",
        "progress=false",
        f"hydra.run.dir={tmp_path / 'pack'}",
    ]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    made = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, (made.stdout + made.stderr)[-3000:]
    store = new_store(tmp_path, empty_store)
    on_pack = ("data=packed", f"data.source.path={packed}")
    killed_at = STEPS_PER_EPOCH + 7  # mid-epoch 1, between checkpoints
    code, output = train(store, *on_pack, fault=f"kill@{killed_at}")
    assert code == -signal.SIGKILL, output[-3000:]
    code, output = train(store, *on_pack, "resume=auto")
    assert code == 0, output[-3000:]
    saved = (killed_at - 1) // EVERY * EVERY
    assert f"epoch {saved // STEPS_PER_EPOCH}, step {saved % STEPS_PER_EPOCH} of" in output
    _, (done,) = runs(store)
    assert_same_training(store, done, reference)
