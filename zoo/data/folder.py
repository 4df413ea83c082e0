"""A directory of class sub-folders of image files, read lazily by the pipeline."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from zoo.data.pgm import parse_pgm
from zoo.data.spec import Examples

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".pgm", ".bmp", ".gif")


def _decode_problem(file: Path) -> str | None:
    """Why `file` cannot be decoded as an image (truncated, corrupt), or None if it can."""
    try:
        if file.suffix.lower() in (".pgm", ".pnm"):
            parse_pgm(file.read_bytes())  # the pipeline's own decoder for PGM
        else:
            with Image.open(file) as image:
                image.load()  # decodes every pixel: a truncated file fails here
    except Exception as err:  # PIL and the PGM parser raise many types for bad data
        return f"cannot be decoded as an image ({str(err).splitlines()[0] or type(err).__name__})"
    return None


def load_folder(
    path: str, extensions: Sequence[str] = IMAGE_EXTENSIONS, skip_bad: bool = False
) -> Examples:
    """Index ``path/<class>/**/<image>``; the pipeline decodes the files later.

    Class names are the sorted names of the sub-folders (hidden files and folders are
    skipped). Files are matched by extension, case-insensitively, in any depth below their
    class folder. Every file is checked before training starts: one that is not an image
    (an extension that is no image format), cannot be decoded (truncated or corrupt), or a
    class folder without images is an error naming it and the fix; with ``skip_bad`` such
    files and folders are left out instead, and how many is logged.

    Args:
        path: the root folder.
        extensions: file name endings that count as images.
        skip_bad: leave out bad files and empty class folders instead of failing.

    Returns:
        ``Examples`` named after the folder: images is a string array ``(n,)`` of absolute
        file paths, sorted per class; labels ``int64 (n,)`` index the class names.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(
            f"image folder {path!r} does not exist or is not a directory; pass a folder "
            "with one sub-folder of images per class"
        )
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise ValueError(
            f"image folder {path!r} has no class sub-folders; put the images of each class "
            "in their own sub-folder, e.g. cats/001.jpg, dogs/001.jpg"
        )
    suffixes = tuple(e.lower() for e in extensions)
    known = suffixes + IMAGE_EXTENSIONS
    bad: list[str] = []
    files_per_class: dict[str, list[str]] = {}
    for folder in class_dirs:
        files = []
        for file in sorted(folder.rglob("*")):
            if not file.is_file() or any(p.startswith(".") for p in file.relative_to(root).parts):
                continue
            name = file.name.lower()
            if not name.endswith(known):
                bad.append(f"{file}: not an image file (images end in {', '.join(known)})")
            elif name.endswith(suffixes):
                problem = _decode_problem(file)
                if problem:
                    bad.append(f"{file}: {problem}")
                else:
                    files.append(str(file.resolve()))
        files_per_class[folder.name] = files
    class_names = tuple(name for name, files in files_per_class.items() if files)
    if not class_names:
        raise ValueError(
            f"image folder {path!r} has class sub-folders {[d.name for d in class_dirs]} but no "
            f"images with extensions {list(suffixes)} in them; add images or pass extensions="
        )
    bad += [
        f"{root / name}: class folder without images"
        for name, files in files_per_class.items()
        if not files
    ]
    if bad and not skip_bad:
        raise ValueError(
            f"image folder {path!r}: {bad[0]}; fix or remove it, or skip bad files with "
            f"data.source.skip_bad=true ({len(bad)} found)"
        )
    if bad:
        logger.warning(
            "image folder %r: skipped %d bad files and folders (data.source.skip_bad=true): %s",
            path,
            len(bad),
            "; ".join(bad),
        )
    paths = [f for name in class_names for f in files_per_class[name]]
    labels = [label for label, name in enumerate(class_names) for _ in files_per_class[name]]
    return Examples(
        name=root.resolve().name,
        images=np.asarray(paths, dtype=str),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=class_names,
    )
