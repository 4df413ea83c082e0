"""Real faces with known geometry: the astronaut photo and ORL faces, saved as files."""

import numpy as np
import pytest
import skimage.data
from face_helpers import orl_face
from PIL import Image

from zoo.data import load_orl_faces


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


@pytest.fixture(scope="session")
def orl():
    return load_orl_faces()


@pytest.fixture(scope="session")
def people(tmp_path_factory, orl):
    """An LFW-shaped folder: ``<Name>/<Name>_000<k>.jpg``, 6 ORL people x 4 images."""
    root = tmp_path_factory.mktemp("people")
    for person in range(6):
        name = f"Person_{chr(ord('A') + person)}"
        (root / name).mkdir()
        for k in range(4):
            pixels = orl_face(orl, person, k)[..., 0]
            Image.fromarray(pixels).save(root / name / f"{name}_{k + 1:04d}.jpg", quality=95)
    return root
