"""Binary PGM (``P5``) decoding, strict, and the repair of text-mode CRLF damage.

Pure functions on ``bytes`` so that tests can feed them synthetic files.

The damage model: a text-mode line-ending conversion turned every ``\\n`` that was not
already preceded by ``\\r`` into ``\\r\\n`` (header and pixel bytes alike). Undoing it,
``\\r\\n`` → ``\\n``, restores the original exactly unless the original held genuine
``\\r\\n`` byte pairs: each one comes out of the undo one byte short. So a repaired file is
exact if and only if its payload has exactly ``width * height`` bytes again, which
:func:`parse_pgm` checks.
"""

from __future__ import annotations

import numpy as np

# Netpbm whitespace: blank, TAB, CR, LF, VT, FF.
_WHITESPACE = b" \t\r\n\x0b\x0c"
_CRLF_MAGIC = b"P5\r\n"


class PgmError(ValueError):
    """A byte string that is not a well-formed 8-bit binary PGM."""


def _skip_whitespace_and_comments(data: bytes, pos: int) -> int:
    while pos < len(data):
        if data[pos] in _WHITESPACE:
            pos += 1
        elif data[pos] == ord("#"):
            end = data.find(b"\n", pos)
            pos = len(data) if end == -1 else end + 1
        else:
            break
    return pos


def _read_header_int(data: bytes, pos: int, field: str) -> tuple[int, int]:
    pos = _skip_whitespace_and_comments(data, pos)
    start = pos
    while pos < len(data) and data[pos : pos + 1].isdigit():
        pos += 1
    if pos == start:
        raise PgmError(f"PGM header: expected the {field} as a decimal number at byte {start}")
    return int(data[start:pos]), pos


def parse_pgm(data: bytes) -> np.ndarray:
    """Decode an 8-bit binary PGM file, strictly.

    Header: ``P5``, whitespace, width, whitespace, height, whitespace, maxval (1..255), then
    exactly one whitespace byte; the payload after it must hold exactly ``width * height``
    bytes, each at most maxval. Anything else raises :class:`PgmError`.

    Args:
        data: the whole file.

    Returns:
        ``uint8`` array ``(height, width)``, rescaled to 0..255 when maxval is not 255.
    """
    if data[:2] != b"P5" or len(data) < 3 or data[2] not in _WHITESPACE:
        raise PgmError(f"not a binary PGM: expected magic b'P5' + whitespace, got {data[:3]!r}")
    width, pos = _read_header_int(data, 2, "width")
    height, pos = _read_header_int(data, pos, "height")
    maxval, pos = _read_header_int(data, pos, "maxval")
    if width <= 0 or height <= 0:
        raise PgmError(f"PGM size must be positive, got width={width}, height={height}")
    if not 0 < maxval < 256:
        raise PgmError(f"only 8-bit PGM (maxval 1..255) is supported, got maxval={maxval}")
    if pos >= len(data) or data[pos] not in _WHITESPACE:
        raise PgmError(f"PGM header: expected one whitespace byte after maxval at byte {pos}")
    payload = data[pos + 1 :]
    expected = width * height
    if len(payload) != expected:
        raise PgmError(
            f"PGM payload has {len(payload)} bytes, expected width*height = "
            f"{width}*{height} = {expected}"
        )
    pixels = np.frombuffer(payload, dtype=np.uint8).reshape(height, width)
    if int(pixels.max()) > maxval:
        raise PgmError(f"PGM pixel value {int(pixels.max())} exceeds maxval {maxval}")
    if maxval != 255:
        pixels = np.round(pixels.astype(np.float64) * (255.0 / maxval)).astype(np.uint8)
    return pixels


def has_crlf_header(data: bytes) -> bool:
    """Whether a PGM went through a text-mode ``\\n`` → ``\\r\\n`` conversion (``P5\\r\\n``)."""
    return data.startswith(_CRLF_MAGIC)


def undo_crlf(data: bytes) -> bytes:
    """Undo a text-mode line-ending conversion: every ``\\r\\n`` becomes ``\\n``."""
    return data.replace(b"\r\n", b"\n")
