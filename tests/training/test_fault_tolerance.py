"""Fault injection: `train.py` killed, preempted, poisoned with NaN, its checkpoint damaged.

Each run is a real `train.py` process (through `faulty_train.py`, which injects one fault at
a given optimizer step); each outcome is compared with one uninterrupted reference run of
the same config (final weights, optimizer state and per-epoch metrics) or with the error
expected, and the MLflow store is checked: run status, tags, one value per metric step.
"""

import os
import re
import shlex
import signal
import subprocess
import sys

import numpy as np
import pytest
from entry_points import run_script
from mlflow.tracking import MlflowClient

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
def reference(tmp_path_factory):
    store = tmp_path_factory.mktemp("reference")
    code, output = train(store)
    assert code == 0, output[-3000:]
    client, (run,) = runs(store)
    assert run.data.tags["zoo.config_digest"]
    assert re.search(rf"to resume it if it stops: .*resume={run.info.run_id}", output)
    return {"state": final_state(run), "metrics": epoch_metrics(client, run.info.run_id)}


def test_sigkill_twice_and_sigterm_then_resume_ends_as_uninterrupted(tmp_path, reference):
    rng = np.random.default_rng(11)  # seeded: a failure names steps that reproduce it
    first, second, third = sorted(rng.choice(np.arange(2, EPOCHS * STEPS_PER_EPOCH), 3, False))

    code, output = train(tmp_path, fault=f"kill@{first}")
    assert code == -signal.SIGKILL, output[-3000:]
    _, (run,) = runs(tmp_path)
    assert run.info.status == "RUNNING"  # what MLflow alone leaves behind

    code, output = train(tmp_path, "resume=auto", fault=f"kill@{second}")
    assert code == -signal.SIGKILL, output[-3000:]
    _, (killed,) = runs(tmp_path)  # one run: resumed, not a new one
    assert killed.data.tags["zoo.killed_reason"].endswith("is gone")
    assert int(killed.data.tags["zoo.last_checkpoint_step"]) == first // EVERY * EVERY

    code, output = train(tmp_path, "resume=auto", fault=f"term@{third}")
    assert code == 128 + signal.SIGTERM, output[-3000:]
    _, (stopped,) = runs(tmp_path)
    assert stopped.info.status == "KILLED"
    assert stopped.data.tags["interrupted"] == "SIGTERM"
    assert int(stopped.data.tags["zoo.last_checkpoint_step"]) == third  # saved at that step
    assert "Marked run" in output  # the second process's run was reaped at start

    command = resume_command(output)
    assert f"resume={run.info.run_id}" in command
    finished = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, (finished.stdout + finished.stderr)[-3000:]
    resumed_at = f"epoch {third // STEPS_PER_EPOCH}, step {third % STEPS_PER_EPOCH} of"
    assert resumed_at in finished.stdout + finished.stderr
    _, (done,) = runs(tmp_path)
    assert_same_training(tmp_path, done, reference)


def test_kill_in_checkpoint_write_and_damaged_checkpoint_fall_back(tmp_path, reference):
    at = STEPS_PER_EPOCH + 2 * EVERY  # epoch 1, step 10: checkpoints 20 and 25 are complete
    code, output = train(tmp_path, fault=f"kill-in-write@{at}")
    assert code == -signal.SIGKILL, output[-3000:]
    _, (run,) = runs(tmp_path)
    directory = run.data.tags["zoo.checkpoint_dir"]
    files = checkpoint.list_checkpoints(directory)
    assert [checkpoint.step_of(p) for p in files] == [at - EVERY, STEPS_PER_EPOCH]
    assert any(p.name.endswith(".tmp") for p in os.scandir(directory))  # the half-written one
    newest = files[0]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the newest complete checkpoint
    newest.write_bytes(bytes(data))

    code, output = train(tmp_path, f"resume={run.info.run_id}")
    assert code == 0, output[-3000:]
    assert re.search(rf"Damaged checkpoint: .*{newest.name} fails its sha256 check", output)
    assert f"epoch 1, step 0 of {STEPS_PER_EPOCH}" in output  # fell back to step 20
    _, (done,) = runs(tmp_path)
    assert_same_training(tmp_path, done, reference)


def test_nan_loss_fails_the_run_and_writes_nothing_non_finite(tmp_path):
    at = 12
    code, output = train(tmp_path, fault=f"nan@{at}")
    assert code == 1, output[-3000:]
    assert f"non-finite loss (nan) at epoch 0 step {at}" in output
    client, (run,) = runs(tmp_path)
    assert run.info.status == "FAILED"
    assert run.data.tags["non_finite"] == f"epoch 0 step {at}"
    files = checkpoint.list_checkpoints(run.data.tags["zoo.checkpoint_dir"])
    assert [checkpoint.step_of(p) for p in files] == [10, 5]
    for path in files:
        assert all(np.isfinite(a).all() for a in checkpoint.read(path).arrays.values())
    assert not client.list_artifacts(run.info.run_id, "model")
    assert "loss" not in run.data.metrics  # no epoch ended, so none was logged
