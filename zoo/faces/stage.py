"""Alignment as a data stage: every image of a source detected, aligned and cropped once,
the result cached on disk by image content and settings (``data.align`` in config)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from importlib.metadata import version
from pathlib import Path
from typing import Any

import keras
import numpy as np

from zoo.data.spec import Examples
from zoo.faces.alignment import align_face
from zoo.faces.detection import FaceNotFoundError, detect_faces, largest_face, read_image

logger = logging.getLogger(__name__)

ON_MISSING = ("fail", "skip")
DEFAULT_SIZE = (112, 112)
_CACHE_FORMAT = 1  # bump when what a cache entry holds changes
_CHUNK = 64  # images decoded, detected and aligned together


@dataclass(frozen=True)
class AlignSettings:
    """How faces are aligned (``data.align: true`` or a mapping of these fields).

    Attributes:
        size: ``[height, width]`` of the aligned crop; ``None``: the data's ``image_size``
            (the model's input size), else 112 x 112.
        margin: extra context around the face, as a fraction of the crop side (0: the
            tight 5-point template; 0.25: a quarter more).
        min_face_size: smallest face MTCNN looks for, in pixels.
        on_missing: ``"fail"``: an image without a detectable face is an error naming it;
            ``"skip"``: such images are left out, and how many is logged.
        cache_dir: where aligned crops are kept; ``None``: ``$XDG_CACHE_HOME/zoo/faces``
            (``~/.cache/zoo/faces``).
    """

    size: tuple[int, int] | None = None
    margin: float = 0.0
    min_face_size: int = 20
    on_missing: str = "fail"
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.on_missing not in ON_MISSING:
            raise ValueError(
                f"align.on_missing must be one of {ON_MISSING}, got {self.on_missing!r}"
            )
        if self.size is not None:
            size = tuple(int(s) for s in self.size)
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"align.size must be [height, width] > 0, got {self.size!r}")
            object.__setattr__(self, "size", size)
        if self.margin < 0:
            raise ValueError(f"align.margin must be >= 0, got {self.margin!r}")

    def crop_size(self, image_size: Sequence[int] | None) -> tuple[int, int]:
        return tuple(int(s) for s in (self.size or image_size or DEFAULT_SIZE))

    def cache_root(self) -> Path:
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base) / "zoo" / "faces"


def align_settings(value: bool | Mapping[str, Any] | None) -> AlignSettings | None:
    """``data.align`` → settings: ``false``/``null`` is off, ``true`` the defaults, a mapping
    the fields of ``AlignSettings`` (an ``enabled: false`` entry turns it off)."""
    if value is None or value is False:
        return None
    if value is True:
        return AlignSettings()
    if not isinstance(value, Mapping):
        raise ValueError(f"data.align must be true, false or a mapping of settings, got {value!r}")
    options = dict(value)
    if not options.pop("enabled", True):
        return None
    known = {f.name for f in fields(AlignSettings)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown data.align setting(s) {unknown}; supported: {sorted(known)}")
    return AlignSettings(**options)


@dataclass(frozen=True)
class AlignedFace:
    """One image's entry in the cache: its crop, or ``None`` when no face was found."""

    crop: np.ndarray | None
    landmarks: np.ndarray | None


class FaceCache:
    """Aligned crops on disk, one ``.npz`` per image, keyed by content + settings."""

    def __init__(self, settings: AlignSettings, size: tuple[int, int]) -> None:
        self.root = settings.cache_root()
        identity = {
            "format": _CACHE_FORMAT,
            "mtcnn": version("mtcnn"),
            "size": list(size),
            "margin": settings.margin,
            "min_face_size": settings.min_face_size,
        }
        self._salt = json.dumps(identity, sort_keys=True).encode()

    def key(self, content: bytes) -> str:
        return hashlib.sha256(self._salt + content).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> AlignedFace | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path) as entry:
                if not bool(entry["found"]):
                    return AlignedFace(None, None)
                return AlignedFace(entry["crop"], entry["landmarks"])
        except (OSError, ValueError, KeyError):  # a damaged entry is recomputed
            return None

    def put(self, key: str, face: AlignedFace) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        with open(temporary, "wb") as file:
            np.savez(
                file,
                found=face.crop is not None,
                crop=face.crop if face.crop is not None else np.zeros((0,), np.uint8),
                landmarks=face.landmarks if face.landmarks is not None else np.zeros((0, 2)),
            )
        os.replace(temporary, path)


def _content(examples: Examples, index: int) -> bytes:
    if examples.from_files:
        return Path(str(examples.images[index])).read_bytes()
    image = np.ascontiguousarray(examples.images[index])
    return f"{image.dtype}{image.shape}".encode() + image.tobytes()


def _pixels(examples: Examples, index: int) -> np.ndarray:
    if examples.from_files:
        return read_image(str(examples.images[index]))
    return np.asarray(examples.images[index])


def _describe(examples: Examples, index: int) -> str:
    """How an error names one image: its file, or its position and class."""
    if examples.from_files:
        return str(examples.images[index])
    label = examples.class_names[int(examples.labels[index])]
    return f"image {index} of {examples.name!r} (class {label!r})"


def align_images(
    images: Sequence[np.ndarray], settings: AlignSettings, size: tuple[int, int]
) -> list[AlignedFace]:
    """Detect the largest face of each image and align it to a ``size`` crop (no cache)."""
    found = detect_faces(images, min_face_size=settings.min_face_size)
    aligned = []
    for image, faces in zip(images, found, strict=True):
        face = largest_face(faces)
        if face is None:
            aligned.append(AlignedFace(None, None))
        else:
            crop = align_face(image, face, size, settings.margin)[0]
            aligned.append(AlignedFace(crop, face.landmarks))
    return aligned


def align_examples(
    examples: Examples, settings: AlignSettings, image_size: Sequence[int] | None = None
) -> Examples:
    """Every image of ``examples`` replaced by its aligned face crop, held in memory.

    Crops already in the cache are read from it; the others are detected and aligned,
    with a progress bar, and cached. Images without a detectable face fail with an error
    naming them (``on_missing="fail"``) or are left out (``"skip"``); one log line gives
    the counts. Grey sources give grey crops; if colour and grey files mix, all are RGB.
    """
    size = settings.crop_size(image_size)
    cache = FaceCache(settings, size)
    keys = [cache.key(_content(examples, i)) for i in range(len(examples.labels))]
    results: list[AlignedFace | None] = [cache.get(key) for key in keys]
    pending = [i for i, result in enumerate(results) if result is None]
    if pending:
        logger.info(
            "Aligning %d of %d images of %r (%d cached in %s)",
            len(pending),
            len(keys),
            examples.name,
            len(keys) - len(pending),
            cache.root,
        )
        progress = keras.utils.Progbar(len(pending), unit_name="image")
        for start in range(0, len(pending), _CHUNK):
            chunk = pending[start : start + _CHUNK]
            aligned = align_images([_pixels(examples, i) for i in chunk], settings, size)
            for index, face in zip(chunk, aligned, strict=True):
                cache.put(keys[index], face)
                results[index] = face
            progress.add(len(chunk))
    missing = [i for i, result in enumerate(results) if result.crop is None]
    if missing and settings.on_missing == "fail":
        names = "; ".join(_describe(examples, i) for i in missing[:3])
        raise FaceNotFoundError(
            f"no face found in {len(missing)} of {len(keys)} images of {examples.name!r}: "
            f"{names}{' ...' if len(missing) > 3 else ''}; remove them, or leave them out with "
            "data.align.on_missing=skip (or lower data.align.min_face_size)"
        )
    kept = [i for i in range(len(keys)) if results[i].crop is not None]
    if not kept:
        raise FaceNotFoundError(
            f"no face found in any of the {len(keys)} images of {examples.name!r}"
        )
    logger.log(
        logging.WARNING if missing else logging.INFO,
        "Aligned %r to %dx%d: %d images, %d detected now, %d from the cache, %d without a face "
        "(skipped)%s",
        examples.name,
        *size,
        len(keys),
        len(pending),
        len(keys) - len(pending),
        len(missing),
        f": {'; '.join(_describe(examples, i) for i in missing[:5])}" if missing else "",
    )
    crops = [results[i].crop for i in kept]
    if len({crop.shape[-1] for crop in crops}) > 1:
        crops = [np.repeat(c, 3, axis=-1) if c.shape[-1] == 1 else c for c in crops]
    return Examples(
        name=examples.name,
        images=np.stack(crops).astype(np.uint8),
        labels=np.asarray(examples.labels)[kept],
        class_names=examples.class_names,
    )
