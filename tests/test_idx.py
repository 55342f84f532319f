"""The IDX reader on hand-made files (bytes written here with struct), raw and gzipped."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from unroll.data.idx import read_idx, read_idx_images, read_idx_labels, read_idx_pair
from unroll.errors import UserError

FASHION = Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(code: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims) + payload


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_reads_uint8_images_raw_and_gzipped(tmp_path, gz):
    pixels = bytes(range(2 * 3 * 4))  # 2 images of 3 rows x 4 columns: 0, 1, ..., 23
    path = write(tmp_path / "imgs", idx_bytes(0x08, (2, 3, 4), pixels), gz)
    images = read_idx_images(path)
    assert images.dtype == np.uint8 and images.shape == (2, 3, 4)
    assert images[0, 0].tolist() == [0, 1, 2, 3]
    assert images[1, 2].tolist() == [20, 21, 22, 23]  # row-major: 12 + 2*4 + (0..3)


def test_reads_big_endian_int16_and_float32(tmp_path):
    path = write(tmp_path / "s", idx_bytes(0x0B, (3,), struct.pack(">3h", -2, 300, 7)))
    assert read_idx(path).tolist() == [-2, 300, 7]
    path = write(tmp_path / "f", idx_bytes(0x0D, (2,), struct.pack(">2f", 1.5, -0.25)))
    assert read_idx(path).tolist() == [1.5, -0.25]


def test_labels(tmp_path):
    path = write(tmp_path / "l.gz", idx_bytes(0x08, (4,), bytes([3, 1, 4, 1])), gz=True)
    assert read_idx_labels(path).tolist() == [3, 1, 4, 1]


@pytest.mark.parametrize(
    "header",
    [b"\x00\x01\x08\x01", b"\x08\x00\x00\x01", b"\x00\x00\x07\x01", b"PK\x03\x04"],
    ids=["nonzero", "swapped", "bad-type", "zip"],
)
def test_wrong_magic_names_the_file(tmp_path, header):
    path = write(tmp_path / "bad-magic-idx1-ubyte", header + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(UserError, match="bad-magic-idx1-ubyte.*magic number"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_data_names_the_file(tmp_path, gz):
    data = idx_bytes(0x08, (2, 3, 4), bytes(23))  # one byte short of 24
    path = write(tmp_path / "short-images", data, gz)
    with pytest.raises(UserError, match=r"short-images.*truncated IDX data.*2x3x4.*24.*23"):
        read_idx(path)


def test_truncated_header_and_tiny_file(tmp_path):
    path = write(tmp_path / "hdr", struct.pack(">HBB", 0, 8, 3) + struct.pack(">I", 2))
    with pytest.raises(UserError, match="hdr: truncated IDX header"):
        read_idx(path)
    path = write(tmp_path / "tiny", b"\x00\x00")
    with pytest.raises(UserError, match="tiny: not an IDX file"):
        read_idx(path)


def test_trailing_bytes_rejected(tmp_path):
    path = write(tmp_path / "long", idx_bytes(0x08, (2,), bytes(3)))
    with pytest.raises(UserError, match="long: 1 unexpected bytes"):
        read_idx(path)


def test_corrupt_gzip_names_the_file(tmp_path):
    good = gzip.compress(idx_bytes(0x08, (100,), bytes(100)))
    path = write(tmp_path / "cut.gz", good[: len(good) // 2])
    with pytest.raises(UserError, match="cut.gz: corrupt or truncated gzip"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="nope: no such IDX file"):
        read_idx(tmp_path / "nope")


def test_images_and_labels_checked_for_kind(tmp_path):
    labels = write(tmp_path / "labels", idx_bytes(0x08, (2,), bytes(2)))
    images = write(tmp_path / "images", idx_bytes(0x08, (2, 2, 2), bytes(8)))
    with pytest.raises(UserError, match="labels: expected IDX images"):
        read_idx_images(labels)
    with pytest.raises(UserError, match="images: expected IDX labels"):
        read_idx_labels(images)
    floats = write(tmp_path / "floats", idx_bytes(0x0D, (1, 1, 1), bytes(4)))
    with pytest.raises(UserError, match="floats: expected IDX images .uint8"):
        read_idx_images(floats)


def test_mismatched_counts_name_both_files(tmp_path):
    images = write(tmp_path / "train-images", idx_bytes(0x08, (3, 2, 2), bytes(12)))
    labels = write(tmp_path / "train-labels", idx_bytes(0x08, (2,), bytes(2)))
    with pytest.raises(UserError, match="train-labels: 2 labels for 3 images in .*train-images"):
        read_idx_pair(images, labels)


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"{FASHION} not installed (dataset-fashion-mnist)")
def test_real_fashion_mnist_counts():
    x, y = read_idx_pair(
        FASHION / "train-images-idx3-ubyte.gz", FASHION / "train-labels-idx1-ubyte.gz"
    )
    assert x.shape == (60000, 28, 28) and y.shape == (60000,)
    assert sorted(np.unique(y).tolist()) == list(range(10))
    assert np.bincount(y).tolist() == [6000] * 10  # Fashion-MNIST is balanced
    x, y = read_idx_pair(
        FASHION / "t10k-images-idx3-ubyte.gz", FASHION / "t10k-labels-idx1-ubyte.gz"
    )
    assert x.shape == (10000, 28, 28) and y.shape == (10000,)
    assert np.bincount(y).tolist() == [1000] * 10


def _gzip_stream(head: bytes, zeros: int) -> bytes:
    """gzip of `head` and `zeros` zero bytes, compressed as they come (1000:1)."""
    import zlib

    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [z.compress(head)]
    for _ in range(zeros >> 20):
        parts.append(z.compress(bytes(1 << 20)))
    return b"".join([*parts, z.flush()])


def test_a_gzip_bomb_is_not_decompressed(tmp_path):
    """A 130 kB gzip file of a 4x4 IDX header, its data, then 128 MB of zeros: refused after
    reading the data and one more MiB, not after decompressing it all (the old reader held
    the 128 MB, and 6.5 GB for a 3 MB file)."""
    import tracemalloc

    path = tmp_path / "bomb-idx3-ubyte.gz"
    path.write_bytes(_gzip_stream(idx_bytes(0x08, (1, 4, 4), bytes(16)), 128 << 20))
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(UserError, match="more than 1 MiB of unexpected bytes after the IDX"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak


def test_a_header_is_checked_against_the_file_before_the_data_is_read(tmp_path, monkeypatch):
    # gzip: 60000 images of 28x28 (47 MB) cannot come out of 40 bytes
    path = write(tmp_path / "g.gz", idx_bytes(0x08, (60_000, 28, 28), bytes(8)), gz=True)
    with pytest.raises(UserError, match=r"\(47,040,000 bytes of data\), more than a gzip file"):
        read_idx(path)
    # a stream that fits the ratio but not the machine (here: 1 MiB of memory)
    monkeypatch.setattr("unroll.limits.physical_memory", lambda: 1 << 20)
    path.write_bytes(_gzip_stream(idx_bytes(0x08, (2, 1024, 1024), b""), 2 << 20))
    with pytest.raises(UserError, match=r"IDX data of 2x1024x1024 needs about .* GiB, more than"):
        read_idx(path)
