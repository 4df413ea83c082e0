"""Classical yardsticks, computed with scikit-learn on exactly the split a zoo model sees.

A zoo result means little without a baseline a student would write in ten lines: eigenfaces
(PCA with whitening) + an RBF SVM for face identification, eigenfaces compared by inner
product for face verification, logistic regression and an RBF SVM on the pixels of digits.
The estimators are configuration (`conf/baselines/`, instantiated with Hydra), fitted on the
training split only (any tuning is cross-validation inside it), and scored on the same test
images, or the same verification pairs, as the model.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from zoo.data import load_data, load_raw, split_arrays
from zoo.data.spec import RawSplits
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


def _accuracy(estimator: Any, test: tuple[np.ndarray, np.ndarray] | Iterable) -> float:
    """Share of `test` the estimator gets right: one array pair, or batches of them."""
    batches = [test] if isinstance(test, tuple) else test
    correct = total = 0
    for images, labels, *_ in batches:
        correct += int(np.sum(estimator.predict(flat_pixels(images)) == np.asarray(labels)))
        total += len(labels)
    return correct / total if total else float("nan")


def identification(
    estimators: Mapping[str, Any],
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray] | Iterable,
) -> list[BaselineResult]:
    """Fit each configured classifier on `train`, report its accuracy on `test`.

    Args:
        estimators: `{name: Hydra config of a scikit-learn classifier}`.
        train: `(images (n, h, w, c), labels (n,))` of the model's own split.
        test: the same, or batches of it (a tf.data split), scored a batch at a time.
    """
    train_images, train_labels = train
    features = flat_pixels(train_images)
    results = []
    for name, spec in estimators.items():
        estimator = instantiate(spec, _convert_="all")
        start = time.perf_counter()
        _fit_small(estimator, features, train_labels)
        seconds = time.perf_counter() - start
        accuracy = _accuracy(estimator, test)
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
    pairs: verification.Pairs | None = None,
) -> list[tuple[BaselineResult, verification.VerificationResult]]:
    """Eigenfaces-style verification on the model's identity-disjoint test split.

    Each configured embedder (e.g. PCA with whitening) is fitted on the training people's
    images; test faces are projected, L2-normalised and every pair is scored by inner
    product, with the same pairs and folds (``pairs``, by default all; `seed`) as the
    model's own verification.
    """
    test_images, test_labels = test
    pairs = pairs or verification.Pairs.every(test_labels)
    results = []
    for name, spec in embedders.items():
        embedder = instantiate(spec, _convert_="all")
        start = time.perf_counter()
        _fit_small(embedder, flat_pixels(train_images))
        seconds = time.perf_counter() - start
        features = embedder.transform(flat_pixels(test_images))
        features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        scores = verification.pair_scores(features, pairs.first, pairs.second)
        result = verification.verify(
            scores, pairs.same, n_folds=n_folds, seed=seed, fold=pairs.fold
        )
        log.info(
            "Baseline %s verification: AUC %.4f, accuracy %.4f ± %.4f",
            name,
            result.auc,
            result.accuracy_mean,
            result.accuracy_std,
        )
        results.append((BaselineResult(name, result.metrics(), seconds), result))
    return results


def sample(raw: RawSplits, max_classes: int, max_train_examples: int) -> RawSplits:
    """The baselines' share of a data set: the first `max_classes` classes (by label) and,
    of their training examples, the first `max_train_examples` in the split's (random)
    order; their test examples all. Chosen before any image is decoded.

    A classical baseline's cost grows with both (an RBF SVM trains one classifier per pair
    of classes), so on a data set of thousands of people it is scored on a stated sample;
    on the offline sets (40 people, 10 digits) the sample is the whole split.
    """
    for name, value in (("max_classes", max_classes), ("max_train_examples", max_train_examples)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"baselines.{name} must be a positive integer, got {value!r}")

    def within(split):
        return split.filter(lambda image, label: label < max_classes)

    return dataclasses.replace(
        raw,
        train=within(raw.train).take(max_train_examples),
        validation=within(raw.validation),
        test=within(raw.test),
        class_names=raw.class_names[:max_classes],
    )


def identification_metrics(cfg: DictConfig) -> dict[str, float]:
    """`baseline_<name>_test_accuracy` (and fit time) of `cfg.baselines.identification`,
    fitted on (a sample of, `sample`) the run's training split and scored on its test split
    of the same classes, a batch at a time."""
    settings = cfg.get("baselines") or {}
    estimators = settings.get("identification") or {}
    if not estimators:
        return {}
    limits = (settings.get("max_classes", 100), settings.get("max_train_examples", 4000))
    raw = sample(load_raw(cfg.data, seed=cfg.seed), *limits)
    data = load_data(cfg.data, batch_size=256, seed=cfg.seed, augment=False, raw=raw)
    train_images, train_labels = split_arrays(data.train)
    log.info(
        "Baselines on %d training examples of %d classes (baselines.max_classes=%d, "
        "baselines.max_train_examples=%d)",
        len(train_labels),
        len(np.unique(train_labels)),
        *limits,
    )
    results = identification(estimators, (train_images, train_labels), data.test)
    return {key: value for result in results for key, value in result.prefixed().items()}
