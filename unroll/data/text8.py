"""text8: the first 10^8 bytes of an English Wikipedia dump, cleaned to lower-case letters and
single spaces (Matt Mahoney, http://mattmahoney.net/dc/textdata.html): 17,005,207 words in one
line, the corpus of the TensorFlow ``word2vec_basic`` tutorial and of many word2vec results.

`text8_path` finds the unpacked file: ``$UNROLL_DATA/text8/text8``, then the user cache
(``cache_dir("text8")``); otherwise it downloads ``text8.zip`` into the cache, checks its
SHA-256 and unpacks the one member ``text8`` (checked to be 10^8 bytes) atomically beside it.
``$UNROLL_TEXT8_URL`` overrides the URL (the tests serve a small zip from 127.0.0.1).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from unroll.data.download import DownloadError, cache_dir, download
from unroll.errors import UserError

TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"
URL_ENV = "UNROLL_TEXT8_URL"
# SHA-256 of text8.zip as published on the host: the site lists only the size (31,344,016
# bytes), so this digest is the one that independent projects pin for that URL (found by code
# search, several unrelated repositories agreeing); a mismatch keeps nothing.
TEXT8_ZIP_SHA256 = "a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232"
TEXT8_BYTES = 100_000_000  # the unpacked member's size (10^8 by construction)


def text8_url() -> str:
    return os.environ.get(URL_ENV) or TEXT8_URL


def text8_path(download_ok: bool = True) -> Path:
    """The unpacked text8 file (see the module docstring); downloads it if needed."""
    root = os.environ.get("UNROLL_DATA")
    if root:
        local = Path(root).expanduser() / "text8" / "text8"
        if local.is_file():
            return local
    cache = cache_dir("text8")
    unpacked = cache / "text8"
    if unpacked.is_file() and unpacked.stat().st_size == TEXT8_BYTES:
        return unpacked
    where = f"put text8.zip in {cache} or the unpacked text8 at $UNROLL_DATA/text8/text8"
    if not download_ok:
        raise UserError(f"text8 not found: {where} (from {text8_url()})")
    try:
        archive = download(text8_url(), cache / "text8.zip", TEXT8_ZIP_SHA256)
    except DownloadError as e:
        raise UserError(
            f"text8 not found and the download failed ({e.url}: {e.reason}): {where}"
        ) from None
    _unpack(archive, unpacked)
    return unpacked


def _unpack(archive: Path, dest: Path) -> None:
    """Extract the member ``text8`` to `dest` through a temporary file (nothing half-written)."""
    try:
        with zipfile.ZipFile(archive) as z:
            info = z.getinfo("text8")
            if info.file_size != TEXT8_BYTES:
                raise UserError(
                    f"{archive}: the member text8 has {info.file_size} bytes, expected "
                    f"{TEXT8_BYTES}"
                )
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".text8.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out, z.open(info) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                os.replace(tmp, dest)
            finally:
                Path(tmp).unlink(missing_ok=True)
    except (zipfile.BadZipFile, KeyError) as e:
        raise UserError(f"{archive}: not the text8 archive ({e})") from None
