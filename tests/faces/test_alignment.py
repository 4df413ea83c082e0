"""Detection and alignment on real photos whose geometry the test controls."""

import warnings

import numpy as np
import pytest
import skimage.transform
from face_helpers import orl_face
from PIL import Image
from scipy import ndimage

from zoo.faces import (
    FaceNotFoundError,
    align_face,
    canonical_landmarks,
    detect_faces,
    detect_largest_face,
    largest_face,
    similarity_transform,
)
from zoo.faces.alignment import TEMPLATE, rotation_degrees


def _similarity(angle_degrees, scale, shift):
    angle = np.radians(angle_degrees)
    matrix = np.eye(3)
    matrix[:2, :2] = scale * np.array(
        [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    )
    matrix[:2, 2] = shift
    return matrix


def test_similarity_transform_recovers_a_known_one_and_matches_skimage():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 100, (5, 2))
    known = _similarity(23.0, 1.7, (12.0, -5.0))
    moved = points @ known[:2, :2].T + known[:2, 2]
    np.testing.assert_allclose(similarity_transform(points, moved), known, atol=1e-9)
    assert rotation_degrees(known) == pytest.approx(23.0)

    noisy = moved + rng.normal(0, 2.0, moved.shape)  # least squares: scikit-image's estimate
    reference = skimage.transform.SimilarityTransform()
    with warnings.catch_warnings():  # `estimate` is `from_estimate` from scikit-image 0.26
        warnings.simplefilter("ignore", FutureWarning)
        reference.estimate(points, noisy)
    np.testing.assert_allclose(similarity_transform(points, noisy), reference.params, atol=1e-9)


def test_canonical_landmarks_scale_the_template_to_the_crop():
    np.testing.assert_allclose(canonical_landmarks((112, 112)), TEMPLATE)
    wide = canonical_landmarks((112, 224))  # scaled to the shorter side, centred
    np.testing.assert_allclose(wide, TEMPLATE + np.array([56.0, 0.0]))
    loose = canonical_landmarks((112, 112), margin=1.0)  # half the size about the centre
    np.testing.assert_allclose(loose - 56.0, (TEMPLATE - 56.0) / 2)


def test_astronaut_face_and_landmarks_where_they_are(astronaut):
    """Her face occupies x 180-265, y 60-175 of the 512 x 512 photo (checked by eye); the
    eyes are above the nose, the nose above the mouth, her right eye on the image's left."""
    face = detect_largest_face(astronaut, "astronaut")
    x, y, w, h = face.box
    assert 170 <= x + w / 2 <= 260 and 90 <= y + h / 2 <= 150 and 60 <= w <= 120
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    crop, _ = align_face(astronaut, face, (112, 112))
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8


@pytest.mark.parametrize("angle", [-15.0, 20.0])
def test_alignment_undoes_a_known_rotation(astronaut, angle):
    """Rotating the photo by `angle` (counter-clockwise) turns the aligning transform by the
    same angle, within 3 degrees, and the aligned crops stay alike."""
    rotated = skimage.transform.rotate(astronaut, angle, preserve_range=True).astype(np.uint8)
    found = detect_faces([astronaut, rotated])
    upright, turned = (largest_face(faces) for faces in found)
    crop, matrix = align_face(astronaut, upright, (112, 112))
    crop_turned, matrix_turned = align_face(rotated, turned, (112, 112))
    assert rotation_degrees(matrix_turned) - rotation_degrees(matrix) == pytest.approx(angle, abs=3)
    correlation = np.corrcoef(crop.ravel().astype(float), crop_turned.ravel().astype(float))[0, 1]
    assert correlation > 0.85


def test_face_pasted_at_a_known_offset_is_found_there(orl):
    """An ORL face pasted into a 320 x 400 grey canvas at (x, y) = (230, 150): the box and the
    landmarks move by exactly that offset (within 2 px), and the aligned crops agree."""
    face = orl_face(orl, 3)
    canvas = np.full((320, 400, 1), 128, np.uint8)
    canvas[150 : 150 + 112, 230 : 230 + 92] = face
    alone, pasted = (largest_face(faces) for faces in detect_faces([face, canvas]))
    np.testing.assert_allclose(np.subtract(pasted.box[:2], alone.box[:2]), (230, 150), atol=2)
    np.testing.assert_allclose(pasted.landmarks - alone.landmarks, [[230, 150]] * 5, atol=2)
    crop, _ = align_face(face, alone, (112, 92))
    crop_pasted, _ = align_face(canvas, pasted, (112, 92))
    # Inside the ORL image's footprint (outside it the first crop is black, the second
    # grey); MTCNN's whole-pixel landmarks may move by a pixel, hence a correlation.
    inside = ndimage.binary_erosion(crop[..., 0] > 0, iterations=3)
    pixels = crop[..., 0][inside].astype(float), crop_pasted[..., 0][inside].astype(float)
    assert np.corrcoef(*pixels)[0, 1] > 0.85


def test_no_face_error_names_the_file(tmp_path):
    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((200, 160, 3), 200, np.uint8)).save(blank)
    assert detect_faces([np.asarray(Image.open(blank))]) == [[]]
    with pytest.raises(FaceNotFoundError, match=r"no face found in .*wall\.png \(200x160 pixels"):
        detect_largest_face(np.asarray(Image.open(blank)), str(blank))
