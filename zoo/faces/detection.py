"""Face detection with MTCNN (the ``mtcnn`` wheel ships its P/R/O-net weights): boxes and
5 landmarks per face, the largest face of an image, and image files read as the pipeline
reads them."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from zoo.data.pgm import parse_pgm

# MTCNN's keypoint names in the order of `Face.landmarks` (and of the alignment template).
# "left" and "right" are as seen in the image: `left_eye` has the smaller x.
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


class FaceNotFoundError(ValueError):
    """No face was detected in an image; the message names the image."""


@dataclass(frozen=True)
class Face:
    """One detected face.

    Attributes:
        box: ``(x, y, width, height)`` in pixels of the image it was found in.
        confidence: the detector's score in [0, 1].
        landmarks: ``float64 (5, 2)`` ``(x, y)`` of the eyes, nose tip and mouth corners,
            in the order of ``LANDMARKS``.
    """

    box: tuple[float, float, float, float]
    confidence: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])


def read_image(path: str | Path) -> np.ndarray:
    """``uint8 (h, w, c)`` pixels of an image file: 1 channel for grey files, else 3 (RGB).

    Binary PGM goes through the pipeline's own decoder; everything else through PIL (the
    first frame of a GIF; an alpha channel is dropped).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist")
    if path.suffix.lower() in (".pgm", ".pnm"):
        return parse_pgm(path.read_bytes())[..., np.newaxis]
    with Image.open(path) as image:
        grey = image.mode in ("1", "L", "I", "I;16", "F")
        pixels = np.asarray(image.convert("L" if grey else "RGB"))
    return pixels[..., np.newaxis] if grey else pixels


def as_rgb(image: np.ndarray) -> np.ndarray:
    """``uint8 (h, w, 3)``: grey ``(h, w)`` or ``(h, w, 1)`` repeated, colour kept."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., np.newaxis]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"an image must be (h, w), (h, w, 1|3|4), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"images must be uint8 pixels 0-255, got {image.dtype}")
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]


@functools.cache
def _detector():
    from mtcnn import MTCNN

    return MTCNN(device="CPU:0")


def _faces_of(detections: list[dict]) -> list[Face]:
    return [
        Face(
            box=tuple(float(v) for v in found["box"]),
            confidence=float(found["confidence"]),
            landmarks=np.array([found["keypoints"][name] for name in LANDMARKS], dtype="float64"),
        )
        for found in detections
    ]


def detect_faces(
    images: Sequence[np.ndarray], min_face_size: int = 20, batch_size: int = 32
) -> list[list[Face]]:
    """Every face MTCNN finds in each image (grey images are repeated to RGB).

    Images of one shape are detected together, ``batch_size`` at a time (MTCNN pads a
    batch to its largest image: grouping by shape wastes nothing).
    """
    if min_face_size < 12:
        raise ValueError(f"min_face_size must be >= 12 pixels (MTCNN's least), got {min_face_size}")
    rgb = [as_rgb(image) for image in images]
    found: list[list[Face]] = [[] for _ in rgb]
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(rgb):
        by_shape.setdefault(image.shape, []).append(index)
    for indices in by_shape.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            results = _detector().detect_faces([rgb[i] for i in chunk], min_face_size=min_face_size)
            for index, detections in zip(chunk, results, strict=True):
                found[index] = _faces_of(detections)
    return found


def largest_face(faces: Sequence[Face]) -> Face | None:
    """The face with the largest box (ties: the more confident), or None if there is none."""
    return max(faces, key=lambda face: (face.area, face.confidence), default=None)


def detect_largest_face(image: np.ndarray, name: str, min_face_size: int = 20) -> Face:
    """The largest face in one image; ``FaceNotFoundError`` naming ``name`` if none is found."""
    face = largest_face(detect_faces([image], min_face_size=min_face_size)[0])
    if face is None:
        raise no_face_error(name, image, min_face_size)
    return face


def no_face_error(name: str, image: np.ndarray, min_face_size: int) -> FaceNotFoundError:
    """The error for an image of one face where MTCNN found none, naming it."""
    height, width = np.shape(image)[:2]
    return FaceNotFoundError(
        f"no face found in {name} ({height}x{width} pixels, MTCNN with min_face_size="
        f"{min_face_size}); pass a photo with a visible frontal face, or lower min_face_size "
        "for small faces"
    )
