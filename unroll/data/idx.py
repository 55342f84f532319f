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
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from unroll.errors import UserError
from unroll.limits import check_bytes

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


# Deflate's best ratio is 1032:1 (a run of one byte): a gzip file of n bytes holds at most
# about 1032·n bytes, so a header that promises more is refused before decompressing.
MAX_GZIP_RATIO = 1032
_EXTRA = 1 << 20  # bytes read past the data to report how much is left over (gzip)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or .gz) into a numpy array of its shape and native-endian dtype.

    The header is read first and checked against the file's size (and, for gzip, the most
    that many compressed bytes can hold) and this machine's memory; only then is the data
    read, at most the declared size and one byte more (a gzip bomb is not decompressed)."""
    path = Path(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise UserError(f"{path}: no such IDX file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            gz = f.read(2) == GZIP_MAGIC
            f.seek(0)
        except OSError as e:
            raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
        stream = gzip.GzipFile(fileobj=f, mode="rb") if gz else f
        try:
            return _read_stream(path, stream, size, gz)
        except (OSError, EOFError, zlib.error) as e:
            if not gz:
                raise UserError(
                    f"{path}: cannot read ({getattr(e, 'strerror', None) or e})"
                ) from None
            raise UserError(f"{path}: corrupt or truncated gzip data ({e})") from None


def _read_stream(path: Path, stream: BinaryIO, size: int, gz: bool) -> np.ndarray:
    head = stream.read(4)
    if len(head) < 4:
        raise UserError(f"{path}: not an IDX file (only {len(head)} bytes, need a 4-byte header)")
    zero, code, ndim = struct.unpack(">HBB", head)
    if zero != 0 or code not in IDX_DTYPES:
        raise UserError(
            f"{path}: not an IDX file (magic number 0x{head.hex()}, expected "
            f"00 00 <type 08/09/0B/0C/0D/0E> <dims>)"
        )
    if ndim == 0:
        raise UserError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    rest = stream.read(4 * ndim)
    if len(rest) < 4 * ndim:
        raise UserError(f"{path}: truncated IDX header ({4 + len(rest)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", rest)
    shape = "x".join(map(str, dims))
    dtype = np.dtype(IDX_DTYPES[code])
    expected = math.prod(dims) * dtype.itemsize  # Python ints: 4 sizes of 2^32 - 1 do not wrap
    if not gz and size - header != expected:
        got = size - header
        if got < expected:
            raise UserError(
                f"{path}: truncated IDX data: header says {shape} ({expected} bytes of data), "
                f"file has {got}"
            )
        raise UserError(
            f"{path}: {got - expected} unexpected bytes after the IDX data (header says {shape})"
        )
    if gz and expected > MAX_GZIP_RATIO * size:
        raise UserError(
            f"{path}: the IDX header says {shape} ({expected:,} bytes of data), more than a "
            f"gzip file of {size:,} bytes can hold"
        )
    check_bytes(
        2 * expected, f"{path}: IDX data of {shape}", "read it on a machine with more memory"
    )
    data = stream.read(expected)
    if len(data) < expected:
        raise UserError(
            f"{path}: truncated IDX data: header says {shape} ({expected} bytes of data), file "
            f"has {len(data)}"
        )
    extra = stream.read(_EXTRA) if gz else b""
    if extra:
        n = f"{len(extra)}" if len(extra) < _EXTRA else "more than 1 MiB of"
        raise UserError(f"{path}: {n} unexpected bytes after the IDX data (header says {shape})")
    array = np.frombuffer(data, dtype=dtype).reshape(dims)
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
