"""`trainer.distribution=data_parallel` on 2 simulated CPU devices, TensorFlow and JAX."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from zoo.training import distribution

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("devices_train.py")
# The zoo layer inside (lcn), no dropout and no augmentation: nothing random per replica.
SMALL = [
    "model=lcn",
    "data=digits",
    "trainer.epochs=2",
    "trainer.batch_size=32",
    "model.builder.filters=4",
    "model.builder.hidden_units=16",
    "tracking.log_model=false",
    "tracking.experiment=tests",
]


def _train(tmp_path: Path, backend: str, devices: int, *overrides: str) -> tuple[str, object]:
    store = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "KERAS_BACKEND": backend, "ZOO_CPU_DEVICES": str(devices)}
    command = [sys.executable, str(RUNNER), f"tracking.uri={store}", *SMALL, *overrides]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("tests")
    (run,) = client.search_runs(
        [experiment.experiment_id], order_by=["start_time DESC"], max_results=1
    )
    return output, run


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_two_devices_train_to_the_metrics_of_one(tmp_path, backend):
    output, single = _train(tmp_path, backend, 1)
    assert single.data.tags["world_size"] == "1"
    output, double = _train(tmp_path, backend, 2, "trainer.distribution=data_parallel")
    engine = {"tensorflow": "MirroredStrategy", "jax": "DataParallel"}[backend]
    assert f"Distribution: {engine} over 2 devices" in output
    assert double.data.tags["world_size"] == "2"
    assert double.data.tags["backend"] == single.data.tags["backend"] == backend
    for name in ("loss", "val_loss"):
        assert double.data.metrics[name] == pytest.approx(single.data.metrics[name], rel=1e-4), name
    # Float rounding differs between one and two devices, so a prediction on the edge may
    # flip: accuracies agree within a few examples (of about 1,260 train, 180 validation, 360 test).
    for name in ("accuracy", "val_accuracy", "test_accuracy"):
        assert double.data.metrics[name] == pytest.approx(single.data.metrics[name], abs=6e-3), name
    # On JAX a batch whose size the devices do not divide is padded with zero-weight rows:
    # metrics and gradients are unchanged, but Keras's running loss weights each batch by
    # its row count, padding included, so an epoch's mean loss moves by ~1e-4 of itself.
    assert double.data.metrics["test_loss"] == pytest.approx(
        single.data.metrics["test_loss"], rel=1e-4 if backend == "tensorflow" else 1e-3
    )


def test_an_unknown_distribution_names_the_choices():
    with pytest.raises(ValueError, match=r"trainer.distribution must be null or data_parallel"):
        distribution.check_kind("model_parallel")


SHARDED = """
import json, os
os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax, keras, numpy as np
from zoo.layers import LocallyConnected1D, LocallyConnected2D
from zoo.layers.sharding import position_sharding

def build(rank):
    if rank == 2:
        inputs = keras.Input((8, 8, 3))
        outputs = LocallyConnected2D(4, 3, name="lc")(inputs)  # 6 x 6 = 36 positions
    else:
        inputs = keras.Input((10, 3))
        outputs = LocallyConnected1D(4, 3, name="lc")(inputs)  # 8 positions
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(outputs)))

def forward_and_gradients(model, x):
    trainable = [v.value for v in model.trainable_variables]
    fixed = [v.value for v in model.non_trainable_variables]
    def loss(values):
        out, _ = model.stateless_call(values, fixed, x)
        return (out ** 2).sum(), out
    (value, out), grads = jax.value_and_grad(loss, has_aux=True)(trainable)
    return np.asarray(out), [np.asarray(g) for g in grads]

report = {}
for rank in (2, 1):
    x = np.random.default_rng(rank).normal(size=(4, 8, 8, 3) if rank == 2 else (4, 10, 3))
    x = x.astype("float32")
    keras.utils.set_random_seed(0)
    plain = build(rank)
    weights = plain.get_weights()
    reference = forward_and_gradients(plain, x)
    mesh = keras.distribution.DeviceMesh((1, 2), ["batch", "model"], jax.devices())
    for split in ("positions", "filters"):
        layouts = position_sharding(mesh, ["lc"], rank=rank, split=split)
        keras.distribution.set_distribution(
            keras.distribution.ModelParallel(layout_map=layouts, batch_dim_name="batch"))
        sharded = build(rank)
        sharded.set_weights(weights)
        out, grads = forward_and_gradients(sharded, x)
        keras.distribution.set_distribution(None)
        kernel = sharded.get_layer("lc").kernel.value
        report[f"{rank}d_{split}"] = {
            "devices": len(kernel.sharding.device_set),
            "kernel_shape": list(kernel.shape),
            "shard_shapes": [list(s.data.shape) for s in kernel.addressable_shards],
            "shard_bytes": [int(s.data.nbytes) for s in kernel.addressable_shards],
            "output_diff": float(np.max(np.abs(out - reference[0]))),
            "gradient_diff": max(float(np.max(np.abs(g - r))) for g, r in zip(grads, reference[1])),
        }
print(json.dumps(report))
"""


@pytest.mark.slow
def test_position_and_filter_sharding_match_the_unsharded_layer_with_half_the_kernel(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "XLA_FLAGS")}
    result = subprocess.run(
        [sys.executable, "-c", SHARDED], capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    full = {"2d": [36, 27, 4], "1d": [8, 9, 4]}
    halves = {
        "2d_positions": [18, 27, 4],
        "2d_filters": [36, 27, 2],
        "1d_positions": [4, 9, 4],
        "1d_filters": [8, 9, 2],
    }
    for case, shard in halves.items():
        measured = report[case]
        assert measured["devices"] == 2, case
        assert measured["kernel_shape"] == full[case[:2]]
        assert measured["shard_shapes"] == [shard, shard], case
        whole = 4 * full[case[:2]][0] * full[case[:2]][1] * full[case[:2]][2]
        assert measured["shard_bytes"] == [whole // 2, whole // 2], case
        assert measured["output_diff"] < 1e-5, case
        assert measured["gradient_diff"] < 1e-4, case


@pytest.mark.slow
def test_train_and_evaluate_end_to_end_on_the_jax_backend(tmp_path):
    # lcn holds a conv, the zoo layer (with its custom gradient) and dense layers. mlp and
    # cnn passed this same test too; it runs one model to keep CI short.
    model = "lcn"
    store = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    common = [f"tracking.uri={store}", "tracking.experiment=tests"]
    train = [
        sys.executable,
        str(ROOT / "train.py"),
        f"model={model}",
        "data=digits",
        "trainer.epochs=2",
        "export.formats=[saved_model,keras]",
        *common,
    ]
    result = subprocess.run(
        train, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("tests")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags["backend"] == "jax"
    assert run.data.metrics["test_accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert run.data.metrics["export_saved_model_max_abs_diff"] < 1e-4
    evaluate = [sys.executable, str(ROOT / "evaluate.py"), f"run_id={run.info.run_id}", *common]
    result = subprocess.run(
        evaluate, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    (evaluation,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.job = 'evaluate'"
    )
    assert evaluation.data.metrics["test_accuracy"] == pytest.approx(
        run.data.metrics["test_accuracy"]
    )
