"""Run lifecycle on a real SQLite store: dead runs reaped, evaluations never re-open training
runs, exports that cannot run fail before any work."""

import os
import socket
import subprocess
import sys
import time

import mlflow
import numpy as np
import pytest

from zoo import export
from zoo.tracking import lifecycle, runs
from zoo.training import checkpoint
from zoo.training.resume import last_checkpointed_step


@pytest.fixture
def store(tmp_path):
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    client = mlflow.MlflowClient()
    yield client, client.create_experiment("tests")
    mlflow.set_tracking_uri(previous)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_dead_runs_are_marked_killed_live_ones_left_alone(store, tmp_path):
    client, experiment = store
    directory = tmp_path / "state"
    checkpoint.write(directory, 35, {"w": np.zeros(2)}, {})
    host = socket.gethostname()
    old, now = str(time.time() - 7200), str(time.time())
    owners = {
        "dead": {"zoo.host": host, "zoo.pid": str(_dead_pid()), "zoo.heartbeat": old},
        "alive": lifecycle.process_tags(),
        "silent_elsewhere": {"zoo.host": "elsewhere", "zoo.pid": "1", "zoo.heartbeat": old},
        "fresh_elsewhere": {"zoo.host": "elsewhere", "zoo.pid": "1", "zoo.heartbeat": now},
        "not_ours": {},
    }
    ids = {}
    for name, tags in owners.items():
        tags = {**tags, "zoo.checkpoint_dir": str(directory), "zoo.config_digest": "abc"}
        ids[name] = client.create_run(experiment, tags=tags, run_name=name).info.run_id

    reaped = lifecycle.reap_dead_runs(last_checkpointed_step, stale_after_s=3600)

    assert sorted(reaped) == sorted([ids["dead"], ids["silent_elsewhere"]])
    dead = client.get_run(ids["dead"])
    assert dead.info.status == "KILLED"
    assert dead.data.tags["zoo.killed_reason"].endswith("is gone")
    assert dead.data.tags["zoo.last_checkpoint_step"] == "35"
    assert dead.info.end_time == int(float(old) * 1000)  # when it was last heard of
    silent = client.get_run(ids["silent_elsewhere"])
    assert silent.data.tags["zoo.killed_reason"].startswith("no heartbeat from elsewhere")
    for name in ("alive", "fresh_elsewhere", "not_ours"):
        assert client.get_run(ids[name]).info.status == "RUNNING", name
    found = lifecycle.find_resumable("tests", "abc")
    assert found in (ids["dead"], ids["silent_elsewhere"])
    assert lifecycle.find_resumable("tests", "another config") is None


def test_resume_refuses_finished_live_and_other_config_runs(store):
    client, experiment = store
    tags = {"zoo.checkpoint_dir": "/nowhere", "zoo.config_digest": "abc"}
    finished = client.create_run(experiment, tags=tags).info.run_id
    client.set_terminated(finished, "FINISHED")
    alive = client.create_run(experiment, tags={**tags, **lifecycle.process_tags()}).info.run_id
    killed = client.create_run(experiment, tags=tags).info.run_id
    client.set_terminated(killed, "KILLED")
    with pytest.raises(ValueError, match="FINISHED, there is nothing to resume"):
        lifecycle.resumable_run(finished, "abc", 3600)
    with pytest.raises(ValueError, match=rf"still RUNNING in process {os.getpid()}"):
        lifecycle.resumable_run(alive, "abc", 3600)
    with pytest.raises(ValueError, match="trained with another config"):
        lifecycle.resumable_run(killed, "xyz", 3600)
    with pytest.raises(ValueError, match="is not a run in the tracking store"):
        lifecycle.resumable_run("0" * 32, "abc", 3600)
    assert lifecycle.resumable_run(killed, "abc", 3600).info.run_id == killed


def test_failed_evaluation_leaves_the_finished_training_run_as_it_was(store):
    client, experiment = store
    with mlflow.start_run(experiment_id=experiment) as training:
        mlflow.log_metric("val_accuracy", 0.9)
    before = client.get_run(training.info.run_id).info
    time.sleep(0.01)
    with (
        pytest.raises(RuntimeError, match="evaluation broke"),
        runs.start_child_run(training.info.run_id, "tests", "evaluate", {"job": "evaluate"}),
    ):
        raise RuntimeError("evaluation broke")
    after = client.get_run(training.info.run_id).info
    assert (after.status, after.start_time, after.end_time) == (
        "FINISHED",
        before.start_time,
        before.end_time,
    )
    (evaluation,) = client.search_runs([experiment], filter_string="tags.job = 'evaluate'")
    assert evaluation.info.status == "FAILED"
    assert evaluation.data.tags["mlflow.parentRunId"] == training.info.run_id


def test_export_without_its_runtime_fails_before_any_work(monkeypatch):
    assert export.check_formats(["onnx", "keras"]) == ["onnx", "keras"]  # installed here
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # Python's own "not importable" mark
    with pytest.raises(ValueError, match=r"onnx needs tf2onnx.*pip install -e '\.\[export\]'"):
        export.check_formats(["keras", "onnx"])


def test_a_live_run_beats_while_its_main_thread_is_busy(store):
    client, experiment = store
    run_id = client.create_run(experiment, tags={"zoo.heartbeat": "0"}).info.run_id
    with lifecycle.beating(run_id, every_s=0.2):
        time.sleep(1.0)  # a long phase: listing, an epoch, evaluation; no checkpoint written
        beat = float(client.get_run(run_id).data.tags["zoo.heartbeat"])
        assert time.time() - beat < 1.0
    after = client.get_run(run_id).data.tags["zoo.heartbeat"]
    time.sleep(0.5)
    assert client.get_run(run_id).data.tags["zoo.heartbeat"] == after  # stopped with the run
