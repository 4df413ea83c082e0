"""Several processes, one run: 2 JAX processes on 127.0.0.1 train one model together.

Each process is a real `train.py` (through `faulty_train.py`, which can kill one of them at a
given step), started with Keras's `KERAS_DISTRIBUTION_*` variables and a free port, and
waited for. The reference is one plain process with the same seed and global batch.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from entry_points import ROOT
from mlflow.tracking import MlflowClient

from zoo.tracking import lifecycle
from zoo.training import checkpoint, distribution

FAULTY = Path(__file__).with_name("faulty_train.py")
HEARTBEAT_S = 5
EPOCHS, STEPS_PER_EPOCH = 1, 20  # digits: 1,257 train images / 64 = 20 batches
TINY = (
    "model=mlp",
    "data=digits",
    "baselines=none",
    f"trainer.epochs={EPOCHS}",
    "trainer.batch_size=64",  # the global batch: 32 rows per process
    "trainer.checkpoint.every_steps=5",
    "trainer.checkpoint.keep_finished=true",  # the final weights are read from the checkpoint
    "tracking.log_model=false",
    "trainer.verbose=0",
)
TOGETHER = ("trainer.distribution=data_parallel", f"trainer.processes.heartbeat_s={HEARTBEAT_S}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def jax_env() -> dict[str, str]:
    """This environment for a JAX `train.py`: no simulated devices, no injected fault."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "ZOO_FAULT")}
    env["KERAS_BACKEND"] = "jax"
    return env


def launch(store: Path, *overrides: str, faults: dict[int, str] | None = None) -> list:
    """Start processes 0 and 1 of one job on `store` (`faults`: ZOO_FAULT per process)."""
    port = free_port()
    started = []
    for index in (0, 1):
        env = jax_env()
        env.update(
            KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{port}",
            KERAS_DISTRIBUTION_NUM_PROCESSES="2",
            KERAS_DISTRIBUTION_PROCESS_ID=str(index),
        )
        if faults and index in faults:
            env["ZOO_FAULT"] = faults[index]
        command = [
            sys.executable,
            str(FAULTY),
            f"tracking.uri=sqlite:///{store}/mlflow.db",
            "tracking.experiment=tests",
            f"hydra.run.dir={store}/process{index}",
            *TINY,
            *TOGETHER,
            *overrides,
        ]
        log = open(store / f"process{index}.log", "w")  # noqa: SIM115 (closed by wait)
        process = subprocess.Popen(command, cwd=store, env=env, stdout=log, stderr=log)
        started.append((process, log))
    return started


def wait(started: list, timeout: float = 600) -> list[tuple[int, str, float]]:
    """(exit code, output, seconds from the start of the wait to its exit) of each process;
    any still running after `timeout` is killed."""
    begin, ended = time.monotonic(), {}
    while len(ended) < len(started) and time.monotonic() - begin < timeout:
        for index, (process, _) in enumerate(started):
            if index not in ended and process.poll() is not None:
                ended[index] = time.monotonic() - begin
        time.sleep(0.2)
    results = []
    for index, (process, log) in enumerate(started):
        if index not in ended:
            process.kill()
            ended[index] = time.monotonic() - begin
        code = process.wait()
        log.close()
        results.append((code, Path(log.name).read_text(), ended[index]))
    return results


def only_run(store: Path):
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    experiment = client.get_experiment_by_name("tests")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [run.info.run_id for run in runs]
    return runs[0]


def final_weights(run) -> dict[str, np.ndarray]:
    latest = checkpoint.read_latest(Path(run.data.tags["zoo.checkpoint_dir"]))
    assert latest is not None and latest.step == EPOCHS * STEPS_PER_EPOCH, latest
    return {k: v for k, v in latest.arrays.items() if k.split("/")[0] in ("model", "optimizer")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process on one device: the same seed, data order and global batch."""
    store = tmp_path_factory.mktemp("single")
    env = jax_env()
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        f"tracking.uri=sqlite:///{store}/mlflow.db",
        "tracking.experiment=tests",
        *TINY,
    ]
    result = subprocess.run(
        command, cwd=store, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return final_weights(only_run(store))


def assert_same_weights(run, reference) -> None:
    weights = final_weights(run)
    assert weights.keys() == reference.keys()
    for name, value in reference.items():
        np.testing.assert_allclose(weights[name], value, rtol=1e-4, atol=1e-5, err_msg=name)


def test_two_processes_train_one_run_to_the_weights_of_one(tmp_path, reference):
    results = wait(launch(tmp_path))
    for index, (code, output, _) in enumerate(results):
        assert code == 0, f"process {index}:\n{output[-3000:]}"
    assert "Distribution: DataParallel over 2 devices in 2 processes" in results[1][1]
    run = only_run(tmp_path)  # process 1 opened none
    assert run.info.status == "FINISHED"
    assert run.data.tags["world_size"] == "2"
    assert run.data.tags["processes"] == "2"
    assert run.data.tags["distribution"] == "DataParallel"
    assert_same_weights(run, reference)
    # Process 0 alone wrote checkpoints; process 1's folder holds Hydra's own files only.
    assert Path(run.data.tags["zoo.checkpoint_dir"]).parent.parent == tmp_path / "process0"
    written = {
        p.relative_to(tmp_path / "process1").parts[0] for p in (tmp_path / "process1").rglob("*")
    }
    assert written <= {".hydra", "train.log"}, written


def test_submitit_local_tasks_train_one_run_to_the_weights_of_one(tmp_path, reference):
    # The SLURM route as far as it runs on one machine: Hydra's submitit launcher with its
    # local executor starts 2 tasks of one job, which find each other from submitit's
    # variables (no KERAS_DISTRIBUTION_*), as SLURM tasks do from SLURM's.
    env = jax_env()
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.tasks_per_node=2",
        f"hydra.sweep.dir={tmp_path}/sweep",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        "tracking.experiment=tests",
        *TINY,
        *TOGETHER,
    ]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    logs = "".join(p.read_text() for p in (tmp_path / "sweep").rglob("*_log.*"))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:] + logs[-3000:]
    run = only_run(tmp_path)  # task 1 opened none
    assert run.info.status == "FINISHED"
    assert run.data.tags["world_size"] == "2"
    assert run.data.tags["processes"] == "2"
    assert_same_weights(run, reference)


def test_a_killed_process_stops_the_other_and_leaves_a_resumable_run(tmp_path):
    # Process 1 dies (SIGKILL) after step 12; process 0 last checkpointed at step 10.
    (code, output, stopped), (killed, _, died) = wait(launch(tmp_path, faults={1: "kill@12"}))
    assert killed == -9
    assert code != 0
    assert "process 0 of 2 stops: another process of the job stopped" in output, output[-3000:]
    # It stops at once (the collective fails) and exits once JAX's heartbeat times out.
    assert stopped - died < HEARTBEAT_S + 30, (died, stopped)
    run = only_run(tmp_path)
    assert run.info.status == "KILLED"
    assert run.data.tags["interrupted"] == "process lost"
    assert run.data.tags[lifecycle.LAST_STEP] == "10"
    assert checkpoint.read_latest(Path(run.data.tags[lifecycle.CHECKPOINT_DIR])).step == 10
    # What resume=auto continues: the newest KILLED run of the experiment with this config.
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        digest = run.data.tags[lifecycle.CONFIG_DIGEST]
        assert lifecycle.find_resumable("tests", digest) == run.info.run_id
    finally:
        mlflow.set_tracking_uri(previous)


def test_the_processes_come_from_keras_variables_submitit_or_slurm():
    keras_env = {
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": "10.0.0.1:1234,10.0.0.2:2345",
        "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
        "KERAS_DISTRIBUTION_PROCESS_ID": "1",
        "SLURM_NTASKS": "8",  # Keras's variables win over SLURM's
    }
    assert distribution.cluster_from_env(keras_env) == distribution.Cluster(
        "10.0.0.1:1234", 2, 1, "KERAS_DISTRIBUTION_*"
    )
    slurm = {
        "SLURM_JOB_ID": "123456",
        "SLURM_NTASKS": "8",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_STEP_NODELIST": "gpu[007-010,012],big01",
        "SLURM_JOB_NODELIST": "gpu[001-010,012],big01",
    }
    port = 123456 % 4096 + 61440  # JAX's own SLURM detection's port
    assert distribution.cluster_from_env(slurm) == distribution.Cluster(
        f"gpu007:{port}", 8, 5, "SLURM"
    )
    del slurm["SLURM_STEP_NODELIST"]  # outside srun: the job's node list
    assert distribution.cluster_from_env(slurm).coordinator == f"gpu001:{port}"
    for nodes, first in [("node3", "node3"), ("a1,b2", "a1"), ("n[09,11]", "n09")]:
        assert distribution.first_host(nodes) == first
    assert distribution.cluster_from_env({**slurm, "SLURM_NTASKS": "1"}) is None
    assert distribution.cluster_from_env({}) is None
    local = {  # what submitit's local executor sets in task 1 of 2
        "SUBMITIT_LOCAL_JOB_ID": "4242",
        "SUBMITIT_LOCAL_NTASKS": "2",
        "SUBMITIT_LOCAL_GLOBALID": "1",
    }
    assert distribution.cluster_from_env(local) == distribution.Cluster(
        f"127.0.0.1:{4242 % 4096 + 61440}", 2, 1, "submitit local"
    )
    assert distribution.cluster_from_env({**local, "SUBMITIT_LOCAL_NTASKS": "1"}) is None
    with pytest.raises(
        ValueError, match="lists 2 addresses but KERAS_DISTRIBUTION_NUM_PROCESSES=3"
    ):
        distribution.cluster_from_env({**keras_env, "KERAS_DISTRIBUTION_NUM_PROCESSES": "3"})
    with pytest.raises(ValueError, match="need all three"):
        distribution.cluster_from_env({"KERAS_DISTRIBUTION_NUM_PROCESSES": "2"})
    # SLURM tasks that each train their own model stay single; Keras's variables must not.
    settings = {"connect_timeout_s": 1, "heartbeat_s": 1, "shutdown_timeout_s": 1}
    assert distribution.join(None, settings, slurm) is None
    with pytest.raises(ValueError, match=r"set trainer\.distribution=data_parallel"):
        distribution.join(None, settings, keras_env)
