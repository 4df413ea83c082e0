"""The scikit-learn baselines see exactly the model's split and score like scikit-learn itself."""

import numpy as np
import pytest
from entry_points import ROOT
from hydra import compose, initialize_config_dir
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.svm import SVC

from zoo.data import load_data, split_arrays
from zoo.evaluation import baselines, verification


def _compose(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_digit_baselines_are_scikit_learn_on_the_models_own_split():
    cfg = _compose("model=mlp", "data=digits", "seed=3")
    metrics = baselines.identification_metrics(cfg)
    # The model's own pipeline (augmentation and all): the same test images, in the same order.
    model_data = load_data(cfg.data, batch_size=64, seed=3)
    plain = load_data(cfg.data, batch_size=256, seed=3, augment=False)
    (test_images, test_labels), (model_test, model_labels) = (
        split_arrays(plain.test),
        split_arrays(model_data.test),
    )
    np.testing.assert_array_equal(test_labels, model_labels)
    np.testing.assert_array_equal(test_images, model_test)
    train_images, train_labels = split_arrays(plain.train)
    assert len(train_labels) == len(split_arrays(model_data.train)[1])

    flat = train_images.reshape(len(train_images), -1)
    flat_test = test_images.reshape(len(test_images), -1)
    for name, estimator in (
        ("logistic_regression", LogisticRegression(C=1.0, max_iter=2000)),
        ("rbf_svm", SVC(C=10.0, gamma="scale")),
    ):
        expected = np.mean(estimator.fit(flat, train_labels).predict(flat_test) == test_labels)
        assert metrics[f"baseline_{name}_test_accuracy"] == pytest.approx(expected)
        assert metrics[f"baseline_{name}_fit_seconds"] > 0
    assert metrics["baseline_rbf_svm_test_accuracy"] > 0.9  # 8x8 digits: an easy yardstick


def test_no_baselines_gives_no_metrics():
    assert baselines.identification_metrics(_compose("data=digits", "baselines=none")) == {}


def test_eigenfaces_verification_is_whitened_pca_and_inner_products():
    rng = np.random.default_rng(0)
    people = rng.normal(size=(6, 1, 5, 5, 1))
    train = (people[:3] + 0.3 * rng.normal(size=(3, 8, 5, 5, 1))).reshape(-1, 5, 5, 1)
    test = (people[3:] + 0.3 * rng.normal(size=(3, 6, 5, 5, 1))).reshape(-1, 5, 5, 1)
    labels = np.repeat([3, 4, 5], 6)
    spec = {"eigenfaces": {"_target_": "sklearn.decomposition.PCA", "n_components": 4,
                           "whiten": True, "random_state": 0}}
    ((result, curve),) = baselines.face_verification(spec, train, (test, labels), 3, seed=0)

    # By hand: centre on the training mean, project on the top 4 right singular vectors,
    # divide by their standard deviations, L2-normalise, compare every pair.
    flat, flat_test = train.reshape(len(train), -1), test.reshape(len(test), -1)
    mean = flat.mean(axis=0)
    _, singular, vt = np.linalg.svd(flat - mean, full_matrices=False)
    projected = (flat_test - mean) @ vt[:4].T / (singular[:4] / np.sqrt(len(flat) - 1))
    projected /= np.linalg.norm(projected, axis=1, keepdims=True)
    first, second, same = verification.all_pairs(labels)
    scores = np.sum(projected[first] * projected[second], axis=1)
    assert result.metrics["verification_auc"] == pytest.approx(roc_auc_score(same, scores))
    assert curve.same_pairs == 3 * 15 and curve.different_pairs == 153 - 45
    assert result.prefixed()["baseline_eigenfaces_verification_auc"] == curve.auc


def test_a_grid_searched_pipeline_fits_through_a_cache_to_the_same_model():
    from sklearn.decomposition import PCA
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import SVC

    rng = np.random.default_rng(0)
    x, y = rng.random((60, 30)), np.repeat(np.arange(3), 20)
    x += y[:, None] * 0.2

    def search():
        pipeline = make_pipeline(PCA(5, whiten=True, random_state=0), SVC())
        return GridSearchCV(pipeline, {"svc__C": [0.1, 1, 10]}, cv=3)

    plain, cached = search().fit(x, y), baselines._fit_small(search(), x, y)
    np.testing.assert_array_equal(
        plain.cv_results_["mean_test_score"], cached.cv_results_["mean_test_score"]
    )
    assert plain.best_params_ == cached.best_params_
    np.testing.assert_array_equal(plain.decision_function(x), cached.decision_function(x))
    assert cached.estimator.memory is None and cached.best_estimator_.memory is None


def test_the_baselines_sample_is_the_first_classes_and_training_examples():
    import tensorflow as tf

    from zoo.data.spec import RawSplits

    labels = np.array([4, 0, 1, 2, 0, 1, 3, 0, 1, 1], np.int64)
    split = tf.data.Dataset.from_tensor_slices((np.arange(10), labels))
    raw = RawSplits("toy", split, split, split, ("a", "b", "c", "d", "e"))
    chosen = baselines.sample(raw, max_classes=2, max_train_examples=4)
    assert [int(i) for i, _ in chosen.train] == [1, 2, 4, 5]  # split order, classes 0 and 1
    assert [int(i) for i, _ in chosen.test] == [1, 2, 4, 5, 7, 8, 9]
    assert chosen.class_names == ("a", "b")
    with pytest.raises(ValueError, match=r"max_classes must be a positive integer, got 0"):
        baselines.sample(raw, max_classes=0, max_train_examples=4)
