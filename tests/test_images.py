"""Image datasets (IDX directories, digits, verified downloads) and images as sequences."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import struct
import threading
from pathlib import Path

import pytest
import torch

from unroll.data import images as images_mod
from unroll.data.images import (
    FASHION_CLASSES,
    RemoteDataset,
    find_idx_files,
    load_idx_directory,
    load_images,
    pixel_permutation,
    sequence_shape,
    to_sequences,
    train_valid_split,
)
from unroll.errors import UserError


def idx_bytes(dims: tuple[int, ...], values: list[int]) -> bytes:
    return (
        struct.pack(">HBB", 0, 0x08, len(dims))
        + struct.pack(f">{len(dims)}I", *dims)
        + bytes(values)
    )


def write_mnist_dir(
    root: Path, n_train: int = 6, n_test: int = 4, gz: bool = True, h: int = 4, w: int = 4
) -> Path:
    """A tiny MNIST-style directory: image i is filled with the value i, label i % 3."""
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs = idx_bytes((n, h, w), [i for i in range(n) for _ in range(h * w)])
        labels = idx_bytes((n,), [i % 3 for i in range(n)])
        for name, data in (
            (f"{prefix}-images-idx3-ubyte", imgs),
            (f"{prefix}-labels-idx1-ubyte", labels),
        ):
            (root / (name + suffix)).write_bytes(gzip.compress(data) if gz else data)
    return root


# -- images as sequences: hand-made 2x3 images ------------------------------------------------

IMAGES = torch.tensor(
    [
        [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],
        [[10.0, 20.0, 30.0], [40.0, 50.0, 60.0]],
    ]
)  # [B=2, H=2, W=3]


def test_rows_are_time_steps_of_width_pixels():
    x = to_sequences(IMAGES, "rows")
    assert x.shape == (2, 2, 3)  # T = H = 2 steps, C = W = 3
    assert x[0, 0].tolist() == [1, 2, 3] and x[0, 1].tolist() == [4, 5, 6]
    assert x[1, 1].tolist() == [40, 50, 60]
    assert sequence_shape("rows", 2, 3) == (2, 3)


def test_pixels_are_one_pixel_per_step_in_reading_order():
    x = to_sequences(IMAGES, "pixels")
    assert x.shape == (2, 6, 1)
    assert x[0, :, 0].tolist() == [1, 2, 3, 4, 5, 6]
    assert x[1, :, 0].tolist() == [10, 20, 30, 40, 50, 60]
    assert sequence_shape("pixels", 28, 28) == (784, 1)


def test_permuted_applies_the_same_permutation_to_every_image():
    perm = torch.tensor([5, 0, 3, 1, 4, 2])
    x = to_sequences(IMAGES, "permuted", perm)
    assert x.shape == (2, 6, 1)
    assert x[0, :, 0].tolist() == [6, 1, 4, 2, 5, 3]
    assert x[1, :, 0].tolist() == [60, 10, 40, 20, 50, 30]
    with pytest.raises(ValueError, match="permutation of 6"):
        to_sequences(IMAGES, "permuted", torch.arange(5))
    with pytest.raises(ValueError, match="sequence mode 'cols'"):
        to_sequences(IMAGES, "cols")


def test_pixel_permutation_is_a_fixed_permutation_from_the_seed():
    p = pixel_permutation(784, seed=3)
    assert sorted(p.tolist()) == list(range(784))  # a permutation
    assert not torch.equal(p, torch.arange(784))
    assert torch.equal(p, pixel_permutation(784, seed=3))  # same seed, same order
    assert not torch.equal(p, pixel_permutation(784, seed=4))
    # train and test images go through the same stored permutation: pixel j of the image
    # lands at step t where p[t] = j, for any batch
    a, b = torch.rand(2, 28, 28), torch.rand(5, 28, 28)
    for batch in (a, b):
        seq = to_sequences(batch, "permuted", p)
        assert torch.equal(seq[:, :, 0], batch.reshape(len(batch), -1)[:, p])


def test_train_valid_split_is_deterministic_and_disjoint():
    train, valid = train_valid_split(100, 0.1, split_seed=0)
    assert len(valid) == 10 and len(train) == 90
    assert sorted(torch.cat([train, valid]).tolist()) == list(range(100))
    train2, valid2 = train_valid_split(100, 0.1, split_seed=0)
    assert torch.equal(valid, valid2) and torch.equal(train, train2)
    assert not torch.equal(valid, train_valid_split(100, 0.1, split_seed=1)[1])
    with pytest.raises(UserError, match="valid_fraction"):
        train_valid_split(100, 1.0)


# -- sources ----------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_directory(tmp_path, gz):
    root = write_mnist_dir(tmp_path / "mine", gz=gz)
    data = load_images(str(root))
    assert data.train_images.shape == (6, 4, 4) and data.test_images.shape == (4, 4, 4)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.long
    assert data.train_images[5].unique().tolist() == [5]
    assert data.train_labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert data.classes == ("0", "1", "2") and data.max_value == 255.0


def test_idx_directory_dotted_names_and_class_names(tmp_path):
    root = write_mnist_dir(tmp_path / "d", gz=False)
    for p in list(root.iterdir()):
        p.rename(root / p.name.replace("-idx", ".idx"))  # train-images.idx3-ubyte
    (root / "classes.txt").write_text("cat\ndog\nbird\n")
    assert load_images(str(root)).classes == ("cat", "dog", "bird")
    (root / "classes.txt").write_text("cat\n")
    with pytest.raises(UserError, match="classes.txt: names 1 classes"):
        load_images(str(root))


def test_idx_directory_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(UserError, match="nowhere: no such directory"):
        load_images(str(tmp_path / "nowhere"))
    root = write_mnist_dir(tmp_path / "m")
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError, match="missing t10k-labels-idx1-ubyte"):
        find_idx_files(root)
    root = write_mnist_dir(tmp_path / "n")
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes((3,), [0, 1, 2])))
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.gz: 3 labels for 4 images"):
        load_idx_directory(root)


def test_digits_split_is_fixed():
    pytest.importorskip("sklearn", reason="scikit-learn (the digits extra) not installed")
    a, b = load_images("digits"), load_images("digits")
    assert a.train_images.shape == (1438, 8, 8) and a.test_images.shape == (359, 8, 8)  # 20%
    assert torch.equal(a.test_labels, b.test_labels) and torch.equal(a.test_images, b.test_images)
    assert int(a.train_images.max()) == 16 and a.max_value == 16.0


def test_digits_without_sklearn_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import now fails
    with pytest.raises(UserError, match=r"digits needs scikit-learn .*unroll\[digits\]"):
        load_images("digits")


# -- verified downloads against a local HTTP server --------------------------------------------


@pytest.fixture
def http_root(tmp_path):
    """Serve tmp_path/www on 127.0.0.1; yields (directory, base URL)."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(www))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _publish(www: Path) -> dict[str, str]:
    write_mnist_dir(www, gz=True)
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(www.glob("*.gz"))}


def test_download_verified_and_cached(http_root, tmp_path, monkeypatch):
    pytest.importorskip("unroll.data.download")
    www, url = http_root
    digests = _publish(www)
    monkeypatch.setenv("UNROLL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(
        images_mod.REMOTE_DATASETS, "mnist", RemoteDataset(url, digests, ("a", "b", "c"))
    )
    data = load_images("mnist", progress=False)
    assert data.train_images.shape == (6, 4, 4) and data.classes == ("a", "b", "c")
    cached = sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir())
    assert cached == sorted(digests)
    # a second call uses the cache: the server may disappear
    for p in www.iterdir():
        p.unlink()
    assert load_images("mnist", progress=False).test_images.shape == (4, 4, 4)


def test_download_corrupt_file_rejected_and_not_cached(http_root, tmp_path, monkeypatch):
    pytest.importorskip("unroll.data.download")
    www, url = http_root
    digests = _publish(www)
    (www / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b corrupted on the way")
    monkeypatch.setenv("UNROLL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(images_mod.REMOTE_DATASETS, "mnist", RemoteDataset(url, digests, ()))
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte.gz: SHA-256 mismatch"):
        load_images("mnist", progress=False)
    cache = tmp_path / "cache" / "mnist"  # (removed when the failed file was the first)
    names = [p.name for p in cache.iterdir()] if cache.exists() else []
    assert "t10k-images-idx3-ubyte.gz" not in names
    assert not [n for n in names if n.startswith(".")]  # no partial files left


def test_download_server_missing_file(http_root, tmp_path, monkeypatch):
    pytest.importorskip("unroll.data.download")
    www, url = http_root
    digests = _publish(www)
    (www / "train-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("UNROLL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(images_mod.REMOTE_DATASETS, "mnist", RemoteDataset(url, digests, ()))
    with pytest.raises(UserError, match="could not download .*train-labels-idx1-ubyte.gz"):
        load_images("mnist", progress=False)


def test_published_digests_are_well_formed():
    for name, remote in images_mod.REMOTE_DATASETS.items():
        assert sorted(remote.sha256) == sorted(f"{s}.gz" for s in images_mod.IDX_STEMS.values())
        for digest in remote.sha256.values():
            assert len(digest) == 64 and int(digest, 16) >= 0, name


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"{FASHION} not installed (dataset-fashion-mnist)")
def test_fashion_mnist_uses_the_installed_package(monkeypatch, tmp_path):
    monkeypatch.setenv("UNROLL_CACHE", str(tmp_path / "cache"))  # must not be touched
    data = load_images("fashion-mnist")
    assert data.classes == FASHION_CLASSES and data.source == str(FASHION)
    assert data.train_images.shape == (60000, 28, 28) and data.test_labels.shape == (10000,)
    assert not (tmp_path / "cache").exists()
