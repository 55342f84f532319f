"""The IDX file format (MNIST, Fashion-MNIST), raw or gzip-compressed.

Layout (all integers big-endian)::

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     number of dimensions D
    4·D bytes   the D sizes, uint32 each      (images: N, H, W; labels: N)
    the rest    prod(sizes) elements, row-major

Compression is detected from the gzip magic bytes (1f 8b), not from the file name. Every
problem (bad magic, unknown type, truncated or over-long data, a corrupt gzip stream) is a
`UserError` naming the file.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from unroll.errors import UserError

# element type code -> big-endian numpy dtype
IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such IDX file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path}: corrupt or truncated gzip data ({e})") from None


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or .gz) into a numpy array of its shape and native-endian dtype."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise UserError(f"{path}: not an IDX file (only {len(data)} bytes, need a 4-byte header)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in IDX_DTYPES:
        raise UserError(
            f"{path}: not an IDX file (magic number 0x{data[:4].hex()}, expected "
            f"00 00 <type 08/09/0B/0C/0D/0E> <dims>)"
        )
    if ndim == 0:
        raise UserError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(IDX_DTYPES[code])
    expected = math.prod(dims) * dtype.itemsize  # Python ints: 4 sizes of 2^32 - 1 do not wrap
    got = len(data) - header
    if got < expected:
        raise UserError(
            f"{path}: truncated IDX data: header says {'x'.join(map(str, dims))} "
            f"({expected} bytes of data), file has {got}"
        )
    if got > expected:
        raise UserError(
            f"{path}: {got - expected} unexpected bytes after the IDX data "
            f"(header says {'x'.join(map(str, dims))})"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))  # a native-endian, writable copy


def _read_uint8(path: str | Path, ndim: int, expected: str) -> np.ndarray:
    """`read_idx`, then a one-line error unless the array is uint8 with ``ndim`` dimensions."""
    array = read_idx(path)
    if array.ndim != ndim or array.dtype != np.uint8:
        raise UserError(
            f"{path}: expected {expected}, "
            f"got {array.dtype} with shape {'x'.join(map(str, array.shape))}"
        )
    return array


def read_idx_images(path: str | Path) -> np.ndarray:
    """An IDX file of N images: uint8 ``[N, H, W]``."""
    return _read_uint8(path, 3, "IDX images (uint8, 3 dimensions N x H x W)")


def read_idx_labels(path: str | Path) -> np.ndarray:
    """An IDX file of N class labels: uint8 ``[N]``."""
    return _read_uint8(path, 1, "IDX labels (uint8, 1 dimension N)")


def read_idx_pair(
    images_path: str | Path, labels_path: str | Path
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, H, W]`` and their labels ``[N]``; the two counts must agree."""
    images = read_idx_images(images_path)
    labels = read_idx_labels(labels_path)
    if len(images) != len(labels):
        raise UserError(
            f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path}"
        )
    return images, labels
