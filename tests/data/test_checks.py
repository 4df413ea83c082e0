"""An image folder's files are decoded once, in parallel, and the verdicts remembered."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo.data import checks
from zoo.data.folder import load_folder


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def write_image(path: Path, size: tuple[int, int], colour: bool, fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (*size, 3) if colour else size
    pixels = np.random.default_rng(len(str(path))).integers(0, 255, shape, np.uint8)
    Image.fromarray(pixels).save(path, fmt)


def faces(root: Path, people: int = 3, each: int = 4) -> Path:
    for person in range(people):
        for index in range(each):
            write_image(root / f"n{person:03d}" / f"{index:04d}_01.jpg", (20, 16), True)
    return root


def test_a_second_start_decodes_nothing_and_a_changed_file_is_decoded_again(tmp_path, caplog):
    root = faces(tmp_path / "faces")
    caplog.set_level(logging.INFO, logger="zoo.data.checks")
    first = load_folder(str(root))
    assert "Checked 12 new or changed files" in caplog.text
    assert first.shapes == {(20, 16, 3): first.images[0]}

    caplog.clear()
    again = load_folder(str(root))
    assert "Checked" not in caplog.text  # every verdict came from the cache
    assert again.images.tolist() == first.images.tolist()

    victim = root / "n001" / "0002_01.jpg"
    victim.write_bytes(victim.read_bytes()[:-300])  # truncated: another size, another verdict
    write_image(root / "n002" / "0009_01.jpg", (8, 6), False)  # a new, grey, smaller file
    caplog.clear()
    with pytest.raises(ValueError, match=f"{victim}: cannot be decoded as an image"):
        load_folder(str(root))
    assert "Checked 2 new or changed files" in caplog.text
    skipped = load_folder(str(root), skip_bad=True)
    assert str(victim) not in skipped.images.tolist()
    assert len(skipped.images) == 12
    assert set(skipped.shapes) == {(20, 16, 3), (8, 6, 1)}


def test_a_file_replaced_in_place_with_the_same_size_is_checked_again(tmp_path):
    root = faces(tmp_path / "faces", people=2, each=2)
    load_folder(str(root))
    victim = root / "n000" / "0001_01.jpg"
    stat = victim.stat()
    victim.write_bytes(b"\0" * stat.st_size)  # same size, new contents and mtime
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    with pytest.raises(ValueError, match=r"0001_01\.jpg: cannot be decoded"):
        load_folder(str(root))


def test_parallel_and_serial_checks_agree_with_a_full_decode(tmp_path):
    root = tmp_path / "mixed"
    write_image(root / "a" / "grey.png", (7, 5), False, "PNG")
    write_image(root / "a" / "colour.jpg", (9, 11), True)
    write_image(root / "b" / "rgba.png", (4, 4), True, "PNG")
    good = (root / "a" / "colour.jpg").read_bytes()
    (root / "b" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "b" / "empty.jpg").write_bytes(b"")
    paths = sorted(str(p) for p in root.rglob("*.*"))
    paths = paths * (checks._CHUNK // len(paths) + 2)  # more than one chunk per worker
    serial = checks._decode_all(paths, workers=1)
    parallel = checks._decode_all(paths, workers=2)
    np.testing.assert_array_equal(serial[0], parallel[0])
    assert serial[1] == parallel[1]
    for index, path in enumerate(paths):  # against PIL's full decode
        try:
            with Image.open(path) as image:
                image.load()
                want = (image.height, image.width, 1 if image.mode == "L" else 3)
        except OSError:
            want = (0, 0, 0)
            assert index in serial[1]
        assert tuple(serial[0][index]) == want


def test_a_damaged_cache_is_ignored(tmp_path, own_cache):
    root = faces(tmp_path / "faces", people=2, each=2)
    load_folder(str(root))
    (cache,) = (own_cache / "zoo" / "folder-checks").iterdir()
    cache.write_bytes(b"not a cache")
    assert len(load_folder(str(root)).images) == 4
