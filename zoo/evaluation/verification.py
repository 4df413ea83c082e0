"""Face verification: DeepFace's normalised representation, all pairs, and LFW-style 10 folds.

The representation is normalised as the paper describes: each component divided by its
maximum over the training set, then L2-normalised; two faces are compared by the inner
product of their normalised representations (the paper's unsupervised metric).
Optionally (`verification.metric` in conf/evaluate.yaml), a linear projection learned on the
training people only (e.g. Fisher's discriminant, `sklearn.discriminant_analysis`) maps the
normalised representations before they are L2-normalised again and compared: a learned
metric in the place of the paper's weighted chi-squared SVM and Siamese network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import metrics as sk_metrics


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def fit_component_max(train_features: np.ndarray) -> np.ndarray:
    """Per-component maximum over the training set; components never active divide by 1."""
    maximum = np.max(np.asarray(train_features, dtype="float64"), axis=0)
    return np.where(maximum > 0, maximum, 1.0)


def normalise(features: np.ndarray, component_max: np.ndarray) -> np.ndarray:
    """Divide each component by its training-set maximum, then L2-normalise each row."""
    return _unit_rows(np.asarray(features, dtype="float64") / component_max)


@dataclass(frozen=True)
class Embedding:
    """How raw representations become the unit rows that are compared by inner product.

    Attributes:
        component_max: per-component training maxima (the paper's normalisation).
        offset, projection: the learned metric, `rows @ projection + offset` applied to the
            normalised rows and L2-normalised again; None: the paper's metric alone.
    """

    component_max: np.ndarray
    offset: np.ndarray | None = None
    projection: np.ndarray | None = None

    def __call__(self, features: np.ndarray) -> np.ndarray:
        rows = normalise(features, self.component_max)
        if self.projection is None:
            return rows
        return _unit_rows(rows @ self.projection + self.offset)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what `verify=[a, b]` needs to compare two new faces."""
        learned = self.projection is not None
        return {
            "component_max": self.component_max.tolist(),
            "offset": self.offset.tolist() if learned else None,
            "projection": self.projection.tolist() if learned else None,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Embedding:
        learned = values.get("projection") is not None
        return cls(
            np.asarray(values["component_max"], dtype="float64"),
            np.asarray(values["offset"], dtype="float64") if learned else None,
            np.asarray(values["projection"], dtype="float64") if learned else None,
        )


def _affine_map(transformer: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(offset, projection)` with `transformer.transform(x) == x @ projection + offset`,
    read off the fitted transformer at zero and at each unit vector, then checked on `rows`."""
    dim = rows.shape[1]
    offset = np.asarray(transformer.transform(np.zeros((1, dim))), dtype="float64")[0]
    projection = np.asarray(transformer.transform(np.eye(dim)), dtype="float64") - offset
    expected = np.asarray(transformer.transform(rows), dtype="float64")
    if not np.allclose(rows @ projection + offset, expected, rtol=1e-6, atol=1e-8):
        raise ValueError(
            f"verification.metric {type(transformer).__name__} is not a linear map; use a "
            "linear transformer (LinearDiscriminantAnalysis, PCA) or metric: null"
        )
    return offset, projection


def fit_embedding(
    train_features: np.ndarray, train_labels: np.ndarray | None = None, metric: Any = None
) -> Embedding:
    """The paper's normalisation fitted on the training people, and `metric` (a scikit-learn
    linear transformer, fitted on their normalised representations and labels) if given."""
    component_max = fit_component_max(train_features)
    if metric is None:
        return Embedding(component_max)
    if train_labels is None:
        raise ValueError("a learned verification.metric needs the training people's labels")
    rows = normalise(train_features, component_max)
    metric.fit(rows, np.asarray(train_labels))
    return Embedding(component_max, *_affine_map(metric, rows))


def all_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every unordered pair `i < j`: `(first, second, same)` with `same` True for one person."""
    labels = np.asarray(labels)
    first, second = np.triu_indices(len(labels), k=1)
    return first, second, labels[first] == labels[second]


@dataclass(frozen=True)
class Pairs:
    """Pairs of test images to verify: indices into the test split's order, whether each
    pair is one person, and (when drawn per fold, LFW-style) each pair's fold."""

    first: np.ndarray
    second: np.ndarray
    same: np.ndarray
    fold: np.ndarray | None = None

    @classmethod
    def every(cls, labels: np.ndarray) -> Pairs:
        """Every unordered pair of the test split (`all_pairs`); `verify` draws the folds."""
        return cls(*all_pairs(labels))

    def to_dict(self) -> dict[str, Any]:
        return {
            "first": self.first.tolist(),
            "second": self.second.tolist(),
            "same": self.same.astype(int).tolist(),
            "fold": None if self.fold is None else self.fold.tolist(),
        }


def sampled_pairs(labels: np.ndarray, n_folds: int, per_fold: int, seed: int) -> Pairs:
    """LFW's protocol on a test split too big for all pairs: each of ``n_folds`` folds gets
    ``per_fold`` same-person and ``per_fold`` different-person pairs, drawn with ``seed``,
    no pair twice (fewer same pairs when the split has fewer)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    wanted = n_folds * per_fold
    order = np.argsort(labels, kind="stable")
    people, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    weights = counts * (counts - 1) / 2.0  # same pairs each person offers
    available = int(weights.sum())

    def unique_pairs(first: np.ndarray, second: np.ndarray, keep: int) -> tuple:
        low, high = np.minimum(first, second), np.maximum(first, second)
        _, index = np.unique(low.astype(np.int64) * len(labels) + high, return_index=True)
        index = np.sort(index)[:keep]  # first drawn first: the draw decides, not the sort
        return low[index], high[index]

    same_first, same_second = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if available:
        target = min(wanted, available)
        while len(same_first) < target:
            person = rng.choice(len(people), size=4 * target, p=weights / weights.sum())
            a = rng.integers(0, counts[person])
            b = (a + rng.integers(1, np.maximum(counts[person], 2))) % counts[person]
            first, second = order[starts[person] + a], order[starts[person] + b]
            same_first, same_second = unique_pairs(
                np.r_[same_first, first], np.r_[same_second, second], target
            )
    first = rng.integers(0, len(labels), 4 * wanted)
    second = rng.integers(0, len(labels), 4 * wanted)
    different = labels[first] != labels[second]
    diff_first, diff_second = unique_pairs(first[different], second[different], wanted)
    same = np.r_[np.ones(len(same_first), bool), np.zeros(len(diff_first), bool)]
    fold = np.r_[np.arange(len(same_first)) % n_folds, np.arange(len(diff_first)) % n_folds]
    return Pairs(np.r_[same_first, diff_first], np.r_[same_second, diff_second], same, fold)


def choose_pairs(
    labels: np.ndarray, n_folds: int, seed: int, max_pairs: int, per_fold: int
) -> Pairs:
    """Every pair when there are at most ``max_pairs`` of them (folds drawn by `verify`),
    else ``sampled_pairs``."""
    count = len(labels) * (len(labels) - 1) // 2
    if count <= max_pairs:
        return Pairs.every(labels)
    return sampled_pairs(labels, n_folds, per_fold, seed)


def pair_scores(features: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Inner products of normalised representations: higher means more alike."""
    return np.einsum("ij,ij->i", features[first], features[second])


def roc_curve(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold, `score >= threshold` = same.

    Returns `(fpr, tpr, thresholds)`, starting at (0, 0) with threshold +inf.
    """
    scores, same = np.asarray(scores, dtype="float64"), np.asarray(same, dtype=bool)
    positives, negatives = same.sum(), (~same).sum()
    if positives == 0 or negatives == 0:
        raise ValueError(
            f"a ROC curve needs both same and different pairs, got {positives} same and "
            f"{negatives} different; use a test split with at least two people and two "
            "images of one person"
        )
    # Every distinct threshold kept (drop_intermediate=False): the curve is plotted and
    # integrated as it is, and its first point is (0, 0) at threshold +inf.
    fpr, tpr, thresholds = sk_metrics.roc_curve(same, scores, drop_intermediate=False)
    return fpr, tpr, thresholds


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under the ROC curve by the trapezoid rule (ties give the diagonal segment)."""
    return float(sk_metrics.auc(fpr, tpr))


def _balanced_accuracy(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    predicted = scores >= threshold
    return 0.5 * (np.mean(predicted[same]) + np.mean(~predicted[~same]))


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold with the highest balanced accuracy, midway between two sorted scores.

    One sort and two cumulative sums: O(n log n) for the ~10^5 pairs of a test split.
    Ours, not `argmax(tpr - fpr)` over scikit-learn's ROC thresholds (the same balanced
    accuracy): those thresholds are the scores themselves, and a threshold applied to
    held-out folds should sit between the two classes, not on a training pair's score.
    """
    values, inverse = np.unique(scores, return_inverse=True)
    same_below = np.r_[0, np.cumsum(np.bincount(inverse, weights=same, minlength=len(values)))]
    different_below = np.r_[
        0, np.cumsum(np.bincount(inverse, weights=~same, minlength=len(values)))
    ]
    # Threshold k sits below values[k]: pairs with index >= k are called "same".
    true_positive_rate = 1 - same_below / max(same.sum(), 1)
    true_negative_rate = different_below / max((~same).sum(), 1)
    k = int(np.argmax(true_positive_rate + true_negative_rate))
    candidates = np.r_[values[0] - 1.0, (values[:-1] + values[1:]) / 2, values[-1] + 1.0]
    return float(candidates[k])


@dataclass(frozen=True)
class VerificationResult:
    """ROC over all pairs and the 10-fold accuracy (threshold chosen on the other 9 folds)."""

    fpr: np.ndarray
    tpr: np.ndarray
    auc: float
    fold_accuracies: np.ndarray
    fold_thresholds: np.ndarray
    same_pairs: int
    different_pairs: int
    threshold: float = float("nan")

    @property
    def accuracy_mean(self) -> float:
        return float(np.mean(self.fold_accuracies))

    @property
    def accuracy_std(self) -> float:
        return float(np.std(self.fold_accuracies))

    def metrics(self, prefix: str = "verification_") -> dict[str, float]:
        return {
            f"{prefix}auc": self.auc,
            f"{prefix}accuracy_mean": self.accuracy_mean,
            f"{prefix}accuracy_std": self.accuracy_std,
            f"{prefix}threshold_mean": float(np.mean(self.fold_thresholds)),
            f"{prefix}threshold": self.threshold,
            f"{prefix}same_pairs": float(self.same_pairs),
            f"{prefix}different_pairs": float(self.different_pairs),
        }


def folds(same: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold index per pair; same and different pairs are each spread evenly over the folds.

    `sklearn.model_selection.StratifiedKFold(shuffle=True)` does the same job but draws
    another assignment from the seed; ours is kept so published fold results stay the same.
    """
    rng = np.random.default_rng(seed)
    fold = np.empty(len(same), dtype=np.int64)
    for kind in (True, False):
        members = rng.permutation(np.flatnonzero(same == kind))
        fold[members] = np.arange(len(members)) % n_folds
    return fold


def verify(
    scores: np.ndarray,
    same: np.ndarray,
    n_folds: int = 10,
    seed: int = 0,
    fold: np.ndarray | None = None,
) -> VerificationResult:
    """The LFW protocol on scored pairs: ROC/AUC over all pairs, and `n_folds`-fold accuracy.

    For each fold, the threshold that maximises accuracy on the other folds is applied to
    it. Accuracy is balanced (mean of the same-pair and different-pair accuracies), which
    is what LFW's folds of 300 same + 300 different pairs measure; all-pairs test sets
    hold far more different pairs than same ones. `fold` gives each pair's fold (LFW's
    official ones, `0..n_folds-1`); by default `folds(same, n_folds, seed)` draws them.
    The result's `threshold` is the one chosen on all pairs: the operating threshold for
    verifying new pairs.
    """
    scores, same = np.asarray(scores, dtype="float64"), np.asarray(same, dtype=bool)
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    if same.sum() < n_folds or (~same).sum() < n_folds:
        raise ValueError(
            f"{n_folds}-fold verification needs at least {n_folds} same and {n_folds} "
            f"different pairs, got {same.sum()} and {(~same).sum()}; lower the folds "
            "(verification.folds) or test on more people"
        )
    fpr, tpr, _ = roc_curve(scores, same)
    if fold is None:
        fold = folds(same, n_folds, seed)
    elif np.shape(fold) != same.shape or set(np.unique(fold)) != set(range(n_folds)):
        raise ValueError(
            f"fold must give each of the {len(same)} pairs a fold in 0..{n_folds - 1}, every "
            f"fold used; got shape {np.shape(fold)}, folds {np.unique(fold)[:12].tolist()}"
        )
    accuracies, thresholds = [], []
    for k in range(n_folds):
        held_out = fold == k
        threshold = best_threshold(scores[~held_out], same[~held_out])
        thresholds.append(threshold)
        accuracies.append(_balanced_accuracy(scores[held_out], same[held_out], threshold))
    return VerificationResult(
        fpr=fpr,
        tpr=tpr,
        auc=auc(fpr, tpr),
        fold_accuracies=np.array(accuracies),
        fold_thresholds=np.array(thresholds),
        same_pairs=int(same.sum()),
        different_pairs=int((~same).sum()),
        threshold=best_threshold(scores, same),
    )


def verify_representations(
    train_features: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    n_folds: int = 10,
    seed: int = 0,
    train_labels: np.ndarray | None = None,
    metric: Any = None,
    pairs: Pairs | None = None,
) -> tuple[VerificationResult, Embedding]:
    """Fit the embedding on the training people (`fit_embedding`), score the test pairs
    (``pairs``; by default all of them), run `verify`; returns the result and the embedding
    that scored it."""
    embedding = fit_embedding(train_features, train_labels, metric)
    features = embedding(test_features)
    pairs = pairs or Pairs.every(test_labels)
    scores = pair_scores(features, pairs.first, pairs.second)
    return verify(scores, pairs.same, n_folds=n_folds, seed=seed, fold=pairs.fold), embedding
