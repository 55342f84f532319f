"""Writing files so that a crash never leaves half of one: the bottom of the package (every
layer writes files: the engine's checkpoints and metrics, word2vec's vector files, a cached
corpus, figures), so it imports nothing of unroll but its errors.

`atomic_write_bytes`: a temporary file in the same directory, fsync, rename — a kill leaves the
old file or the new one; `remove_stale_temp_files` clears what a killed write left. A write that
fails (disk full: ENOSPC, or EFBIG past ``ulimit -f``) leaves the old file and is a one-line
`UserError` (`write_error`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from unroll.errors import UserError


def atomic_write_bytes(
    path: str | Path, data: bytes, mode: int = 0o644, before_rename=None
) -> None:
    """Write `data` to `path` atomically (temp file in the same directory + fsync + rename).

    Files get `mode` (default rw-r--r--, as a plain ``open`` would under the usual umask), so
    every file of a run directory has the same permissions."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise write_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode & ~_umask())
        if before_rename is not None:
            before_rename()
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(path, e) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_error(path: Path, e: OSError) -> UserError:
    """A failed write as one line: disk full or over the file-size limit, most often."""
    import errno

    why = {
        errno.ENOSPC: "no space left on the device",
        errno.EFBIG: "file too large (a file-size limit: ulimit -f?)",
        getattr(errno, "EDQUOT", -1): "disk quota exceeded",
    }.get(e.errno, e.strerror or str(e))
    kept = "unchanged" if path.exists() else "not written"
    return UserError(f"{path}: cannot write ({why}); the file is {kept}")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temp_files(directory: str | Path) -> list[Path]:
    """Delete ``.NAME.*.tmp`` files that a killed atomic write left behind; returns them."""
    removed = []
    for p in Path(directory).glob(".*.tmp"):
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed
