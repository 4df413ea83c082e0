"""Shared by the face tests: one ORL face by person and position."""

import numpy as np


def orl_face(orl, person: int, image: int = 0) -> np.ndarray:
    """``uint8 (112, 92, 1)``: the ``image``-th kept image of ORL person ``person`` (0-based)."""
    return orl.images[np.flatnonzero(orl.labels == person)[image]]
