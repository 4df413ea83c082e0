"""Classical yardsticks, computed with scikit-learn on exactly the split a zoo model sees.

A zoo result means little without a baseline a student would write in ten lines: eigenfaces
(PCA with whitening) + an RBF SVM for face identification, eigenfaces compared by inner
product for face verification, logistic regression and an RBF SVM on the pixels of digits.
The estimators are configuration (`conf/baselines/`, instantiated with Hydra), fitted on the
training split only (any tuning is cross-validation inside it), and scored on the same test
images, or the same verification pairs, as the model.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from zoo.data import load_data, split_arrays
from zoo.evaluation import verification

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineResult:
    """One baseline's score on the test split, what fitting it cost, the fitted estimator."""

    name: str
    metrics: dict[str, float]
    fit_seconds: float
    estimator: Any = field(default=None, repr=False, compare=False)

    def prefixed(self) -> dict[str, float]:
        """`{"baseline_<name>_<metric>": value}`, fit time included, for the tracking store."""
        values = {**self.metrics, "fit_seconds": self.fit_seconds}
        return {f"baseline_{self.name}_{key}": value for key, value in values.items()}


def flat_pixels(images: np.ndarray) -> np.ndarray:
    """`(n, h, w, c)` images in [0, 1] → `(n, h*w*c)` float64 rows, the estimators' input."""
    return np.asarray(images, dtype="float64").reshape(len(images), -1)


def _fit_small(estimator: Any, features: np.ndarray, labels: np.ndarray | None = None) -> Any:
    """Fit `estimator`, first lowering any `n_components` above half the training examples
    (a tiny data set, or a cross-validation fold of one), with a log line saying so.

    A pipeline inside a grid search gets a scratch `memory` for the fit (scikit-learn's own
    transformer cache): its PCA is fitted once per fold instead of once per grid point,
    with the same result.
    """
    limit = max(1, len(features) // 2)
    params = estimator.get_params(deep=True)
    for key, value in params.items():
        if key.endswith("n_components") and isinstance(value, int) and value > limit:
            log.info(
                "Baseline: %s=%d lowered to %d for %d examples", key, value, limit, len(features)
            )
            estimator.set_params(**{key: limit})
    cached = "param_grid" in params and params.get("estimator__memory", False) is None
    with tempfile.TemporaryDirectory(prefix="zoo-baseline-") as cache:
        if cached:
            estimator.set_params(estimator__memory=cache)
        estimator.fit(features, labels)
    if cached:  # the cache is gone: nothing may point at it
        estimator.set_params(estimator__memory=None)
        estimator.best_estimator_.set_params(memory=None)
    return estimator


def identification(
    estimators: Mapping[str, Any],
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
) -> list[BaselineResult]:
    """Fit each configured classifier on `train`, report its accuracy on `test`.

    Args:
        estimators: `{name: Hydra config of a scikit-learn classifier}`.
        train, test: `(images (n, h, w, c), labels (n,))` of the model's own splits.
    """
    (train_images, train_labels), (test_images, test_labels) = train, test
    features, test_features = flat_pixels(train_images), flat_pixels(test_images)
    results = []
    for name, spec in estimators.items():
        estimator = instantiate(spec, _convert_="all")
        start = time.perf_counter()
        _fit_small(estimator, features, train_labels)
        seconds = time.perf_counter() - start
        accuracy = float(np.mean(estimator.predict(test_features) == test_labels))
        chosen = getattr(estimator, "best_params_", None)
        log.info(
            "Baseline %s: test accuracy %.4f (fit %.1f s%s)",
            name,
            accuracy,
            seconds,
            f", chosen by cross-validation on train: {chosen}" if chosen else "",
        )
        results.append(BaselineResult(name, {"test_accuracy": accuracy}, seconds, estimator))
    return results


def face_verification(
    embedders: Mapping[str, Any],
    train_images: np.ndarray,
    test: tuple[np.ndarray, np.ndarray],
    n_folds: int,
    seed: int,
) -> list[tuple[BaselineResult, verification.VerificationResult]]:
    """Eigenfaces-style verification on the model's identity-disjoint test split.

    Each configured embedder (e.g. PCA with whitening) is fitted on the training people's
    images; test faces are projected, L2-normalised and every pair is scored by inner
    product, with the same pairs and folds (`seed`) as the model's own verification.
    """
    test_images, test_labels = test
    first, second, same = verification.all_pairs(test_labels)
    results = []
    for name, spec in embedders.items():
        embedder = instantiate(spec, _convert_="all")
        start = time.perf_counter()
        _fit_small(embedder, flat_pixels(train_images))
        seconds = time.perf_counter() - start
        features = embedder.transform(flat_pixels(test_images))
        features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        scores = verification.pair_scores(features, first, second)
        result = verification.verify(scores, same, n_folds=n_folds, seed=seed)
        log.info(
            "Baseline %s verification: AUC %.4f, accuracy %.4f ± %.4f",
            name,
            result.auc,
            result.accuracy_mean,
            result.accuracy_std,
        )
        results.append((BaselineResult(name, result.metrics(), seconds), result))
    return results


def identification_metrics(cfg: DictConfig) -> dict[str, float]:
    """`baseline_<name>_test_accuracy` (and fit time) of `cfg.baselines.identification`,
    fitted on the run's training split and scored on its test split."""
    estimators = (cfg.get("baselines") or {}).get("identification") or {}
    if not estimators:
        return {}
    data = load_data(cfg.data, batch_size=256, seed=cfg.seed, augment=False)
    train, test = split_arrays(data.train), split_arrays(data.test)
    results = identification(estimators, train, test)
    return {key: value for result in results for key, value in result.prefixed().items()}
