"""2D face alignment (DeepFace's first step): a similarity transform from the 5 detected
landmarks to fixed canonical positions, then a warp and crop to the model's input size."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.transform import warp

from zoo.faces.detection import Face

# Canonical landmarks (eyes, nose tip, mouth corners; `detection.LANDMARKS` order) in a
# 112 x 112 crop: the 5-point template of InsightFace's ArcFace crops, the common choice
# for MTCNN's 5 points.
TEMPLATE_SIZE = 112.0
TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)


def canonical_landmarks(size: Sequence[int], margin: float = 0.0) -> np.ndarray:
    """Where the 5 landmarks land in a ``(height, width)`` crop: ``float64 (5, 2)`` ``(x, y)``.

    The template is scaled to the crop's shorter side and centred; ``margin`` > 0 shrinks it
    so that the crop shows that much more around the face (0.25: a quarter of the side more).
    """
    height, width = (float(s) for s in size)
    if min(height, width) < 1 or margin < 0:
        raise ValueError(f"size must be [height, width] > 0 and margin >= 0, got {size}, {margin}")
    scale = min(height, width) / (TEMPLATE_SIZE * (1.0 + margin))
    centred = TEMPLATE - TEMPLATE_SIZE / 2.0
    return centred * scale + np.array([width / 2.0, height / 2.0])


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least-squares similarity (rotation, uniform scale, translation) taking ``source``
    points to ``target`` points (Umeyama, 1991), as a ``3 x 3`` matrix on ``(x, y, 1)``."""
    source, target = np.asarray(source, "float64"), np.asarray(target, "float64")
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2 or len(source) < 2:
        raise ValueError(
            f"need two (n >= 2, 2) point sets of one shape, got {source.shape}, {target.shape}"
        )
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    reflection = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ reflection @ vt
    variance = np.mean(np.sum(source_centred**2, axis=1))
    if variance == 0:
        raise ValueError("the source points coincide: no similarity transform is defined")
    scale = np.trace(np.diag(singular) @ reflection) / variance
    matrix = np.eye(3)
    matrix[:2, :2] = scale * rotation
    matrix[:2, 2] = target_mean - scale * rotation @ source_mean
    return matrix


def rotation_degrees(matrix: np.ndarray) -> float:
    """The rotation of a similarity matrix in degrees, in image coordinates (y down): a
    positive angle turns the image clockwise on screen."""
    return float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))


def warp_image(image: np.ndarray, matrix: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """``image`` (uint8 ``(h, w, c)``) mapped by ``matrix`` into a ``(height, width)`` crop,
    bilinear, black outside the image."""
    warped = warp(
        np.asarray(image),
        np.linalg.inv(matrix),  # warp maps each output pixel back to the input
        output_shape=(int(size[0]), int(size[1])),
        order=1,
        mode="constant",
        cval=0.0,
        preserve_range=True,
    )
    return np.clip(np.rint(warped), 0, 255).astype(np.uint8)


def align_face(
    image: np.ndarray, face: Face, size: Sequence[int], margin: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(crop, matrix)``: ``image`` warped so that ``face``'s landmarks sit on the canonical
    positions of a ``size`` crop; the crop keeps the image's channels."""
    matrix = similarity_transform(face.landmarks, canonical_landmarks(size, margin))
    image = np.asarray(image)
    return warp_image(image if image.ndim == 3 else image[..., np.newaxis], matrix, size), matrix
