"""PGM parsing and CRLF repair on synthetic bytes."""

from __future__ import annotations

import re

import numpy as np
import pytest

from zoo.data.orl import FileStatus, decode_orl_file
from zoo.data.pgm import PgmError, has_crlf_header, parse_pgm, undo_crlf

HEIGHT, WIDTH = 7, 5


def pgm_bytes(pixels: np.ndarray, maxval: int = 255) -> bytes:
    height, width = pixels.shape
    return f"P5\n{width} {height}\n{maxval}\n".encode() + pixels.astype(np.uint8).tobytes()


def text_mode_damage(data: bytes) -> bytes:
    """What a text-mode copy does: every LF not already preceded by CR becomes CR LF."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def pixels_with_newlines(seed: int = 0) -> np.ndarray:
    """Random pixels holding exactly four LF (10) bytes and no CR (13) byte."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(HEIGHT, WIDTH), dtype=np.uint8)
    pixels[(pixels == 10) | (pixels == 13)] = 14
    pixels.flat[[0, 6, 17, 34]] = 10
    return pixels


def test_parse_pgm_reads_header_and_pixels_row_major():
    pixels = np.arange(HEIGHT * WIDTH, dtype=np.uint8).reshape(HEIGHT, WIDTH)
    decoded = parse_pgm(pgm_bytes(pixels))
    assert decoded.shape == (HEIGHT, WIDTH)
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, pixels)


def test_parse_pgm_skips_comments_and_rescales_a_small_maxval():
    pixels = np.array([[0, 15], [5, 10]], dtype=np.uint8)
    data = b"P5\n# made by hand\n2 2\n15\n" + pixels.tobytes()
    np.testing.assert_array_equal(parse_pgm(data), [[0, 255], [85, 170]])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"P6\n1 1\n255\n\x00\x00\x00", "magic"),
        (b"P5\n2 2\n255\n\x00\x00\x00", "3 bytes, expected width\\*height = 2\\*2 = 4"),
        (b"P5\n2 2\n255\n\x00\x00\x00\x00\x00", "5 bytes"),
        (b"P5\n1 1\n65535\n\x00\x00", "maxval=65535"),
        (b"P5\n1 x\n255\n\x00", "height"),
        (b"P5\n1 1\n9\n\x0a", "exceeds maxval 9"),
    ],
)
def test_parse_pgm_is_strict(data: bytes, message: str):
    with pytest.raises(PgmError, match=message):
        parse_pgm(data)


def test_repair_restores_the_exact_original():
    clean = pgm_bytes(pixels_with_newlines())
    damaged = text_mode_damage(clean)
    assert damaged.startswith(b"P5\r\n")
    assert len(damaged) == len(clean) + 3 + 4  # 3 header LFs + 4 pixel LFs
    assert has_crlf_header(damaged) and not has_crlf_header(clean)
    with pytest.raises(PgmError):
        parse_pgm(damaged)  # The damage never passes as a valid image.
    assert undo_crlf(damaged) == clean
    pixels, status = decode_orl_file(damaged)
    assert status is FileStatus.REPAIRED
    np.testing.assert_array_equal(pixels, pixels_with_newlines())


def test_clean_file_is_decoded_as_is():
    pixels, status = decode_orl_file(pgm_bytes(pixels_with_newlines()))
    assert status is FileStatus.CLEAN
    np.testing.assert_array_equal(pixels, pixels_with_newlines())


def test_genuine_crlf_in_the_pixels_comes_out_one_byte_short_and_is_dropped():
    pixels = pixels_with_newlines()
    pixels.flat[20:22] = [13, 10]  # A real CR LF pair in the image data.
    damaged = text_mode_damage(pgm_bytes(pixels))
    assert len(undo_crlf(damaged)) == len(pgm_bytes(pixels)) - 1
    assert decode_orl_file(damaged) == (None, FileStatus.DROPPED)


def test_malformed_clean_header_file_is_dropped():
    assert decode_orl_file(b"P5\n2 2\n255\n\x00") == (None, FileStatus.DROPPED)
