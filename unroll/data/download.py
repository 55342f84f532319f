"""Verified downloads into the user cache.

`download` streams a URL into a temporary file beside the destination, checks its SHA-256 and
only then renames it into place (atomic on one file system). On any failure the temporary file
is deleted, so the cache never holds a partial or unverified file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from unroll.errors import UserError

_CHUNK = 1 << 16


class DownloadError(UserError):
    """A download failed (network, HTTP status): `url` and `reason` let callers rephrase it."""

    def __init__(self, message: str, url: str, reason: str):
        super().__init__(message)
        self.url = url
        self.reason = reason


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir(name: str) -> Path:
    """Where unroll caches `name`: ``$UNROLL_CACHE/<name>``, else ``$XDG_CACHE_HOME/unroll/<name>``,
    else ``~/.cache/unroll/<name>``. Not created here."""
    root = os.environ.get("UNROLL_CACHE")
    if root:
        return Path(root).expanduser() / name
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "unroll" / name


def _print_progress(url: str, done: int, total: int | None, final: bool) -> None:
    size = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
    if sys.stderr.isatty():
        print(f"\rdownloading {url}: {size}", end="\n" if final else "", file=sys.stderr)
    elif final:
        print(f"downloaded {url}: {size}", file=sys.stderr)


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str,
    *,
    timeout: float = 60,
    progress: bool = True,
) -> Path:
    """Fetch `url` to `dest`, verified against `sha256` (hex). Returns `dest`.

    If `dest` already holds a file with that hash nothing is fetched. A hash mismatch or a
    network failure raises `UserError` (naming the URL and, for a failure to connect, where to
    put the file by hand); nothing is left behind.
    """
    dest = Path(dest)
    sha256 = sha256.lower()
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as e:
        raise UserError(f"{dest.parent}: cannot write a download here ({e.strerror})") from None
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    done = 0
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                        if progress:
                            _print_progress(url, done, total, final=False)
                    if total is not None and done != total:
                        raise OSError(f"connection closed after {done} of {total} bytes")
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
                reason = (
                    e
                    if isinstance(e, urllib.error.HTTPError)
                    else (getattr(e, "reason", None) or e)
                )
                raise DownloadError(
                    f"could not download {url} ({reason}); download it yourself and put it at "
                    f"{dest}",
                    url,
                    str(reason),
                ) from None
        if progress:
            _print_progress(url, done, total, final=True)
        actual = h.hexdigest()
        if actual != sha256:
            raise UserError(
                f"{url}: SHA-256 mismatch (expected {sha256}, got {actual}); the file was not saved"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
