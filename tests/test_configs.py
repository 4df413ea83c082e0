"""Every config composes, model choices pull in their defaults, and mistakes fail clearly."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
DATA = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))


def _compose(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_all_groups_are_present():
    assert MODELS == ["cnn", "deepface", "lcn", "mlp"]
    assert {"mnist", "digits", "orl_faces", "lfw_subset", "folder", "tfds"} <= set(DATA)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("data", DATA)
def test_every_model_and_data_composes(model, data):
    cfg = _compose(f"model={model}", f"data={data}")
    assert cfg.model.name == model
    assert cfg.data.name  # interpolations resolve
    assert callable(instantiate(cfg.model.builder))
    assert cfg.data.image_size == (list(cfg.model.input_size) if cfg.model.input_size else None)


def test_deepface_selects_faces_and_its_recipe():
    cfg = _compose("model=deepface")
    assert cfg.data.name == "orl_faces"
    assert list(cfg.data.image_size) == [152, 152] and cfg.data.channels == 3
    assert cfg.optimizer._target_ == "zoo.training.optimizers.AdamW"
    assert cfg.optimizer.learning_rate == 3e-4
    assert cfg.schedule._target_ == "zoo.training.recipe.cosine_with_warmup"
    trainer = cfg.trainer
    assert (trainer.batch_size, trainer.epochs, trainer.label_smoothing) == (32, 50, 0.1)
    assert cfg.data.augment.horizontal_flip and cfg.data.augment.max_shift == 8
    assert "reduce_lr" not in cfg.trainer.callbacks
    # The command line still wins over the model's choices.
    cfg = _compose("model=deepface", "data=lfw_subset", "optimizer=adam", "trainer.batch_size=8")
    assert (cfg.data.name, cfg.optimizer._target_, cfg.trainer.batch_size) == (
        "lfw_subset",
        "keras.optimizers.Adam",
        8,
    )


def test_the_paper_recipe_stays_selectable():
    cfg = _compose("experiment=deepface_paper")
    assert cfg.model.name == "deepface" and cfg.data.name == "orl_faces"
    assert cfg.optimizer._target_ == "zoo.training.optimizers.SGD"
    assert cfg.optimizer.learning_rate == 0.01 and cfg.optimizer.momentum == 0.9
    assert cfg.get("schedule") is None and cfg.data.augment is None
    assert cfg.trainer.label_smoothing == 0.0 and cfg.trainer.callbacks.reduce_lr.min_lr == 1e-4
    assert cfg.model.builder.kernel_initializer == "glorot_uniform"


def test_the_keys_users_type():
    cfg = _compose(
        "trainer.epochs=3",
        "trainer.batch_size=16",
        "optimizer.learning_rate=0.1",
        "tracking.uri=sqlite:///x.db",
        "tracking.experiment=mine",
    )
    assert (cfg.trainer.epochs, cfg.trainer.batch_size, cfg.optimizer.learning_rate) == (3, 16, 0.1)
    assert (cfg.tracking.uri, cfg.tracking.experiment) == ("sqlite:///x.db", "mine")
    assert _compose().tracking.uri is None  # MLflow's own resolution by default


def _train(*args, cwd):
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_lists_the_choices(tmp_path):
    result = _train("--help", cwd=tmp_path)
    assert result.returncode == 0
    for choice in (
        "model: cnn, deepface, lcn, mlp",
        "orl_faces",
        "optimizer: adam, adamw, sgd",
        "schedule: cosine",
        "baselines: digits, faces, none",
    ):
        assert choice in result.stdout


@pytest.mark.parametrize(
    "override,message",
    [
        ("model=resnet", "Could not find 'model/resnet'"),
        ("trainer.epoch=3", "Could not override 'trainer.epoch'"),
    ],
)
def test_mistakes_fail_with_hydras_message(tmp_path, override, message):
    result = _train(override, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
