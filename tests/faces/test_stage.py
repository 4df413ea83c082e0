"""`data.align`: detect, align and crop once per image, cached on disk, faceless images
skipped or failing by name."""

import logging
import shutil

import numpy as np
import pytest
from PIL import Image

from zoo.data.loading import load_raw
from zoo.faces import FaceNotFoundError, align_face, detect_largest_face, read_image


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
