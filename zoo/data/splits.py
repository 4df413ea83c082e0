"""Deterministic, stratified train / validation / test splits of in-memory ``Examples``.

Why not ``sklearn.model_selection`` (``StratifiedShuffleSplit``, ``GroupShuffleSplit``):
it splits two ways, so three splits take two draws whose fractions compound, and it
allocates the test size over the whole set rather than per class, so it refuses a test
split smaller than the number of classes (40 images of 10 classes, ``test=0.1``:
"The test_size = 4 should be greater or equal to the number of classes = 10"), where this
module gives every class one test and one validation example. Its draws also come from
another generator, so every published split (``split.seed`` in ``results/``) would change.
"""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from zoo.data.spec import Examples, RawSplits

logger = logging.getLogger(__name__)

SPLIT_BY = ("example", "identity")
_LISTED = 40  # held-out classes named in the log line


def _check_fraction(name: str, value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1), got {value!r}")
    return float(value)


def _check_examples(examples: Examples) -> None:
    images, labels = examples.images, examples.labels
    if len(images) != len(labels) or labels.ndim != 1:
        raise ValueError(
            f"{examples.name}: need one label per image, got {len(images)} images and labels "
            f"of shape {labels.shape}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(examples.class_names)):
        raise ValueError(
            f"{examples.name}: labels must lie in [0, {len(examples.class_names)}), got "
            f"[{labels.min()}, {labels.max()}]"
        )
    if not (examples.from_files and images.ndim == 1) and not (
        images.dtype == np.uint8 and images.ndim == 4
    ):
        raise ValueError(
            f"{examples.name}: images must be uint8 (n, h, w, c) or file paths (n,), got "
            f"{images.dtype} {images.shape}"
        )


def _split_class(
    indices: np.ndarray, validation: float, test: float, class_name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut one class's (already shuffled) example indices into train / validation / test."""
    n = len(indices)
    n_test = max(1, int(np.floor(n * test + 0.5))) if test > 0 else 0
    n_validation = max(1, int(np.floor(n * validation + 0.5))) if validation > 0 else 0
    if n - n_test - n_validation < 1:
        needed = 1 + (validation > 0) + (test > 0)
        raise ValueError(
            f"class {class_name!r} has {n} example(s), too few to stratify over validation="
            f"{validation} and test={test}: each class needs at least {needed} (one per "
            "split); drop the class, add examples, or set those fractions to 0"
        )
    return (
        indices[n_test + n_validation :],
        indices[n_test : n_test + n_validation],
        indices[:n_test],
    )


def _members_by_class(labels: np.ndarray) -> list[np.ndarray]:
    """Each label's example indices, ascending (``np.flatnonzero(labels == c)`` for every
    class at once: one stable sort instead of a pass over all labels per class)."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(labels.max(initial=-1) + 2))
    return [order[bounds[c] : bounds[c + 1]] for c in range(len(bounds) - 1)]


def _stratify(
    members: list[np.ndarray],
    classes: np.ndarray,
    class_names: tuple[str, ...],
    validation: float,
    test: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for label in classes:
        shuffled = rng.permutation(members[label])
        for part, chosen in zip(
            parts, _split_class(shuffled, validation, test, class_names[label]), strict=True
        ):
            part.append(chosen)
    train, val, tst = (
        rng.permutation(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts
    )
    return train, val, tst


def _dataset(examples: Examples, indices: np.ndarray, labels: np.ndarray) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((examples.images[indices], labels[indices]))


def split_examples(
    examples: Examples,
    validation: float = 0.1,
    test: float = 0.2,
    by: str = "example",
    seed: int = 0,
) -> RawSplits:
    """Split labelled examples three ways, reproducibly.

    ``by="example"``: every class is split on its own, ``round(n * fraction)`` of its
    examples (at least one when the fraction is > 0) to validation and to test, the rest to
    train; labels and class names are unchanged.

    ``by="identity"`` (face verification): ``round(num_classes * test)`` whole classes (at
    least one) form the test split, disjoint from train and validation; the remaining
    classes are stratified by example into train / validation with ``validation``.
    Train and validation labels are remapped to ``0..k-1`` over the k remaining classes, and
    ``RawSplits.class_names`` holds those k names, the classes a classifier sees. The test
    split keeps its ORIGINAL labels, indices into ``examples.class_names``, so that it
    only tells identities apart (same label = same person); they are not classifier outputs.

    Args:
        examples: in-memory images ``uint8 (n, h, w, c)`` or file paths ``(n,)``.
        validation: fraction in [0, 1) for the validation split.
        test: fraction in [0, 1) for the test split (of examples, or of classes).
        by: ``"example"`` or ``"identity"``.
        seed: the same seed gives the same split; another seed gives another.

    Returns:
        ``RawSplits`` of unbatched ``(image, label int64)`` pairs, each split in shuffled order.
    """
    validation = _check_fraction("validation", validation)
    test = _check_fraction("test", test)
    if by not in SPLIT_BY:
        raise ValueError(f"by must be one of {SPLIT_BY}, got {by!r}")
    if by == "example" and validation + test >= 1.0:
        raise ValueError(
            f"validation + test must leave examples for training, got {validation} + {test} "
            f"= {validation + test}; lower them"
        )
    _check_examples(examples)
    rng = np.random.default_rng(seed)
    labels = examples.labels.astype(np.int64)
    classes = np.arange(len(examples.class_names))
    counts = np.bincount(labels, minlength=len(classes))
    empty = [examples.class_names[c] for c in classes if not counts[c]]
    if empty:
        raise ValueError(
            f"{examples.name}: classes without examples cannot be split: {empty}; drop them "
            "from class_names"
        )

    members = _members_by_class(labels)
    if by == "example":
        train, val, tst = _stratify(members, classes, examples.class_names, validation, test, rng)
        return RawSplits(
            name=examples.name,
            train=_dataset(examples, train, labels),
            validation=_dataset(examples, val, labels),
            test=_dataset(examples, tst, labels),
            class_names=examples.class_names,
            shapes=examples.shapes,
        )

    n_test_classes = max(1, int(np.floor(len(classes) * test + 0.5))) if test > 0 else 0
    if len(classes) - n_test_classes < 1:
        raise ValueError(
            f"{examples.name}: test={test} of {len(classes)} classes leaves none for "
            "training; lower test or add classes"
        )
    shuffled = rng.permutation(classes)
    test_classes, train_classes = (
        np.sort(shuffled[:n_test_classes]),
        np.sort(shuffled[n_test_classes:]),
    )
    train, val, _ = _stratify(members, train_classes, examples.class_names, validation, 0.0, rng)
    tst = rng.permutation(np.flatnonzero(np.isin(labels, test_classes)))
    remap = np.full(len(classes), -1, dtype=np.int64)
    remap[train_classes] = np.arange(len(train_classes))
    train_names = tuple(examples.class_names[c] for c in train_classes)
    logger.info(
        "%s: identity split: %d classes for train/validation (labels 0..%d), %d held-out "
        "test classes keeping their original labels: %s",
        examples.name,
        len(train_classes),
        len(train_classes) - 1,
        len(test_classes),
        [examples.class_names[c] for c in test_classes[:_LISTED]]
        + ([f"... {len(test_classes) - _LISTED} more"] if len(test_classes) > _LISTED else []),
    )
    return RawSplits(
        name=examples.name,
        train=_dataset(examples, train, remap[labels]),
        validation=_dataset(examples, val, remap[labels]),
        test=_dataset(examples, tst, labels),
        class_names=train_names,
        shapes=examples.shapes,
    )
