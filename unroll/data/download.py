"""Verified downloads into the user cache.

`download` streams a URL into a temporary ``.NAME.*.part`` file beside the destination, checks
its SHA-256 and only then renames it into place (atomic on one file system). On any failure the
temporary file is deleted, so the cache never holds a partial or unverified file; a process
killed mid-download leaves its ``.part`` behind, and the next download into that directory
removes it (`remove_stale_parts`: a ``.part`` is stale when no process holds its lock).

Bounds, so that a slow or hostile server cannot hang or fill the machine: `deadline` seconds for
the whole transfer (not per read: a server trickling a byte a second still ends), `timeout` for
one read, and `max_bytes` for the file (the announced ``Content-Length`` and the bytes
received). The library prints nothing: each downloaded file is one ``logging`` record (INFO,
logger ``unroll.data.download``), which the command line shows as a one-line note.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from unroll.errors import UserError

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16
DEADLINE = 30 * 60  # seconds for one file, start to end: minutes even on a slow line
MAX_BYTES = 64 << 20  # the largest file unroll fetches (Fashion-MNIST's training images) is 26 MB


class DownloadError(UserError):
    """A download failed (network, HTTP status, a bound): `url` and `reason` let callers
    rephrase it."""

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


def url_override(name: str) -> str | None:
    """``$UNROLL_<NAME>_URL`` (``-`` as ``_``; e.g. ``UNROLL_FASHION_MNIST_URL``): another base
    URL for a dataset's files — a mirror, or a server on 127.0.0.1 in the tests."""
    return os.environ.get(f"UNROLL_{name.upper().replace('-', '_')}_URL") or None


def _lock(fd: int) -> bool:
    """Hold an exclusive lock on `fd` (released when this process ends, however it ends);
    False when another process holds it. True where there are no locks (Windows)."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def remove_stale_parts(directory: str | os.PathLike) -> list[Path]:
    """Delete the ``.*.part`` files of downloads that were killed; returns them. A download in
    progress holds a lock on its ``.part``, so another process's live download is left alone."""
    removed = []
    for part in Path(directory).glob(".*.part"):
        try:
            fd = os.open(part, os.O_RDWR)
        except OSError:
            continue
        try:
            if _lock(fd):
                part.unlink(missing_ok=True)
                removed.append(part)
        finally:
            os.close(fd)
    return removed


def _fetch(
    url: str, out, h, *, timeout: float, deadline: float, max_bytes: int
) -> tuple[int, int | None]:
    """Stream `url` into the open file `out` and the hash `h`; (bytes, announced length)."""
    started = time.monotonic()
    # A read waits at most `timeout`, and never past the deadline by more than that.
    with urllib.request.urlopen(url, timeout=min(timeout, deadline)) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and total > max_bytes:
            raise OSError(f"the server announces {total} bytes, more than the {max_bytes} allowed")
        done = 0
        # read1: whatever one read of the socket gives, so a trickling server cannot hold a
        # read (and the deadline check) for long.
        while chunk := response.read1(_CHUNK):
            done += len(chunk)
            if done > max_bytes:
                raise OSError(f"more than the {max_bytes} bytes allowed")
            out.write(chunk)
            h.update(chunk)
            if time.monotonic() - started > deadline:
                raise OSError(f"not done after {deadline:g} s ({done} bytes received)")
        if total is not None and done != total:
            raise OSError(f"connection closed after {done} of {total} bytes")
    return done, total


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str,
    *,
    timeout: float = 60,
    deadline: float = DEADLINE,
    max_bytes: int = MAX_BYTES,
    progress: bool = True,
) -> Path:
    """Fetch `url` to `dest`, verified against `sha256` (hex). Returns `dest`.

    If `dest` already holds a file with that hash nothing is fetched. A hash mismatch, a network
    failure or a bound passed (`deadline` seconds in all, `timeout` per read, `max_bytes`)
    raises `UserError` (naming the URL and, for a failed transfer, where to put the file by
    hand); nothing is left behind. With `progress`, the downloaded file is logged (INFO).
    """
    dest = Path(dest)
    sha256 = sha256.lower()
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    # The directories this call makes, outermost last: removed again if it fails, so a failed
    # download leaves no trace at all (not even an empty cache folder).
    made = [d for d in (dest.parent, *dest.parent.parents) if not d.exists()]
    try:
        _download(
            url,
            dest,
            sha256,
            timeout=timeout,
            deadline=deadline,
            max_bytes=max_bytes,
            progress=progress,
        )
    except BaseException:
        for d in made:
            try:
                d.rmdir()
            except OSError:  # not empty (another download's file) or already gone
                break
        raise
    return dest


def _download(
    url: str,
    dest: Path,
    sha256: str,
    *,
    timeout: float,
    deadline: float,
    max_bytes: int,
    progress: bool,
) -> None:
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(dest.parent)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as e:
        raise UserError(f"{dest.parent}: cannot write a download here ({e.strerror})") from None
    tmp = Path(tmp_name)
    try:
        _lock(fd)  # marks the .part as live for remove_stale_parts in other processes
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                done, _ = _fetch(
                    url, out, h, timeout=timeout, deadline=deadline, max_bytes=max_bytes
                )
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
        actual = h.hexdigest()
        if actual != sha256:
            raise UserError(
                f"{url}: SHA-256 mismatch (expected {sha256}, got {actual}); the file was not saved"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    if progress:
        logger.info("downloaded %s (%.1f MB, SHA-256 verified) to %s", url, done / 1e6, dest)
