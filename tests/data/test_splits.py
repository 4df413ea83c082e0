"""Stratified, deterministic, disjoint splits."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import take_all

from zoo.data.spec import Examples, RawSplits
from zoo.data.splits import split_examples

CLASS_SIZES = (10, 12, 20, 7, 30, 9, 15, 11, 10, 25)
NAMES = tuple(f"person{c}" for c in range(len(CLASS_SIZES)))


def tagged_examples() -> Examples:
    """Each example's "image" is a unique id ``"<class>-<k>"`` (a path-like string)."""
    ids = [f"{c}-{k}" for c, size in enumerate(CLASS_SIZES) for k in range(size)]
    labels = [c for c, size in enumerate(CLASS_SIZES) for _ in range(size)]
    return Examples("tagged", np.asarray(ids), np.asarray(labels, np.int64), NAMES)


def ids_and_labels(raw: RawSplits) -> dict[str, tuple[list[str], list[int]]]:
    out = {}
    for split in ("train", "validation", "test"):
        ids, labels = take_all(getattr(raw, split))
        out[split] = ([i.decode() for i in ids], labels.tolist())
    return out


def original_class(example_id: str) -> int:
    return int(example_id.split("-")[0])


def test_stratified_by_example():
    raw = split_examples(tagged_examples(), validation=0.1, test=0.2, seed=0)
    splits = ids_and_labels(raw)
    assert raw.class_names == NAMES
    for split, fraction in (("validation", 0.1), ("test", 0.2)):
        counts = np.bincount(splits[split][1], minlength=len(NAMES))
        for size, count in zip(CLASS_SIZES, counts, strict=True):
            assert count >= 1 and abs(count - size * fraction) <= 1, (split, size, count)
    train_counts = np.bincount(splits["train"][1], minlength=len(NAMES))
    assert train_counts.min() >= 1
    for ids, labels in splits.values():  # Labels unchanged.
        assert [original_class(i) for i in ids] == labels


def test_splits_are_disjoint_and_cover_everything():
    splits = ids_and_labels(split_examples(tagged_examples(), seed=3))
    all_ids = [i for ids, _ in splits.values() for i in ids]
    assert len(all_ids) == len(set(all_ids)) == sum(CLASS_SIZES)


def test_seed_decides_the_split():
    first = ids_and_labels(split_examples(tagged_examples(), seed=0))
    again = ids_and_labels(split_examples(tagged_examples(), seed=0))
    other = ids_and_labels(split_examples(tagged_examples(), seed=1))
    assert first == again
    assert set(first["test"][0]) != set(other["test"][0])


def test_in_memory_images_follow_their_labels(mnist: Examples):
    subset = Examples("mnist", mnist.images[::10], mnist.labels[::10], mnist.class_names)
    raw = split_examples(subset, validation=0.1, test=0.2, seed=0)
    images, labels = take_all(raw.test)
    assert images.shape[1:] == (28, 28, 1) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [10] * 10  # 50 per digit * 0.2
    index = {img.tobytes(): label for img, label in zip(subset.images, subset.labels, strict=True)}
    assert all(index[img.tobytes()] == label for img, label in zip(images, labels, strict=True))


def test_identity_split_holds_out_whole_classes():
    examples = tagged_examples()
    raw = split_examples(examples, validation=0.2, test=0.3, by="identity", seed=0)
    splits = ids_and_labels(raw)
    test_classes = {original_class(i) for i in splits["test"][0]}
    train_classes = {original_class(i) for i in splits["train"][0] + splits["validation"][0]}
    assert len(test_classes) == 3  # round(10 * 0.3) whole people
    assert not test_classes & train_classes
    assert len(splits["test"][0]) == sum(CLASS_SIZES[c] for c in test_classes)
    # Test keeps the original identity labels.
    assert splits["test"][1] == [original_class(i) for i in splits["test"][0]]
    # Train / validation: contiguous 0..k-1, named by the classifier's class names.
    assert raw.class_names == tuple(NAMES[c] for c in sorted(train_classes))
    assert set(splits["train"][1]) == set(range(7))
    for split in ("train", "validation"):
        ids, labels = splits[split]
        assert [raw.class_names[label] for label in labels] == [
            NAMES[original_class(i)] for i in ids
        ]
    # Validation is stratified over the remaining classes.
    assert set(splits["validation"][1]) == set(range(7))


def test_identity_split_depends_on_the_seed():
    test_sets = {
        frozenset(split_examples(tagged_examples(), by="identity", seed=s).class_names)
        for s in range(4)
    }
    assert len(test_sets) > 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"validation": 1.5}, "validation must be a fraction in \\[0, 1\\), got 1.5"),
        ({"test": -0.1}, "test must be a fraction in \\[0, 1\\), got -0.1"),
        ({"validation": 0.5, "test": 0.5}, "leave examples for training"),
        ({"by": "person"}, "by must be one of \\('example', 'identity'\\), got 'person'"),
        ({"test": 0.95, "by": "identity"}, "leaves none for training"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        split_examples(tagged_examples(), **kwargs)


def test_class_too_small_to_stratify():
    examples = Examples(
        "tiny", np.asarray(["a", "b", "c", "d", "e"]), np.asarray([0, 0, 0, 1, 1]), ("big", "pair")
    )
    with pytest.raises(ValueError, match=r"class 'pair' has 2 example\(s\).*at least 3"):
        split_examples(examples, validation=0.1, test=0.2)
    raw = split_examples(examples, validation=0.0, test=0.4)  # One per split is enough.
    assert take_all(raw.validation)[0].size == 0
