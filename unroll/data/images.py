"""Image classification data: where it comes from, and how an image becomes a sequence.

Sources (`load_images`):

- ``digits``: scikit-learn's bundled 8x8 digits (1797 images, values 0-16; the optional
  ``unroll[digits]`` extra). No download. The test set is a fixed 20% (split seed 0).
- ``mnist`` / ``fashion-mnist``: the four IDX files from their public sources, verified with
  SHA-256 and cached under ``$UNROLL_CACHE`` (or ``~/.cache/unroll``); ``$UNROLL_MNIST_URL`` and
  ``$UNROLL_FASHION_MNIST_URL`` name another base URL (a mirror). Fashion-MNIST is taken
  from the Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``)
  when that is installed (and no URL override is set); those files are recompressed by
  Debian, so they are checked by their IDX structure, not by the upstream SHA-256.
- a directory holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each may end in ``.gz``; ``.idx``
  instead of ``-idx`` is accepted). An optional ``classes.txt`` names the classes, one a line.

Images as sequences (`to_sequences`), for a batch ``[B, H, W]``::

    rows      T = H steps of C = W pixels      x[b, t, :] = image[b, t, :]
    pixels    T = H*W steps of C = 1 pixel     x[b, t, 0] = image[b].flatten()[t]
    permuted  T = H*W steps of C = 1 pixel     x[b, t, 0] = image[b].flatten()[perm[t]]

The permutation comes from a seed (`pixel_permutation`) and is the same for every image,
train and test alike (it is stored with the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unroll import textio
from unroll.data.idx import read_idx_pair
from unroll.errors import UserError

SEQUENCE_MODES = ("rows", "pixels", "permuted")
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGIT_CLASSES = tuple(str(i) for i in range(10))
IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class RemoteDataset:
    """Where a named IDX dataset is published, and the SHA-256 of each of its four files."""

    base_url: str
    sha256: dict[str, str]  # file name -> hex digest
    classes: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()  # installed copies used before downloading


# SHA-256 of the published files, as listed in TensorFlow Datasets' url_checksums
# (mnist.txt, fashion_mnist.txt); the MNIST digests agree with several other projects.
REMOTE_DATASETS: dict[str, RemoteDataset] = {
    "mnist": RemoteDataset(
        base_url="https://storage.googleapis.com/cvdf-datasets/mnist/",
        sha256={
            "train-images-idx3-ubyte.gz": (
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
            ),
            "train-labels-idx1-ubyte.gz": (
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
            ),
            "t10k-images-idx3-ubyte.gz": (
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
            ),
            "t10k-labels-idx1-ubyte.gz": (
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
            ),
        },
        classes=DIGIT_CLASSES,
    ),
    "fashion-mnist": RemoteDataset(
        base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        sha256={
            "train-images-idx3-ubyte.gz": (
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
            ),
            "train-labels-idx1-ubyte.gz": (
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
            ),
            "t10k-images-idx3-ubyte.gz": (
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
            ),
            "t10k-labels-idx1-ubyte.gz": (
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
            ),
        },
        classes=FASHION_CLASSES,
        system_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
}


@dataclass
class ImageDataset:
    """Train and test images ``[N, H, W]`` (uint8, values 0..`max_value`) and labels ``[N]``."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]
    max_value: float  # pixel value that maps to 1.0
    source: str  # where the files were read from

    @property
    def image_shape(self) -> tuple[int, int]:
        return int(self.train_images.shape[1]), int(self.train_images.shape[2])


# -- sources ----------------------------------------------------------------------------------


def find_idx_files(directory: str | Path) -> dict[str, Path]:
    """The four IDX files of an MNIST-style directory, by role (`IDX_STEMS`)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"--data {directory}: no such directory (or digits, mnist, fashion-mnist)")
    found: dict[str, Path] = {}
    for role, stem in IDX_STEMS.items():
        dotted = stem.replace("-idx", ".idx")
        candidates = [directory / f"{s}{ext}" for s in (stem, dotted) for ext in ("", ".gz")]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            raise UserError(f"--data {directory}: missing {stem} (or {stem}.gz)")
        found[role] = hit
    return found


def load_idx_directory(
    directory: str | Path, name: str | None = None, classes: tuple[str, ...] | None = None
) -> ImageDataset:
    directory = Path(directory)
    files = find_idx_files(directory)
    train_x, train_y = read_idx_pair(files["train_images"], files["train_labels"])
    test_x, test_y = read_idx_pair(files["test_images"], files["test_labels"])
    if train_x.shape[1:] != test_x.shape[1:]:
        raise UserError(
            f"{files['test_images']}: images are {test_x.shape[1]}x{test_x.shape[2]}, "
            f"the training images {train_x.shape[1]}x{train_x.shape[2]}"
        )
    if len(train_x) == 0 or len(test_x) == 0:
        raise UserError(f"--data {directory}: the training or test set is empty")
    if 0 in train_x.shape[1:]:
        raise UserError(
            f"{files['train_images']}: images of {train_x.shape[1]}x{train_x.shape[2]} pixels"
        )
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    names_file = directory / "classes.txt"
    if classes is None and names_file.is_file():
        classes = read_class_names(names_file)
        if len(classes) < num_classes:
            raise UserError(
                f"{names_file}: names {len(classes)} classes, the labels go up to {num_classes - 1}"
            )
    if classes is None:
        classes = tuple(str(i) for i in range(num_classes))
    elif len(classes) < num_classes:
        raise UserError(f"--data {directory}: labels go up to {num_classes - 1}")
    return ImageDataset(
        name=name or directory.name,
        train_images=torch.from_numpy(train_x),
        train_labels=torch.from_numpy(train_y.astype(np.int64)),
        test_images=torch.from_numpy(test_x),
        test_labels=torch.from_numpy(test_y.astype(np.int64)),
        classes=tuple(classes),
        max_value=255.0,
        source=str(directory),
    )


def read_class_names(path: Path) -> tuple[str, ...]:
    """The class names of a ``classes.txt``: one a line (UTF-8), blank lines skipped."""
    return tuple(line.strip() for line in textio.read_lines(path) if line.strip())


def load_digits(test_fraction: float = 0.2, split_seed: int = 0) -> ImageDataset:
    """scikit-learn's 8x8 digits, split once into train and a fixed test set."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise UserError(
            "--data digits needs scikit-learn (pip install 'unroll[digits]'); "
            "or pass --data DIR with IDX files, or --data mnist / fashion-mnist"
        ) from None
    bunch = sk_load_digits()
    images = torch.from_numpy(bunch.images.astype(np.uint8))  # [1797, 8, 8], values 0..16
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(split_seed))
    n_test = int(round(test_fraction * len(images)))
    test, train = order[:n_test], order[n_test:]
    return ImageDataset(
        name="digits",
        train_images=images[train],
        train_labels=labels[train],
        test_images=images[test],
        test_labels=labels[test],
        classes=DIGIT_CLASSES,
        max_value=16.0,
        source="sklearn.datasets.load_digits",
    )


def base_url(name: str) -> str:
    """Where `name`'s files are fetched from: ``$UNROLL_MNIST_URL`` / ``$UNROLL_FASHION_MNIST_URL``
    when set (a mirror; the tests serve files from 127.0.0.1), else the public source."""
    from unroll.data.download import url_override

    base = url_override(name) or REMOTE_DATASETS[name].base_url
    return base if base.endswith("/") else base + "/"


def download_dataset(name: str, *, progress: bool = True) -> Path:
    """The directory holding `name`'s four verified IDX files (downloaded once, then cached)."""
    from unroll.data.download import cache_dir, download, sha256_file

    remote = REMOTE_DATASETS[name]
    dest_dir = cache_dir(name)
    base = base_url(name)
    for file_name, digest in remote.sha256.items():
        dest = dest_dir / file_name
        if dest.is_file() and sha256_file(dest) == digest:
            continue
        download(base + file_name, dest, digest, progress=progress)
    return dest_dir


def load_images(data: str, *, progress: bool = True) -> ImageDataset:
    """Resolve ``--data``: ``digits``, ``mnist``, ``fashion-mnist`` or a directory of IDX files.

    An installed copy (`RemoteDataset.system_dirs`) is used before the cache, unless a URL
    override names where to fetch the files from."""
    if data == "digits":
        return load_digits()
    if data in REMOTE_DATASETS:
        from unroll.data.download import url_override

        remote = REMOTE_DATASETS[data]
        for system_dir in () if url_override(data) else remote.system_dirs:
            if Path(system_dir).is_dir():
                return load_idx_directory(system_dir, name=data, classes=remote.classes)
        return load_idx_directory(
            download_dataset(data, progress=progress), name=data, classes=remote.classes
        )
    return load_idx_directory(data)


def train_valid_split(
    n: int, valid_fraction: float, split_seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of a deterministic train/validation split of ``n`` training examples."""
    if not 0.0 < valid_fraction < 1.0:
        raise UserError(f"valid_fraction={valid_fraction}: expected a number between 0 and 1")
    n_valid = max(1, int(round(valid_fraction * n)))
    if n_valid >= n:
        raise UserError(f"valid_fraction={valid_fraction} leaves no training examples of {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    return order[n_valid:], order[:n_valid]


# -- images as sequences ----------------------------------------------------------------------


def pixel_permutation(num_pixels: int, seed: int) -> torch.Tensor:
    """A fixed permutation of ``range(num_pixels)`` drawn from `seed` (a CPU generator)."""
    return torch.randperm(num_pixels, generator=torch.Generator().manual_seed(seed))


def sequence_shape(mode: str, height: int, width: int) -> tuple[int, int]:
    """``(T, C)``: steps and features per step of an ``height x width`` image read as `mode`."""
    if mode == "rows":
        return height, width
    if mode in ("pixels", "permuted"):
        return height * width, 1
    raise ValueError(f"sequence mode {mode!r}: expected one of {', '.join(SEQUENCE_MODES)}")


def to_sequences(
    images: torch.Tensor, mode: str, permutation: torch.Tensor | None = None
) -> torch.Tensor:
    """Images ``[B, H, W]`` -> sequences ``[B, T, C]`` (see the module docstring)."""
    if images.dim() != 3:
        raise ValueError(f"to_sequences: expected images [B, H, W], got {tuple(images.shape)}")
    b, h, w = images.shape
    if mode == "rows":
        return images
    if mode == "pixels":
        return images.reshape(b, h * w, 1)
    if mode == "permuted":
        if permutation is None or permutation.shape != (h * w,):
            got = None if permutation is None else tuple(permutation.shape)
            raise ValueError(f"to_sequences: permuted needs a permutation of {h * w}, got {got}")
        return images.reshape(b, h * w)[:, permutation].unsqueeze(-1)
    raise ValueError(f"sequence mode {mode!r}: expected one of {', '.join(SEQUENCE_MODES)}")
