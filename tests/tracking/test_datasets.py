"""Each run's train/validation/test inputs, counted by hand from scikit-learn's digits."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from omegaconf import OmegaConf
from sklearn.datasets import load_digits

from zoo.data import load_raw
from zoo.tracking import datasets, log_datasets

DIGITS = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "data" / "digits.yaml")


def _expected_counts() -> dict[str, int]:
    """split_examples' rule: per class, round(n * fraction) to validation and to test."""
    per_class = np.bincount(load_digits().target)
    validation = int(sum(max(1, round(n * 0.1)) for n in per_class))
    test = int(sum(max(1, round(n * 0.2)) for n in per_class))
    return {"train": 1797 - validation - test, "validation": validation, "test": test}


def _inputs(run_id: str) -> dict[str, tuple]:
    found = {}
    for item in mlflow.MlflowClient().get_run(run_id).inputs.dataset_inputs:
        tags = {tag.key: tag.value for tag in item.tags}
        dataset = item.dataset
        source = json.loads(dataset.source)["uri"]
        found[dataset.name] = (tags["mlflow.data.context"], source, dataset.digest,
                               json.loads(dataset.profile))  # fmt: skip
    return found


def test_training_run_logs_its_three_splits(trained, tracking_uri):
    inputs = _inputs(trained.run_id)
    counts = _expected_counts()
    contexts = {"train": "training", "validation": "validation", "test": "testing"}
    assert set(inputs) == {f"digits-{split}" for split in counts}
    for split, count in counts.items():
        context, source, digest, profile = inputs[f"digits-{split}"]
        assert context == contexts[split]
        assert source == "zoo.data.offline.load_digits"
        assert profile == {"num_examples": count, "num_classes": 10, "split_seed": 0}
        assert len(digest) == 10
    assert len({digest for _, _, digest, _ in inputs.values()}) == 3


def test_digests_follow_the_examples_not_the_process(trained, tracking_uri):
    digests = {}
    for seed in (0, 1):
        with mlflow.start_run(experiment_id="0") as run:
            log_datasets(load_raw(DIGITS, seed=seed), DIGITS.source, seed)
        digests[seed] = {name: value[2] for name, value in _inputs(run.info.run_id).items()}
    trained_digests = {name: value[2] for name, value in _inputs(trained.run_id).items()}
    assert digests[0] == trained_digests  # the same split, recomputed in another process
    for name in trained_digests:
        assert digests[1][name] != digests[0][name], name  # another seed, another split


# What MLflow's REST client raises when two runs insert one dataset at once (the messages the
# servers sent in a reproduction: SQLite's, and PostgreSQL's for the same primary key).
SQLITE_RACE = (
    "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, "
    "datasets.name, datasets.digest"
)
POSTGRES_RACE = (
    '(psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint "dataset_pk"'
    "\nDETAIL:  Key (experiment_id, name, digest)=(2, digits-train, 9c0d85ae2e) already exists."
)


def _rest_error(code: str, message: str) -> Exception:
    return mlflow.exceptions.RestException({"error_code": code, "message": message})


def test_the_concurrent_dataset_insert_is_recognised_and_nothing_else():
    assert datasets.lost_dataset_race(_rest_error("BAD_REQUEST", SQLITE_RACE))
    assert datasets.lost_dataset_race(_rest_error("BAD_REQUEST", POSTGRES_RACE))
    unrelated = [
        _rest_error("BAD_REQUEST", "Invalid value for parameter 'context'"),
        _rest_error("BAD_REQUEST", "UNIQUE constraint failed: experiments.name"),
        _rest_error("RESOURCE_DOES_NOT_EXIST", SQLITE_RACE),
        ValueError(SQLITE_RACE),
    ]
    assert not any(datasets.lost_dataset_race(err) for err in unrelated)


def test_a_lost_race_is_retried_and_other_errors_are_not():
    calls = []

    def loses_once():
        calls.append(1)
        if len(calls) == 1:
            raise _rest_error("BAD_REQUEST", SQLITE_RACE)
        return "linked"

    assert datasets.retry_lost_race(loses_once) == "linked" and len(calls) == 2

    def always(error):
        def call():
            calls.append(1)
            raise error

        return call

    calls.clear()
    with pytest.raises(mlflow.exceptions.RestException, match="UNIQUE constraint"):
        datasets.retry_lost_race(always(_rest_error("BAD_REQUEST", SQLITE_RACE)), attempts=3)
    assert len(calls) == 3  # gives up after its attempts
    calls.clear()
    with pytest.raises(mlflow.exceptions.RestException, match="parameter"):
        datasets.retry_lost_race(always(_rest_error("BAD_REQUEST", "Invalid parameter")))
    assert len(calls) == 1  # anything else at once
