"""A directory of class sub-folders of image files, read lazily by the pipeline."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from zoo.data.checks import check_files, distinct_shapes
from zoo.data.spec import Examples

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".pgm", ".bmp", ".gif")
_LISTED = 20  # bad files named in the log line; the count covers all of them


def _walk(folder: Path, root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """``(path relative to root, stat)`` of every file below ``folder``, hidden ones left out,
    in the order of ``sorted(folder.rglob("*"))``: depth first, by name at each level."""
    with os.scandir(folder) as entries:
        visible = sorted(
            (entry for entry in entries if not entry.name.startswith(".")),
            key=lambda entry: entry.name,
        )
    for entry in visible:
        if entry.is_file():
            yield os.path.relpath(entry.path, root), entry.stat()
        elif entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path), root)


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
    root = root.resolve()
    bad: list[str] = []
    names, stats, labels_of_files, class_of_dir = [], [], [], {}
    for label, folder in enumerate(class_dirs):
        class_of_dir[folder.name] = label
        for name, stat in _walk(folder, root):
            lower = name.lower()
            if not lower.endswith(known):
                bad.append(f"{root / name}: not an image file (images end in {', '.join(known)})")
            elif lower.endswith(suffixes):
                names.append(name)
                stats.append((stat.st_size, stat.st_mtime_ns))
                labels_of_files.append(label)
    names_array = np.asarray(names, dtype=str)
    checks = check_files(root, names_array, np.asarray(stats, np.int64).reshape(-1, 2))
    bad += [f"{root / names[i]}: {why}" for i, why in sorted(checks.problems.items())]
    good = np.ones(len(names), bool)
    good[list(checks.problems)] = False
    file_labels = np.asarray(labels_of_files, np.int64)[good]
    counts = np.bincount(file_labels, minlength=len(class_dirs))
    files_per_class = {folder.name: counts[i] for i, folder in enumerate(class_dirs)}
    class_names = tuple(name for name, count in files_per_class.items() if count)
    if not class_names:
        raise ValueError(
            f"image folder {path!r} has class sub-folders {[d.name for d in class_dirs]} but no "
            f"images with extensions {list(suffixes)} in them; add images or pass extensions="
        )
    bad += [
        f"{root / name}: class folder without images"
        for name, count in files_per_class.items()
        if not count
    ]
    if bad and not skip_bad:
        raise ValueError(
            f"image folder {path!r}: {bad[0]}; fix or remove it, or skip bad files with "
            f"data.source.skip_bad=true ({len(bad)} found)"
        )
    if bad:
        more = f"; ... ({len(bad) - _LISTED} more)" if len(bad) > _LISTED else ""
        logger.warning(
            "image folder %r: skipped %d bad files and folders (data.source.skip_bad=true): %s",
            path,
            len(bad),
            "; ".join(bad[:_LISTED]) + more,
        )
    remap = np.full(len(class_dirs), -1, np.int64)  # empty class folders leave no gap
    remap[[class_of_dir[name] for name in class_names]] = np.arange(len(class_names))
    paths = np.char.add(str(root) + os.sep, names_array[good])
    return Examples(
        name=root.name,
        images=paths,
        labels=remap[file_labels],
        class_names=class_names,
        shapes=distinct_shapes(checks.shapes[good], paths),
    )
