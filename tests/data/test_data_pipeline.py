"""The tf.data pipeline: shapes, values, batching, augmentation, file sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from data_helpers import take_all
from PIL import Image

from zoo.data.folder import load_folder
from zoo.data.orl import OrlReport
from zoo.data.pipeline import build_datasets
from zoo.data.spec import DataSpec, Examples, RawSplits
from zoo.data.splits import split_examples


def raw_from_arrays(images: np.ndarray, labels: np.ndarray | None = None) -> RawSplits:
    """The same examples in all three splits; label = position unless given."""
    labels = np.arange(len(images)) if labels is None else labels
    split = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int64)))
    names = tuple(str(i) for i in range(int(labels.max()) + 1))
    return RawSplits("arrays", split, split, split, names)


def random_images(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """uint8 images with no zero pixel, so a zero-filled border is unambiguous."""
    return np.random.default_rng(seed).integers(1, 256, size=shape, dtype=np.uint8)


def shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``image`` moved down by dy and right by dx, vacated pixels zero."""
    height, width = image.shape[:2]
    out = np.zeros_like(image)
    out[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = image[
        max(-dy, 0) : height - max(dy, 0), max(-dx, 0) : width - max(dx, 0)
    ]
    return out


def orl_examples(report: OrlReport, people: int | None = None) -> Examples:
    keep = report.labels < (people or len(report.class_names))
    names = report.class_names[: people or len(report.class_names)]
    return Examples("orl_faces", report.images[keep], report.labels[keep], names)


def test_orl_resized_to_deepface_input(orl_report: OrlReport):
    raw = split_examples(orl_examples(orl_report), validation=0.2, test=0.2, seed=0)
    data = build_datasets(raw, batch_size=32, image_size=(152, 152), channels=3)
    assert data.spec == DataSpec("orl_faces", (152, 152, 3), 40, orl_report.class_names)
    images, labels = next(iter(data.train))
    assert images.shape == (32, 152, 152, 3) and images.dtype == tf.float32
    assert labels.shape == (32,) and labels.dtype == tf.int32
    test_images, test_labels = take_all(data.test)
    assert test_images.min() >= 0.0 and test_images.max() <= 1.0
    np.testing.assert_array_equal(test_images[..., 0], test_images[..., 2])  # grey → RGB
    # Resizing keeps the brightness of the original test images.
    raw_test, raw_labels = take_all(raw.test)
    assert abs(test_images.mean() - raw_test.mean() / 255) < 0.005
    np.testing.assert_array_equal(test_labels, raw_labels)
    counts = [len(take_all(s)[1]) for s in (data.train, data.validation)] + [len(test_labels)]
    assert sum(counts) == 398


def test_unresized_values_are_pixels_over_255_and_batches_cover_the_split(mnist: Examples):
    subset = Examples("mnist", mnist.images[::5], mnist.labels[::5], mnist.class_names)
    raw = split_examples(subset, validation=0.1, test=0.2, seed=0)
    data = build_datasets(raw, batch_size=64)
    assert data.spec.input_shape == (28, 28, 1) and data.spec.num_classes == 10
    raw_images, raw_labels = take_all(raw.test)
    sizes = [int(labels.shape[0]) for _, labels in data.test]
    assert sizes == [64, 64, 64, 8]  # 200 test images
    images, labels = take_all(data.test)
    np.testing.assert_array_equal(images, raw_images.astype(np.float32) / 255)
    np.testing.assert_array_equal(labels, raw_labels)


def test_rgb_to_grey_uses_luma_weights():
    colour = random_images((6, 5, 4, 3))
    data = build_datasets(raw_from_arrays(colour), batch_size=6, channels=1, cache=False)
    grey, _ = take_all(data.test)
    expected = colour.astype(np.float64) @ np.array([0.2989, 0.587, 0.114]) / 255
    assert grey.shape == (6, 5, 4, 1) and data.spec.input_shape == (5, 4, 1)
    np.testing.assert_allclose(grey[..., 0], expected, atol=1e-3)


def by_label(dataset: tf.data.Dataset) -> dict[int, np.ndarray]:
    images, labels = take_all(dataset)
    return dict(zip(labels.tolist(), images, strict=True))


def test_flip_only_on_train():
    originals = random_images((32, 6, 7, 1)).astype(np.float32) / 255
    raw = raw_from_arrays((originals * 255).round().astype(np.uint8))
    plain = build_datasets(raw, batch_size=8)
    flipped = build_datasets(raw, batch_size=8, augment={"horizontal_flip": True})
    for split in ("validation", "test"):
        np.testing.assert_array_equal(
            take_all(getattr(flipped, split))[0], take_all(getattr(plain, split))[0]
        )
    outcomes = []
    for label, image in by_label(flipped.train).items():
        if np.array_equal(image, originals[label]):
            outcomes.append("kept")
        else:
            np.testing.assert_array_equal(image, originals[label][:, ::-1])
            outcomes.append("flipped")
    assert set(outcomes) == {"kept", "flipped"}


def test_shift_moves_by_at_most_max_shift():
    originals = random_images((24, 9, 8, 1)).astype(np.float32) / 255
    raw = raw_from_arrays((originals * 255).round().astype(np.uint8))
    data = build_datasets(raw, batch_size=8, augment={"max_shift": 2})
    moves = set()
    for label, image in by_label(data.train).items():
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(image, shift(originals[label], dy, dx))
        ]
        assert len(found) == 1, label
        moves.add(found[0])
    assert len(moves) > 3


def dot_images(count: int, size: int = 41, at: tuple[int, int] = (8, 30)) -> np.ndarray:
    """``count`` black images with one white 3x3 dot centred at ``at`` (row, column)."""
    images = np.zeros((count, size, size, 1), np.uint8)
    images[:, at[0] - 1 : at[0] + 2, at[1] - 1 : at[1] + 2] = 255
    return images


def polar(image: np.ndarray) -> tuple[float, float]:
    """(radius, angle in degrees) of the image's brightness centroid about the centre."""
    rows, cols = np.indices(image.shape[:2])
    weight = image[..., 0] / image[..., 0].sum()
    centre = (image.shape[0] - 1) / 2
    dy, dx = np.sum(weight * rows) - centre, np.sum(weight * cols) - centre
    return float(np.hypot(dy, dx)), float(np.degrees(np.arctan2(-dy, dx)))


def dot_moves(augment: dict) -> tuple[np.ndarray, np.ndarray]:
    """(radius ratio, angle change in degrees) of the dot in 48 augmented copies."""
    radius, angle = polar(dot_images(1)[0] / 255)
    data = build_datasets(raw_from_arrays(dot_images(48)), batch_size=16, augment=augment)
    moved = np.array([polar(image) for image in by_label(data.train).values()])
    return moved[:, 0] / radius, moved[:, 1] - angle


def test_rotation_turns_about_the_centre_within_the_range():
    scales, turns = dot_moves({"rotation": 20})
    radius = polar(dot_images(1)[0] / 255)[0]
    np.testing.assert_allclose(scales * radius, radius, atol=0.5)  # a rotation keeps the radius
    assert max(np.abs(turns)) <= 20.5
    assert min(turns) < -5 and max(turns) > 5  # both ways, not a constant


def test_zoom_scales_about_the_centre_within_the_range():
    scales, turns = dot_moves({"zoom": 0.2})
    np.testing.assert_allclose(turns, 0.0, atol=1.0)  # a zoom keeps the direction
    assert 0.78 <= min(scales) < 0.95 and 1.05 < max(scales) <= 1.22


def test_brightness_and_contrast_stay_in_range_and_in_zero_one():
    originals = random_images((64, 8, 8, 1))
    raw = raw_from_arrays(originals)
    brighter = by_label(build_datasets(raw, batch_size=16, augment={"brightness": 0.1}).train)
    offsets = [np.mean(image - originals[k] / 255) for k, image in brighter.items()]
    assert max(np.abs(offsets)) <= 0.1 + 1e-6 and np.std(offsets) > 0.01
    contrasted = by_label(build_datasets(raw, batch_size=16, augment={"contrast": 0.3}).train)
    for k, image in contrasted.items():
        source = originals[k] / 255
        factor = np.std(image) / np.std(source)
        assert 0.7 - 0.02 <= factor <= 1.3 + 0.02
        assert image.min() >= 0.0 and image.max() <= 1.0


def test_augmentation_and_shuffle_are_seeded_and_change_every_epoch():
    raw = raw_from_arrays(random_images((40, 6, 6, 1)))

    def build(seed: int):
        augment = {"horizontal_flip": True, "max_shift": 1, "rotation": 10, "contrast": 0.2}
        return build_datasets(raw, batch_size=40, augment=augment, seed=seed).train

    train = build(seed=0)
    epoch1, epoch2 = take_all(train), take_all(train)
    assert epoch1[1].tolist() != epoch2[1].tolist()  # reshuffled
    assert not np.array_equal(by_label_arrays(epoch1), by_label_arrays(epoch2))  # re-augmented
    again = take_all(build(seed=0))
    np.testing.assert_array_equal(again[0], epoch1[0])
    np.testing.assert_array_equal(again[1], epoch1[1])
    assert take_all(build(seed=1))[1].tolist() != epoch1[1].tolist()


def by_label_arrays(pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    images, labels = pair
    return images[np.argsort(labels)]


def test_eval_splits_keep_their_order():
    raw = raw_from_arrays(random_images((20, 3, 3, 1)))
    data = build_datasets(raw, batch_size=7)
    assert take_all(data.test)[1].tolist() == list(range(20))
    assert take_all(data.validation)[1].tolist() == list(range(20))


def write_as_folder(examples: Examples, root: Path) -> None:
    """PNG files for all people but the last, whose images go out as binary PGM."""
    last = len(examples.class_names) - 1
    for k, (image, label) in enumerate(zip(examples.images, examples.labels, strict=True)):
        folder = root / examples.class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        if label == last:
            header = f"P5\n{image.shape[1]} {image.shape[0]}\n255\n".encode()
            (folder / f"{k:03d}.pgm").write_bytes(header + image.tobytes())
        else:
            Image.fromarray(image[..., 0]).save(folder / f"{k:03d}.png")


def test_folder_source_gives_the_in_memory_pixels(tmp_path: Path, orl_report: OrlReport):
    in_memory = orl_examples(orl_report, people=3)
    write_as_folder(in_memory, tmp_path / "orl_faces")
    from_files = load_folder(str(tmp_path / "orl_faces"))
    assert from_files.class_names == in_memory.class_names
    np.testing.assert_array_equal(from_files.labels, in_memory.labels)

    for options in ({}, {"image_size": (152, 152), "channels": 3}):
        expected, actual = (
            build_datasets(split_examples(ex, 0.2, 0.2, seed=0), batch_size=8, **options)
            for ex in (in_memory, from_files)
        )
        assert actual.spec == expected.spec
        for split in ("train", "validation", "test"):
            want, got = take_all(getattr(expected, split)), take_all(getattr(actual, split))
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
    assert expected.spec.input_shape == (152, 152, 3)


def test_files_of_different_sizes_need_image_size(tmp_path: Path):
    for name, size in (("a/1.png", (10, 8)), ("a/2.png", (10, 8)), ("b/3.png", (12, 9))):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(random_images(size)).save(tmp_path / name)
    raw = split_examples(load_folder(str(tmp_path)), validation=0.0, test=0.0)
    with pytest.raises(ValueError, match=r"differ in size.*10x8.*12x9.*set image_size"):
        build_datasets(raw, batch_size=2)
    data = build_datasets(raw, batch_size=3, image_size=(10, 8))
    images, _ = take_all(data.train)
    assert images.shape == (3, 10, 8, 1)


def test_unknown_size_in_memory_needs_image_size():
    split = tf.data.Dataset.from_generator(
        lambda: iter([(np.zeros((4, 5, 1), np.uint8), 0)]),
        output_signature=(tf.TensorSpec((None, None, 1), tf.uint8), tf.TensorSpec((), tf.int64)),
    )
    raw = RawSplits("sizes", split, split, split, ("only",))
    with pytest.raises(ValueError, match=r"no fixed size.*set image_size"):
        build_datasets(raw, batch_size=1)
    assert build_datasets(raw, batch_size=1, image_size=(8, 8)).spec.input_shape == (8, 8, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"batch_size": 4, "channels": 2}, "channels must be 1 \\(grey\\), 3 \\(RGB\\)"),
        ({"batch_size": 4, "image_size": (0, 3)}, "image_size must be"),
        (
            {"batch_size": 4, "augment": {"rotate": 10}},
            "unknown augmentation\\(s\\) \\['rotate'\\]",
        ),
        ({"batch_size": 4, "augment": {"max_shift": -1}}, "max_shift must be .* got -1"),
        ({"batch_size": 4, "augment": {"zoom": 1.5}}, r"augment.zoom must be .* \[0, 1\), got 1.5"),
        ({"batch_size": 4, "augment": {"rotation": "x"}}, r"augment.rotation must be .* got 'x'"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        build_datasets(raw_from_arrays(random_images((2, 3, 3, 1))), **kwargs)
