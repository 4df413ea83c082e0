"""`evaluate.py` end to end on a run made by `train.py`, plus its error messages."""

import dataclasses
import json
import sys
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from entry_points import list_artifacts, run_script
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from sklearn.metrics import roc_auc_score

from zoo import evaluation
from zoo.data import load_data, split_arrays


@pytest.mark.slow
def test_train_then_evaluate_with_exports(tmp_path):
    code, output = run_script(
        tmp_path,
        "train.py",
        "model=lcn",
        "data=digits",
        "trainer.epochs=1",
        "model.builder.filters=4",
        "model.builder.hidden_units=16",
        # Plain cross-entropy, so that the training run's test_loss (its own loss) is the
        # quantity evaluate.py reports; with label smoothing the two losses differ.
        "trainer.label_smoothing=0",
    )
    assert code == 0, output[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("tests")
    (train_run,) = client.search_runs([experiment.experiment_id])
    run_id = train_run.info.run_id

    code, output = run_script(
        tmp_path,
        "evaluate.py",
        f"run_id={run_id}",
        "robustness.max_shift=2",
        "export.formats=[keras,onnx]",
        "register_model_name=tiny-lcn",
    )
    assert code == 0, output[-3000:]
    (evaluation_run,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.job = 'evaluate'"
    )
    assert evaluation_run.data.tags["mlflow.parentRunId"] == run_id
    metrics = evaluation_run.data.metrics
    # Same model, same data config and seed: the test split is the one train.py held out.
    assert metrics["test_accuracy"] == pytest.approx(train_run.data.metrics["test_accuracy"])
    assert metrics["test_loss"] == pytest.approx(train_run.data.metrics["test_loss"], rel=1e-4)
    assert metrics["shift_0px_accuracy"] == metrics["test_accuracy"]
    assert {"shift_1px_accuracy", "shift_2px_accuracy", "test_class_9_f1"} <= set(metrics)
    assert metrics["export_onnx_max_abs_diff"] < 1e-4
    artifacts = set(list_artifacts(client, evaluation_run.info.run_id))
    assert {
        "evaluation/confusion_matrix.png",
        "evaluation/misclassified.png",
        "evaluation/translation_robustness.png",
        "evaluation/local_filters.png",
        "evaluation/classification_report.json",
        "exports/keras/lcn.keras",
        "exports/onnx/lcn.onnx",
    } <= artifacts
    assert client.get_model_version("tiny-lcn", "1").run_id == run_id

    # The registered model evaluates on another data config with the same spec.
    code, output = run_script(
        tmp_path,
        "evaluate.py",
        "model_uri=models:/tiny-lcn/1",
        "data=digits",
        "data.split.test=0.5",
        "robustness.max_shift=0",
    )
    assert code == 0, output[-3000:]


def test_data_spec_mismatch_names_the_fix():
    from zoo.models import build_cnn

    data = load_data(
        OmegaConf.create({"source": {"_target_": "zoo.data.offline.load_digits"}}),
        batch_size=8,
        seed=0,
    )
    model = build_cnn(dataclasses.replace(data.spec, input_shape=(28, 28, 1)))
    with pytest.raises(ValueError, match=r"data\.image_size=\[28,28\] data\.channels=1"):
        evaluation.check_spec(model, data)


def test_bad_sources_are_clear_errors(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    cfg = OmegaConf.create({"run_id": "0123abc", "model_uri": None, "model_path": None})
    with pytest.raises(ValueError, match="run_id='0123abc' is not a run in the tracking store"):
        evaluation.load_model(cfg)
    cfg = OmegaConf.create({"run_id": None, "model_uri": "models:/nope/3", "model_path": None})
    with pytest.raises(ValueError, match="model_uri='models:/nope/3' is not in the model registry"):
        evaluation.load_model(cfg)
    cfg = OmegaConf.create({"run_id": None, "model_uri": None, "model_path": "x.h5"})
    with pytest.raises(ValueError, match=r"model_path='x\.h5' is not an existing \.keras file"):
        evaluation.load_model(cfg)
    with pytest.raises(ValueError, match="exactly one of run_id"):
        evaluation.load_model(OmegaConf.create({"run_id": None}))


@pytest.mark.parametrize("learned", [False, True], ids=["paper", "flip-lda"])
def test_identity_split_verification_matches_an_independent_computation(tmp_path, learned):
    """On identity-disjoint digits, the logged AUC is the AUC of all test pairs' scores: the
    paper's normalised inner product, or (flip + a learned metric) mirror-averaged features
    projected by scikit-learn's own LDA fitted on the training digits."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    from zoo.models import build_cnn

    data_cfg = OmegaConf.create(
        {
            "source": {"_target_": "zoo.data.offline.load_digits"},
            "split": {"validation": 0.1, "test": 0.3, "by": "identity"},
        }
    )
    data = load_data(data_cfg, batch_size=64, seed=0)
    keras.utils.set_random_seed(0)
    model = build_cnn(data.spec, filters=4, hidden_units=16)
    lda = {"_target_": "sklearn.discriminant_analysis.LinearDiscriminantAnalysis"}
    cfg = OmegaConf.create(
        {
            "batch_size": 256,
            "seed": 0,
            "verification": {"folds": 10, "flip": learned, "metric": lda if learned else None},
            "robustness": {"max_shift": 0},
            "export": {"formats": []},
        }
    )
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_experiment("tests")  # not an experiment id left active by an earlier test
    with mlflow.start_run():
        metrics = evaluation.evaluate_model(model, data, cfg, tmp_path, identity_split=True)

    embed = keras.Model(model.input, model.get_layer("hidden").output)
    train_images, train_labels = split_arrays(data.train)
    test_images, test_labels = split_arrays(data.test)
    assert len(np.unique(test_labels)) == 3  # round(10 * 0.3) held-out digits

    def features_of(images):
        features = embed.predict(images, verbose=0)
        if learned:
            features = (features + embed.predict(images[:, :, ::-1], verbose=0)) / 2
        return features

    def unit(rows):
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    maximum = features_of(train_images).max(axis=0)
    maximum = np.where(maximum > 0, maximum, 1)
    features = unit(features_of(test_images) / maximum)
    i, j = np.triu_indices(len(test_labels), 1)
    same = test_labels[i] == test_labels[j]
    inner_product = roc_auc_score(same, np.sum(features[i] * features[j], 1))
    if learned:
        fitted = LinearDiscriminantAnalysis().fit(
            unit(features_of(train_images) / maximum), train_labels
        )
        projected = unit(fitted.transform(features))
        expected = roc_auc_score(same, np.sum(projected[i] * projected[j], 1))
        assert metrics["verification_inner_product_auc"] == pytest.approx(inner_product, abs=1e-6)
        assert expected != pytest.approx(inner_product, abs=1e-3)  # the metric changes scores
    else:
        expected = inner_product
        assert "verification_inner_product_auc" not in metrics
    assert metrics["verification_auc"] == pytest.approx(expected, abs=1e-6)
    n = np.bincount(test_labels)
    assert metrics["verification_same_pairs"] == sum(k * (k - 1) // 2 for k in n)
    assert 0.0 <= metrics["verification_accuracy_std"] < metrics["verification_accuracy_mean"]


@pytest.mark.slow
def test_verification_on_a_tfds_lfw_shaped_set(tmp_path):
    """`data=tfds_lfw` on a prepared local copy shaped like TFDS lfw (one split, person names
    as labels): train.py trains on some people, evaluate.py verifies on the unseen rest."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
    from data_helpers import PEOPLE, ZooTinyPeople

    ZooTinyPeople(data_dir=str(tmp_path / "tfds")).download_and_prepare()
    data = [
        "data=tfds_lfw",
        "data.source.name=zoo_tiny_people",
        f"data.source.data_dir={tmp_path / 'tfds'}",
        "data.source.min_per_class=4",
        "data.split.test=0.4",
    ]
    code, output = run_script(tmp_path, "train.py", "model=mlp", "trainer.epochs=1", *data)
    assert code == 0, output[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("tests")
    (train_run,) = client.search_runs([experiment.experiment_id])
    assert "test_accuracy" not in train_run.data.metrics  # unseen people: no classifier test

    code, output = run_script(tmp_path, "evaluate.py", f"run_id={train_run.info.run_id}")
    assert code == 0, output[-3000:]
    evaluation_run = next(
        run
        for run in client.search_runs([experiment.experiment_id])
        if run.info.run_id != train_run.info.run_id
    )
    metrics = evaluation_run.data.metrics
    # 5 people have >= 4 images (4, 5, 5, 6, 6); round(5 * 0.4) = 2 are held out, so the
    # same-person pairs number between 6 + 10 and 15 + 15.
    assert sorted(count for count in PEOPLE.values() if count >= 4) == [4, 5, 5, 6, 6]
    assert 16 <= metrics["verification_same_pairs"] <= 30
    assert 0.0 <= metrics["verification_auc"] <= 1.0
    artifacts = set(list_artifacts(client, evaluation_run.info.run_id))
    assert {"evaluation/roc.png", "evaluation/verification_pairs.json"} <= artifacts
    pairs = json.loads(
        Path(
            client.download_artifacts(
                evaluation_run.info.run_id, "evaluation/verification_pairs.json", str(tmp_path)
            )
        ).read_text()
    )  # the pairs scored, saved beside the figures: all of them at this size
    assert sum(pairs["same"]) == metrics["verification_same_pairs"]
    assert len(pairs["first"]) == metrics["verification_same_pairs"] + metrics[
        "verification_different_pairs"
    ]
