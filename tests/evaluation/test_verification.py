"""Verification metrics against hand-computed cases and scikit-learn."""

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from zoo.evaluation import verification


def test_roc_and_auc_of_a_hand_computed_case():
    # Sorted by score: same, diff, same, same, diff, diff. Of the 3 x 3 (same, diff)
    # pairs, 7 rank the same pair higher: AUC = 7/9.
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    same = np.array([True, False, True, True, False, False])
    fpr, tpr, thresholds = verification.roc_curve(scores, same)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 1 / 3, 2 / 3, 1, 1, 1])
    assert thresholds[0] == np.inf
    assert verification.auc(fpr, tpr) == pytest.approx(7 / 9)


def test_tied_scores_count_half():
    fpr, tpr, _ = verification.roc_curve(np.array([0.5, 0.5]), np.array([True, False]))
    assert verification.auc(fpr, tpr) == pytest.approx(0.5)


def test_auc_matches_scikit_learn_on_random_scores():
    rng = np.random.default_rng(0)
    same = rng.random(500) < 0.2
    scores = np.round(rng.normal(size=500) + same, 1)  # rounding makes ties
    fpr, tpr, _ = verification.roc_curve(scores, same)
    assert verification.auc(fpr, tpr) == pytest.approx(roc_auc_score(same, scores))


def test_all_pairs_and_scores():
    first, second, same = verification.all_pairs(np.array([7, 7, 3]))
    assert list(zip(first, second, same, strict=True)) == [
        (0, 1, True),
        (0, 2, False),
        (1, 2, False),
    ]
    features = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    np.testing.assert_allclose(verification.pair_scores(features, first, second), [0.6, 0, 0.8])


def test_normalisation_divides_by_training_maximum_then_l2():
    train = np.array([[4.0, 1.0, 0.0], [2.0, 2.0, 0.0]])  # maxima 4, 2, (never active) 1
    component_max = verification.fit_component_max(train)
    np.testing.assert_allclose(component_max, [4, 2, 1])
    normalised = verification.normalise(np.array([[4.0, 0.0, 0.0], [2.0, 2.0, 0.0]]), component_max)
    # [1, 0, 0] stays; [0.5, 1, 0] / sqrt(1.25)
    np.testing.assert_allclose(normalised, [[1, 0, 0], [0.5 / 1.25**0.5, 1 / 1.25**0.5, 0]])


def test_best_threshold_separates_a_hand_case():
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    same = np.array([True, True, False, False])
    assert verification.best_threshold(scores, same) == pytest.approx(0.75)


def test_ten_folds_choose_thresholds_on_the_other_folds():
    rng = np.random.default_rng(1)
    same = np.r_[np.ones(40, bool), np.zeros(60, bool)]
    separable = np.where(same, rng.uniform(0.6, 1, 100), rng.uniform(0, 0.4, 100))
    result = verification.verify(separable, same, n_folds=10)
    assert result.auc == 1.0
    np.testing.assert_array_equal(result.fold_accuracies, np.ones(10))
    assert np.all((result.fold_thresholds > 0.4) & (result.fold_thresholds < 0.6))
    # Each fold holds 4 same and 6 different pairs.
    fold = verification.folds(same, 10, seed=0)
    for k in range(10):
        assert (same[fold == k].sum(), (~same[fold == k]).sum()) == (4, 6)

    # One same pair scored below every different pair: the fold holding it gets balanced
    # accuracy (3/4 + 1) / 2 = 0.875, every other fold 1.0.
    scores = separable.copy()
    scores[0] = -1.0
    result = verification.verify(scores, same, n_folds=10)
    assert sorted(result.fold_accuracies)[0] == pytest.approx(0.875)
    assert result.accuracy_mean == pytest.approx((9 + 0.875) / 10)
    assert result.auc == pytest.approx(1 - 1 / 40)


def test_clear_errors():
    with pytest.raises(ValueError, match="both same and different pairs"):
        verification.roc_curve(np.array([0.1, 0.2]), np.array([True, True]))
    with pytest.raises(ValueError, match="at least 10 same"):
        verification.verify(np.arange(6.0), np.array([1, 0, 1, 0, 1, 0], bool))


def test_best_threshold_matches_a_brute_force_search():
    rng = np.random.default_rng(2)
    same = rng.random(300) < 0.3
    scores = np.round(rng.normal(size=300) + same, 1)
    threshold = verification.best_threshold(scores, same)

    def balanced(t):
        called = scores >= t
        return (np.mean(called[same]) + np.mean(~called[~same])) / 2

    brute = max(balanced(t) for t in np.r_[np.unique(scores), np.inf])
    assert balanced(threshold) == pytest.approx(brute)


def test_a_learned_metric_is_its_own_transform_as_an_affine_map_and_survives_json():
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 6)
    train = np.abs(rng.normal(size=(30, 12)) + labels[:, None])
    test = np.abs(rng.normal(size=(9, 12)))
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto")
    embedding = verification.fit_embedding(train, labels, lda)
    rows = verification.normalise(test, verification.fit_component_max(train))
    expected = lda.transform(rows)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(embedding(test), expected, atol=1e-10)
    restored = verification.Embedding.from_dict(json.loads(json.dumps(embedding.to_dict())))
    np.testing.assert_allclose(restored(test), expected, atol=1e-10)
    plain = verification.Embedding.from_dict(verification.fit_embedding(train).to_dict())
    np.testing.assert_allclose(plain(test), rows)
    unsupervised = verification.fit_embedding(train, labels, PCA(n_components=4))
    assert unsupervised(test).shape == (9, 4)


def test_a_nonlinear_or_unlabelled_metric_is_refused_by_name():
    from sklearn.preprocessing import PolynomialFeatures

    train, labels = np.abs(np.random.default_rng(1).normal(size=(10, 3))), np.arange(10) % 2
    with pytest.raises(ValueError, match="PolynomialFeatures is not a linear map"):
        verification.fit_embedding(train, labels, PolynomialFeatures())
    with pytest.raises(ValueError, match="needs the training people's labels"):
        verification.fit_embedding(train, None, PolynomialFeatures())


def test_sampled_pairs_follow_lfw_s_protocol_per_fold():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 500, 5000)  # ~10 faces each of 500 people: 12.5 M pairs
    pairs = verification.sampled_pairs(labels, n_folds=10, per_fold=300, seed=4)
    assert np.array_equal(pairs.same, labels[pairs.first] == labels[pairs.second])
    assert np.all(pairs.first < pairs.second)  # no image with itself, each pair once
    assert len({(a, b) for a, b in zip(pairs.first, pairs.second, strict=True)}) == 6000
    for fold in range(10):  # 300 same and 300 different pairs per fold
        in_fold = pairs.fold == fold
        assert pairs.same[in_fold].sum() == 300 and (~pairs.same[in_fold]).sum() == 300
    # Seeded: the same pairs again; another seed draws others.
    again = verification.sampled_pairs(labels, n_folds=10, per_fold=300, seed=4)
    assert np.array_equal(again.first, pairs.first) and np.array_equal(again.second, pairs.second)
    other = verification.sampled_pairs(labels, n_folds=10, per_fold=300, seed=5)
    assert not np.array_equal(other.first, pairs.first)
    # Same pairs spread over the people like all same pairs do (not a few people's).
    assert len(np.unique(labels[pairs.first[pairs.same]])) > 450


def test_all_pairs_are_kept_while_they_fit_and_few_same_pairs_are_all_used():
    labels = np.array([0, 0, 1, 1, 1, 2, 3, 4])
    chosen = verification.choose_pairs(labels, n_folds=2, seed=0, max_pairs=28, per_fold=300)
    first, second, same = verification.all_pairs(labels)
    assert chosen.fold is None and np.array_equal(chosen.first, first)
    assert np.array_equal(chosen.second, second)
    assert np.array_equal(chosen.same, same)
    sampled = verification.choose_pairs(labels, n_folds=2, seed=0, max_pairs=27, per_fold=300)
    assert sampled.same.sum() == 4  # every same pair there is: 1 + 3
    assert (~sampled.same).sum() == 24  # and every different one
    result = verification.verify(
        np.where(sampled.same, 1.0, 0.0), sampled.same, n_folds=2, fold=sampled.fold
    )
    assert result.accuracy_mean == 1.0
