"""`data.align`: detect, align and crop once per image, cached on disk, faceless images
skipped or failing by name."""

import logging
import shutil

import numpy as np
import pytest
from PIL import Image

from zoo.data.loading import load_raw
from zoo.data.spec import Examples
from zoo.faces import (
    AlignSettings,
    FaceNotFoundError,
    align_examples,
    align_face,
    detect_largest_face,
    read_image,
)


@pytest.fixture
def folder(tmp_path, people):
    """Two people of the LFW-shaped folder, 4 photos each, and a photo of a wall."""
    root = tmp_path / "faces"
    for name in ("Person_A", "Person_B"):
        shutil.copytree(people / name, root / name)
    Image.fromarray(np.full((112, 92), 90, np.uint8)).save(root / "Person_A" / "wall.jpg")
    return root


def _config(folder, cache_dir, **align):
    return {
        "source": {"_target_": "zoo.data.folder.load_folder", "path": str(folder)},
        "split": {"validation": 0.25, "test": 0.25, "by": "example"},
        "image_size": [64, 52],
        "align": {"cache_dir": str(cache_dir), **align},
    }


def test_faceless_image_fails_by_name(folder, tmp_path):
    with pytest.raises(
        FaceNotFoundError, match=r"1 of 9 images .*Person_A/wall\.jpg.*on_missing=skip"
    ):
        load_raw(_config(folder, tmp_path / "cache"), seed=0)


def test_aligned_once_then_from_the_cache(folder, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="zoo.faces.stage")
    cfg = _config(folder, tmp_path / "cache", on_missing="skip")
    first = load_raw(cfg, seed=0)
    assert "9 images, 9 detected now, 0 from the cache, 1 without a face" in caplog.text
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 9  # the faceless one too
    caplog.clear()
    second = load_raw(cfg, seed=0)
    assert "9 images, 0 detected now, 9 from the cache, 1 without a face" in caplog.text

    def examples(raw):
        return [pair for split in (raw.train, raw.validation, raw.test) for pair in split]

    pairs_first, pairs_second = examples(first), examples(second)
    assert len(pairs_first) == 8  # the wall is left out
    for (image, label), (again, label_again) in zip(pairs_first, pairs_second, strict=True):
        assert image.shape == (64, 52, 1) and int(label) == int(label_again)
        np.testing.assert_array_equal(image, again)

    # Each crop is the photo aligned by its own detection, computed here directly.
    photo = folder / "Person_B" / "Person_B_0001.jpg"
    pixels = read_image(photo)
    expected, _ = align_face(pixels, detect_largest_face(pixels, str(photo)), (64, 52))
    assert any(np.array_equal(image, expected) for image, _ in pairs_first)

    caplog.clear()  # other settings, other cache entries
    load_raw(_config(folder, tmp_path / "cache", on_missing="skip", margin=0.2), seed=0)
    assert "9 images, 9 detected now, 0 from the cache" in caplog.text


def test_in_memory_faces_are_aligned_and_named_by_position(orl, tmp_path):
    """ORL and TFDS lfw hold their images in memory: a faceless one is named by its position
    and class; grey stays grey, at the crop size asked for."""
    keep = np.r_[np.flatnonzero(orl.labels == 0)[:3], np.flatnonzero(orl.labels == 1)[:3]]
    images = orl.images[keep].copy()
    images[4] = 90  # the second image of s2 becomes a wall
    examples = Examples("orl_faces", images, orl.labels[keep], orl.class_names)
    with pytest.raises(FaceNotFoundError, match=r"image 4 of 'orl_faces' \(class 's2'\)"):
        align_examples(examples, AlignSettings(cache_dir=str(tmp_path)))
    aligned = align_examples(
        examples, AlignSettings(size=(60, 50), on_missing="skip", cache_dir=str(tmp_path))
    )
    assert aligned.images.shape == (5, 60, 50, 1) and aligned.labels.tolist() == [0, 0, 0, 1, 1]
