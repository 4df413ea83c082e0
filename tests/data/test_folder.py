"""An image folder as a source, indexed lazily."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo.data.folder import load_folder


def write_png(path: Path, value: int = 0, size: tuple[int, int] = (4, 3)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, dtype=np.uint8)).save(path)


def test_classes_are_sorted_sub_folders(tmp_path: Path):
    for name in ("b.png", "a.PNG", "nested/c.jpg"):
        write_png(tmp_path / "zebra" / name)
    write_png(tmp_path / "ant" / "x.png")
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    write_png(tmp_path / ".hidden" / "y.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "stray.png").write_bytes(b"")  # Not inside a class folder: ignored.

    examples = load_folder(str(tmp_path), skip_bad=True)  # notes.txt and empty/ left out
    assert examples.name == tmp_path.name
    assert examples.class_names == ("ant", "zebra")
    assert examples.from_files
    assert [Path(p).relative_to(tmp_path).as_posix() for p in examples.images] == [
        "ant/x.png",
        "zebra/a.PNG",
        "zebra/b.png",
        "zebra/nested/c.jpg",
    ]
    assert examples.labels.tolist() == [0, 1, 1, 1]
    assert examples.labels.dtype == np.int64


def test_extensions_filter(tmp_path: Path):
    write_png(tmp_path / "a" / "x.png")
    write_png(tmp_path / "a" / "y.bmp")
    assert len(load_folder(str(tmp_path), extensions=(".bmp",)).images) == 1


def test_missing_folder(tmp_path: Path):
    missing = str(tmp_path / "nope")
    with pytest.raises(ValueError, match=f"image folder '{missing}' does not exist"):
        load_folder(missing)


def test_no_class_folders(tmp_path: Path):
    write_png(tmp_path / "x.png")
    with pytest.raises(ValueError, match="has no class sub-folders"):
        load_folder(str(tmp_path))


def test_no_images(tmp_path: Path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "readme.txt").write_text("")
    with pytest.raises(ValueError, match=r"\['cats'\] but no images"):
        load_folder(str(tmp_path))


def _folder_with(tmp_path: Path, name: str, data: bytes) -> Path:
    write_png(tmp_path / "cats" / "good.png")
    write_png(tmp_path / "dogs" / "good.png", 255)
    bad = tmp_path / "dogs" / name
    bad.write_bytes(data)
    return bad


def _png_bytes(size=(32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, size, np.uint8)).save(
        buffer, "PNG"
    )
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("truncated.png", _png_bytes()[:-200], "cannot be decoded as an image"),
        ("corrupt.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "cannot be decoded as an image"),
        ("broken.pgm", b"P5\n4 3\n255\n\x00\x01", "cannot be decoded as an image"),
        ("notes.txt", b"not an image", "not an image file"),
    ],
)
def test_bad_file_is_one_line_naming_it_and_the_fix(tmp_path: Path, name, data, reason):
    bad = _folder_with(tmp_path, name, data)
    with pytest.raises(ValueError) as error:
        load_folder(str(tmp_path))
    message = str(error.value)
    assert "\n" not in message
    assert f"{bad}: {reason}" in message
    assert "data.source.skip_bad=true (1 found)" in message
    examples = load_folder(str(tmp_path), skip_bad=True)
    assert [Path(p).name for p in examples.images] == ["good.png", "good.png"]


def test_empty_class_folder_is_an_error_unless_skipped(tmp_path: Path, caplog):
    write_png(tmp_path / "cats" / "good.png")
    (tmp_path / "dogs").mkdir()
    with pytest.raises(ValueError, match=r"dogs: class folder without images; fix or remove"):
        load_folder(str(tmp_path))
    assert load_folder(str(tmp_path), skip_bad=True).class_names == ("cats",)
    assert "skipped 1 bad files and folders" in caplog.text
