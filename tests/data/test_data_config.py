"""conf/data/*.yaml and load_data: config → instantiate → split → pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_helpers import TINY_CLASSES, take_all
from hydra.utils import get_method
from omegaconf import OmegaConf

from zoo.data.loading import load_data, load_raw
from zoo.data.spec import RawSplits

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "data"
DATA_SETS = ("mnist", "digits", "orl_faces", "lfw_subset", "folder", "tfds")
KEYS = {
    "name",
    "source",
    "split",
    "image_size",
    "channels",
    "augment",
    "cache",
    "cache_memory_fraction",
    "shuffle_buffer",
}


def compose(data_set: str, model: dict | None = None):
    """What Hydra would build: the data group under ``data``, next to a model and a seed."""
    data = OmegaConf.load(CONF_DIR / f"{data_set}.yaml")
    data.pop("defaults")  # Hydra's defaults list (the baselines choice), not part of data
    return OmegaConf.create({"seed": 0, "model": model or {}, "data": data})


@pytest.mark.parametrize("data_set", DATA_SETS)
def test_every_data_config_has_the_agreed_shape(data_set: str):
    cfg = compose(data_set)
    # Face sources add `align` (zoo.faces), off unless asked for.
    assert set(cfg.data) - {"align"} == KEYS
    assert ("align" in cfg.data) == (data_set in ("orl_faces", "folder"))
    assert cfg.data.get("align", False) is False
    assert callable(get_method(cfg.data.source._target_))
    assert set(cfg.data.split) == {"validation", "test", "by"}
    assert cfg.data.image_size is None and cfg.data.channels is None


@pytest.mark.parametrize("data_set", DATA_SETS)
def test_every_data_config_chooses_existing_baselines(data_set: str):
    (entry,) = OmegaConf.load(CONF_DIR / f"{data_set}.yaml").defaults
    ((group, choice),) = entry.items()
    assert group == "/baselines@_global_.baselines"
    assert (CONF_DIR.parent / "baselines" / f"{choice}.yaml").is_file()


def test_model_may_ask_for_size_and_channels():
    cfg = compose("orl_faces", model={"input_size": [152, 152], "input_channels": 3})
    assert list(cfg.data.image_size) == [152, 152] and cfg.data.channels == 3
    assert dict(cfg.data.split) == {"validation": 0.2, "test": 0.2, "by": "example"}


def test_load_data_from_a_hand_composed_dict():
    data_cfg = {
        "name": "digits",
        "source": {"_target_": "zoo.data.offline.load_digits"},
        "split": {"validation": 0.1, "test": 0.2, "by": "example"},
        "image_size": [16, 16],
        "channels": 3,
        "augment": {"horizontal_flip": True},
        "cache": True,
        "shuffle_buffer": 100,
    }
    data = load_data(data_cfg, batch_size=50, seed=0)
    assert data.spec.name == "digits"
    assert data.spec.input_shape == (16, 16, 3) and data.spec.num_classes == 10
    sizes = [len(take_all(s)[1]) for s in (data.train, data.validation, data.test)]
    assert sum(sizes) == 1797
    assert abs(sizes[2] - 0.2 * 1797) <= 10 and abs(sizes[1] - 0.1 * 1797) <= 10


def test_load_data_from_the_lfw_yaml_with_a_model_size():
    cfg = compose("lfw_subset", model={"input_size": [32, 32]})
    data = load_data(cfg.data, batch_size=64, seed=cfg.seed)
    images, labels = next(iter(data.train))
    assert images.shape == (64, 32, 32, 1) and labels.shape == (64,)
    assert data.spec.class_names == ("non_face", "face")


def test_tfds_config_uses_the_source_splits(tfds_dir: Path):
    cfg = compose("tfds")
    cfg.data.source.name = "zoo_tiny_shapes"
    cfg.data.source.data_dir = str(tfds_dir)
    assert cfg.data.name == "zoo_tiny_shapes"
    raw = load_raw(cfg.data, seed=0)
    assert isinstance(raw, RawSplits) and raw.class_names == TINY_CLASSES
    data = load_data(cfg.data, batch_size=8, seed=0)
    assert [len(take_all(s)[1]) for s in (data.train, data.validation, data.test)] == [36, 4, 8]


def test_tfds_config_offline_without_data_says_how_to_fix(tmp_path: Path):
    cfg = compose("tfds")
    cfg.data.source.data_dir = str(tmp_path)
    with pytest.raises(ValueError, match="'mnist' is not prepared"):
        load_data(cfg.data, batch_size=8, seed=0)


def test_source_of_the_wrong_type():
    with pytest.raises(TypeError, match="must return Examples or RawSplits"):
        load_raw({"source": {"_target_": "builtins.dict"}}, seed=0)
