"""`trainer.distribution`: one model trained over several devices, with the engines Keras has.

    null            the single device the backend picks
    data_parallel   each global batch (`trainer.batch_size`) split over all local devices:
                    `tf.distribute.MirroredStrategy` on TensorFlow,
                    `keras.distribution.DataParallel` on JAX

The whole training job runs inside `scope(...)`, so that the variables are created as the
strategy wants them (mirrored on TensorFlow, replicated on a JAX device mesh) and `fit`
splits the batches. Gradients are averaged over the devices, so for the same seed and global
batch the update is the single-device update up to float rounding; layers that draw random
numbers per replica (dropout) differ, as they do with any data-parallel engine.

Several processes, one run (JAX): N processes started with Keras's own
`KERAS_DISTRIBUTION_JOB_ADDRESSES` / `_NUM_PROCESSES` / `_PROCESS_ID` (or, when these are
absent, from SLURM's `SLURM_PROCID` / `SLURM_NTASKS` / node list) join one JAX job (`join`),
then `data_parallel` spans the devices of all of them. Each process feeds its own slice of
every global batch (`ProcessDataParallel`); process 0 alone writes to MLflow, checkpoints and
exports. A process that dies breaks the others' collectives (gloo on CPU), or stops sending
JAX's heartbeat: the others stop with `ProcessLostError` instead of waiting.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import keras
import numpy as np

log = logging.getLogger(__name__)

KINDS = (None, "data_parallel")
KERAS_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)
UPSTREAM_MULTI_WORKER = "keras-team/keras#20585, tensorflow/tensorflow#72388"
_SHARED_BYTES = 8192  # what process 0 can tell the others at the start (`share`)
# XLA's status prefix on a runtime error: from a collective or the coordination service.
_RUNTIME_STATUS = re.compile(
    r"^(UNKNOWN|UNAVAILABLE|DEADLINE_EXCEEDED|ABORTED|INTERNAL|CANCELLED): "
)


@dataclass(frozen=True)
class Placement:
    """Where training runs: the engine, how many devices share each batch (over all
    processes), and this process among the job's processes."""

    engine: str
    devices: int
    processes: int = 1
    process_id: int = 0

    @property
    def chief(self) -> bool:
        """Process 0: the one that writes to MLflow, checkpoints and exports."""
        return self.process_id == 0

    @property
    def batch_multiple(self) -> int:
        """What every batch's size must be a multiple of: JAX shards each batch evenly over
        the devices (keras-team/keras#21167); TensorFlow's strategy takes uneven ones."""
        return self.devices if self.engine == "DataParallel" else 1

    def tags(self) -> dict[str, str]:
        return {
            "backend": keras.backend.backend(),
            "distribution": self.engine,
            "world_size": str(self.devices),
            "processes": str(self.processes),
        }


@dataclass(frozen=True)
class Cluster:
    """The processes of one training job: process 0's `host:port`, their count, this one."""

    coordinator: str
    processes: int
    process_id: int
    source: str  # the environment it came from


def first_host(node_list: str) -> str:
    """The first host of a SLURM node list: `node[001-004,007],gpu2` -> `node001`."""
    head = re.match(r"([^,\[]*)(?:\[([^,\]-]*))?", node_list.strip())
    return f"{head.group(1)}{head.group(2) or ''}"


def job_port(job_id: str) -> int:
    """The coordinator's port for a job: the one JAX's own SLURM detection derives from the
    job's id (the top 4,096 ports), so every task of the job computes the same."""
    return int(job_id) % 2**12 + (65535 - 2**12 + 1)


def cluster_from_env(env: Mapping[str, str]) -> Cluster | None:
    """The job's processes from Keras's `KERAS_DISTRIBUTION_*` variables (read as
    `keras.distribution.initialize` reads them: the first address is the coordinator's), or,
    when none is set, from submitit's local executor (its tasks on 127.0.0.1) or SLURM's (one
    process per task: `SLURM_PROCID` of `SLURM_NTASKS`, the coordinator on the first node of
    the step, on the port JAX's own SLURM detection derives from `SLURM_JOB_ID`, the job's id
    for submitit's local one); None for a single process."""
    present = [name for name in KERAS_VARIABLES if name in env]
    if present:
        missing = [name for name in KERAS_VARIABLES if name not in env]
        if missing:
            raise ValueError(
                f"{', '.join(present)} set but not {', '.join(missing)}: several processes "
                "need all three (README, Several devices)"
            )
        addresses = env["KERAS_DISTRIBUTION_JOB_ADDRESSES"].split(",")
        count = int(env["KERAS_DISTRIBUTION_NUM_PROCESSES"])
        if len(addresses) > 1 and len(addresses) != count:
            raise ValueError(
                f"KERAS_DISTRIBUTION_JOB_ADDRESSES lists {len(addresses)} addresses but "
                f"KERAS_DISTRIBUTION_NUM_PROCESSES={count}: give one address per process, or "
                "process 0's alone"
            )
        process_id = int(env["KERAS_DISTRIBUTION_PROCESS_ID"])
        if not 0 <= process_id < count:
            raise ValueError(
                f"KERAS_DISTRIBUTION_PROCESS_ID={process_id} must be in 0..{count - 1} "
                f"(KERAS_DISTRIBUTION_NUM_PROCESSES={count})"
            )
        return Cluster(addresses[0].strip(), count, process_id, "KERAS_DISTRIBUTION_*")
    if int(env.get("SUBMITIT_LOCAL_NTASKS", "1")) > 1 and "SUBMITIT_LOCAL_JOB_ID" in env:
        # submitit's local executor (hydra/launcher=submitit_local, tasks_per_node=N): the
        # tasks of one job on this machine, numbered as SLURM numbers them
        return Cluster(
            f"127.0.0.1:{job_port(env['SUBMITIT_LOCAL_JOB_ID'])}",
            int(env["SUBMITIT_LOCAL_NTASKS"]),
            int(env["SUBMITIT_LOCAL_GLOBALID"]),
            "submitit local",
        )
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
    if nodes and "SLURM_JOB_ID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return Cluster(
            f"{first_host(nodes)}:{job_port(env['SLURM_JOB_ID'])}",
            int(env["SLURM_NTASKS"]),
            int(env["SLURM_PROCID"]),
            "SLURM",
        )
    return None


def join(
    kind: str | None, settings: Mapping, env: Mapping[str, str] | None = None
) -> Cluster | None:
    """Join the job's other processes (`cluster_from_env`) before JAX starts; None when this
    process trains alone.

    `settings` (`trainer.processes`): `connect_timeout_s` (JAX's `initialization_timeout`:
    how long to wait for all processes at the start), `heartbeat_s` (JAX's
    `heartbeat_timeout_seconds`: a process silent this long is dead and the job stops),
    `shutdown_timeout_s` (JAX's `shutdown_timeout_seconds`: how long one that ends waits
    for the others). CPU collectives across processes use gloo.
    """
    cluster = cluster_from_env(os.environ if env is None else env)
    if cluster is None or cluster.processes == 1:
        return None
    kind = check_kind(kind)
    if kind is None:
        if cluster.source in ("SLURM", "submitit local"):  # tasks that train a model each
            return None
        raise ValueError(
            f"{cluster.source} asks for {cluster.processes} processes, but "
            "trainer.distribution is null: set trainer.distribution=data_parallel, or unset "
            f"{', '.join(KERAS_VARIABLES)}"
        )
    backend = keras.backend.backend()
    if backend != "jax":
        raise ValueError(
            f"{cluster.processes} processes ({cluster.source}) train one model on the jax "
            f"backend: set KERAS_BACKEND=jax ({backend}'s MultiWorkerMirroredStrategy does not "
            f"work with Keras 3 fit: {UPSTREAM_MULTI_WORKER})"
        )
    import jax

    if jax.config.jax_cpu_collectives_implementation is None:  # older JAX: none by default
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    log.info(
        "Process %d of %d (%s), coordinator %s",
        cluster.process_id,
        cluster.processes,
        cluster.source,
        cluster.coordinator,
    )
    jax.distributed.initialize(
        coordinator_address=cluster.coordinator,
        num_processes=cluster.processes,
        process_id=cluster.process_id,
        initialization_timeout=int(settings["connect_timeout_s"]),
        heartbeat_timeout_seconds=int(settings["heartbeat_s"]),
        shutdown_timeout_seconds=int(settings["shutdown_timeout_s"]),
    )
    return cluster


class ProcessDataParallel(keras.distribution.DataParallel):
    """`DataParallel` over the devices of all processes, each process feeding its slice of
    every global batch: rows `[i * b / n, (i + 1) * b / n)` of a batch of `b` for process
    `i` of `n`, which Keras assembles into the global batch (`jax.make_array_from_process_
    local_data`). The pipeline cuts that slice itself, before decoding, so that each
    process reads and decodes only its share (`zoo.data.pipeline.build_datasets`,
    `processes=`); Keras's own sharding (`auto_shard_dataset`) would rebatch the stream and
    deal the pieces out in turn, so a short last batch would reach one process only."""

    def __init__(self) -> None:
        super().__init__(auto_shard_dataset=False)

    def distribute_dataset(self, dataset):
        return dataset  # already this process's share


class ProcessLostError(RuntimeError):
    """Another process of the job stopped, so this one cannot go on."""


@contextlib.contextmanager
def together(placement: Placement) -> Iterator[None]:
    """Work that all processes of the job do in step (fit, evaluate): with several, a
    JAX runtime error in it (a collective or the coordination service failing, as when
    another process died) is raised as `ProcessLostError`."""
    try:
        yield
    except Exception as err:
        lost = _lost_process(err, placement)
        if lost is None:
            raise
        log.error("%s", lost)  # logged now: JAX may end the process before Python's report
        raise lost from err


def _lost_process(err: BaseException, placement: Placement) -> ProcessLostError | None:
    """`err` as a `ProcessLostError` when it is a JAX runtime error (a collective or the
    coordination service failing) in a job of several processes; else None."""
    if placement.processes == 1 or not _RUNTIME_STATUS.match(str(err)):
        return None
    first = str(err).splitlines()[0]
    return ProcessLostError(
        f"process {placement.process_id} of {placement.processes} stops: another process of "
        f"the job stopped ({first[:300]}); the run is resumable: start all processes again "
        "with resume=auto"
    )


def share(value: dict | None, placement: Placement) -> dict:
    """Process 0's `value` (JSON) on every process; `value` itself with one process."""
    if placement.processes == 1:
        return value
    from jax.experimental import multihost_utils

    data = json.dumps(value).encode() if placement.chief else b""
    if len(data) > _SHARED_BYTES:
        raise ValueError(f"{len(data)} bytes to share between processes, at most {_SHARED_BYTES}")
    buffer = np.zeros(_SHARED_BYTES, np.uint8)
    buffer[: len(data)] = np.frombuffer(data, np.uint8)
    received = np.asarray(multihost_utils.broadcast_one_to_all(buffer))
    return json.loads(bytes(received).rstrip(b"\0"))


@contextlib.contextmanager
def process_local(model: keras.Model, placement: Placement) -> Iterator[keras.Model]:
    """`model`, or with several processes a copy of it held by this process alone (its
    variables span all processes' devices, so that calling it needs them all): what
    process 0 predicts with, logs and exports."""
    if placement.processes == 1:
        yield model
        return
    weights = model.get_weights()
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        copy = keras.models.clone_model(model)
        copy.set_weights(weights)
        yield copy
    finally:
        keras.distribution.set_distribution(previous)


def simulate_cpu_devices(count: int) -> None:
    """Split the CPU into `count` devices, for tests and benchmarks without several chips:
    XLA host devices on JAX (set before JAX loads), logical devices on TensorFlow (set
    before TensorFlow first uses the CPU)."""
    if keras.backend.backend() == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}"
        return
    import tensorflow as tf

    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * count
    )


def accelerators() -> list[str]:
    """The GPUs the current backend sees (empty on a CPU-only machine)."""
    if keras.backend.backend() == "jax":
        import jax

        return [str(d) for d in jax.devices() if d.platform == "gpu"]
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def check_kind(kind: str | None) -> str | None:
    if kind not in KINDS:
        raise ValueError(
            f"trainer.distribution must be null or data_parallel, got {kind!r}; "
            "data_parallel splits each batch over all local devices"
        )
    return kind


@contextlib.contextmanager
def scope(kind: str | None) -> Iterator[Placement]:
    """Build, compile and restore the model inside this; it yields where training runs."""
    kind = check_kind(kind)
    backend = keras.backend.backend()
    if kind is None:
        yield Placement("single device", 1)
        return
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
        placement = Placement("MirroredStrategy", strategy.num_replicas_in_sync)
        log.info("Distribution: %s over %d devices", placement.engine, placement.devices)
        with strategy.scope():
            yield placement
        return
    if backend == "jax":
        import jax

        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(ProcessDataParallel())
        placement = Placement(
            "DataParallel", jax.device_count(), jax.process_count(), jax.process_index()
        )
        log.info(
            "Distribution: %s over %d devices in %d processes",
            placement.engine,
            placement.devices,
            placement.processes,
        )
        try:
            yield placement
        finally:
            keras.distribution.set_distribution(previous)
        return
    raise ValueError(
        f"trainer.distribution=data_parallel works on the tensorflow and jax backends, not "
        f"{backend!r}; set KERAS_BACKEND=tensorflow or jax"
    )
