"""A directory of class sub-folders of image files, read lazily by the pipeline."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zoo.data.spec import Examples

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".pgm", ".bmp", ".gif")


def load_folder(path: str, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> Examples:
    """Index ``path/<class>/**/<image>``; the pipeline decodes the files later.

    Class names are the sorted names of the sub-folders that hold at least one image (hidden
    folders are skipped; folders without images are skipped with a warning). Files are
    matched by extension, case-insensitively, in any depth below their class folder.

    Args:
        path: the root folder.
        extensions: file name endings that count as images.

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
    files_per_class = {
        d.name: sorted(
            str(f.resolve())
            for f in d.rglob("*")
            if f.is_file() and f.name.lower().endswith(suffixes)
        )
        for d in class_dirs
    }
    empty = [name for name, files in files_per_class.items() if not files]
    class_names = tuple(name for name, files in files_per_class.items() if files)
    if not class_names:
        raise ValueError(
            f"image folder {path!r} has class sub-folders {[d.name for d in class_dirs]} but no "
            f"images with extensions {list(suffixes)} in them; add images or pass extensions="
        )
    if empty:
        logger.warning("image folder %r: skipped sub-folders without images: %s", path, empty)
    paths = [f for name in class_names for f in files_per_class[name]]
    labels = [label for label, name in enumerate(class_names) for _ in files_per_class[name]]
    return Examples(
        name=root.resolve().name,
        images=np.asarray(paths, dtype=str),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=class_names,
    )
