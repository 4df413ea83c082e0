"""DeepFace's front end and its verdict: face detection (MTCNN), 2D alignment by five
landmarks, alignment as a cached data stage, and ``verify(model, a, b)``."""

import importlib

from zoo.faces.alignment import align_face, canonical_landmarks, similarity_transform
from zoo.faces.detection import (
    Face,
    FaceNotFoundError,
    detect_faces,
    detect_largest_face,
    largest_face,
    read_image,
)
from zoo.faces.stage import AlignSettings, align_examples, align_settings

__all__ = [
    "AlignSettings",
    "Face",
    "FaceNotFoundError",
    "FaceVerifier",
    "Verdict",
    "align_examples",
    "align_face",
    "align_settings",
    "canonical_landmarks",
    "detect_faces",
    "detect_largest_face",
    "largest_face",
    "read_image",
    "similarity_transform",
    "verify",
    "verify_command",
]


def __getattr__(name: str):
    # zoo.faces.verdict needs zoo.data and zoo.evaluation, and zoo.data imports the alignment
    # stage from here: loaded on first use, so that `import zoo.data` does not import itself.
    if name in ("FaceVerifier", "Verdict", "verify", "verify_command"):
        return getattr(importlib.import_module("zoo.faces.verdict"), name)
    raise AttributeError(f"module 'zoo.faces' has no attribute {name!r}")
