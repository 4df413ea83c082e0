"""Face verification: DeepFace's normalised representation, all pairs, and LFW-style 10 folds.

The representation is normalised as the paper describes: each component divided by its
maximum over the training set, then L2-normalised; two faces are compared by the inner
product of their normalised representations (the paper's unsupervised metric).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn import metrics as sk_metrics


def fit_component_max(train_features: np.ndarray) -> np.ndarray:
    """Per-component maximum over the training set; components never active divide by 1."""
    maximum = np.max(np.asarray(train_features, dtype="float64"), axis=0)
    return np.where(maximum > 0, maximum, 1.0)


def normalise(features: np.ndarray, component_max: np.ndarray) -> np.ndarray:
    """Divide each component by its training-set maximum, then L2-normalise each row."""
    scaled = np.asarray(features, dtype="float64") / component_max
    norms = np.linalg.norm(scaled, axis=1, keepdims=True)
    return scaled / np.where(norms > 0, norms, 1.0)


def all_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every unordered pair `i < j`: `(first, second, same)` with `same` True for one person."""
    labels = np.asarray(labels)
    first, second = np.triu_indices(len(labels), k=1)
    return first, second, labels[first] == labels[second]


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
) -> VerificationResult:
    """Normalise with training-set maxima, score all test pairs, run `verify`."""
    component_max = fit_component_max(train_features)
    features = normalise(test_features, component_max)
    first, second, same = all_pairs(test_labels)
    return verify(pair_scores(features, first, second), same, n_folds=n_folds, seed=seed)
