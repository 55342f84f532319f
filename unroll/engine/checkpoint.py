"""Checkpoints: plain dicts of state_dicts, config and metadata — never a pickled module.

Layout (every recipe)::

    {"kind": "unroll.lm", "format": 1, "unroll_version": "0.1.0",
     "config": {...asdict(config)...}, "model": state_dict, "optimizer": state_dict | None,
     "rng": get_rng_state(), "epoch": int, "best": float, "best_epoch": int,
     ...recipe-specific extras (vocabulary, scaler, class names)...}

Writing is atomic (`atomic_write_bytes`: a temporary file in the same directory, fsync, rename),
so a crash leaves either the old or the new file, never half of one. A write that fails (disk
full: ENOSPC, or EFBIG past ``ulimit -f``) leaves the old file and is a one-line `UserError`.

Every load is checked (`load_checkpoint`, which every reader goes through: resume, eval,
predict, generate, word2vec's commands): a checkpoint is a zip archive (``torch.save``'s) whose
records carry CRC-32s — checked, which torch.load does not do — and one written here carries a
digest of its contents (``.unroll_digest``, a record beside torch's: SHA-256 over every tensor's
bytes, dtype and shape and every other value, `content_digest`), compared with what was loaded.
A flipped bit is one line naming the file ("damaged"), never wrong predictions or a "diverged"
resume. A checkpoint without a digest (written by an earlier version, or loaded and re-saved
by hand with ``torch.save``, which drops the record) is loaded with the CRC check alone,
without a note: the digest is a property of the file as this code wrote it.

An epoch's checkpoints are one unit (`save_epoch`): ``last.pt`` first, then, when the epoch is
the best so far, the same bytes as ``best.pt``. A kill between the two leaves a ``best.pt`` one
improvement behind, but ``last.pt`` then records itself as the best (``best_epoch == epoch``),
so `best_checkpoint` — which every reader of "best" goes through — picks ``last.pt``, and
`repair_best` (run at resume) copies it over. No instant of the sequence can make "best" name
weights other than those of the best epoch on record.

For the tests of that claim, ``UNROLL_FAULT=<point>[@<epoch>]`` kills the process (SIGKILL, as
``kill -9``) at a named point of an epoch's save sequence: ``before-last``, ``mid-last`` (the
temporary file written, not yet renamed), ``after-last``, ``after-best`` (see `fault_point`);
``epoch-start-rank<R>`` kills rank R at the start of an epoch (`unroll.engine.loop.fit`: one
process of a torchrun job dying while the others wait for it). A ``:stall`` suffix
(``epoch-start-rank1@2:stall``) makes the process hang there instead (a stalled rank: the
others' collectives time out after ``UNROLL_DIST_TIMEOUT`` seconds).
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from unroll.errors import UserError
from unroll.fileio import (  # noqa: F401  (re-exported: the writing itself is a floor below)
    atomic_write_bytes,
    atomic_write_text,
    remove_stale_temp_files,
)

FORMAT = 1
FAULT_ENV = "UNROLL_FAULT"


def fault_point(name: str, epoch: int | None = None) -> None:
    """Kill this process here when ``UNROLL_FAULT`` names this point (and this epoch, when it
    names one): fault-injection tests of the save sequence. Costs one dict lookup otherwise."""
    fault = os.environ.get(FAULT_ENV)
    if fault is None:
        return
    point, _, action = fault.partition(":")
    if point in (name, f"{name}@{epoch}"):
        if action == "stall":
            import time

            while True:
                time.sleep(3600)
        os.kill(os.getpid(), signal.SIGKILL)


def checkpoint_bytes(payload: dict[str, Any]) -> bytes:
    """The serialized checkpoint (``format`` and ``unroll_version`` added)."""
    from unroll import __version__

    if "kind" not in payload or "model" not in payload:
        raise ValueError("checkpoint_bytes: payload needs 'kind' and 'model' entries")
    full = {"format": FORMAT, "unroll_version": __version__, **payload}
    buffer = io.BytesIO()
    torch.save(full, buffer)
    with zipfile.ZipFile(buffer, "a") as archive:  # torch.load reads its own records only
        prefix = archive.namelist()[0].split("/")[0]
        archive.writestr(f"{prefix}/{DIGEST_RECORD}", content_digest(full))
    return buffer.getvalue()


DIGEST_RECORD = ".unroll_digest"


def content_digest(obj: Any) -> str:
    """``sha256:<hex>`` of a checkpoint's contents: every tensor's dtype, shape and bytes (as
    on the CPU) and every other value, in order — the same for the dict saved and the dict
    loaded, whatever device the tensors were on."""
    h = hashlib.sha256()
    _feed(h, obj)
    return "sha256:" + h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{list(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(b"{%d|" % len(obj))
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update(b"[%d|" % len(obj))
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, bool) or obj is None:
        h.update(f"{obj}|".encode())
    elif isinstance(obj, int):
        h.update(f"i{int(obj)}|".encode())
    elif isinstance(obj, float):
        h.update(f"f{float(obj).hex()}|".encode())
    elif isinstance(obj, str):
        data = obj.encode("utf-8", "surrogatepass")
        h.update(b"s%d|" % len(data) + data)
    elif isinstance(obj, bytes):
        h.update(b"b%d|" % len(obj) + obj)
    else:
        h.update(f"{type(obj).__name__}:{obj!r}|".encode())


def check_archive(path: Path) -> str | None:
    """Check a checkpoint file's zip records against their CRC-32s; returns the digest
    record's text (None without one). A damaged record is a one-line `UserError`; a file
    that is not a zip archive is left to torch.load's verdict."""
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            digest = [n for n in archive.namelist() if n.endswith("/" + DIGEST_RECORD)]
            text = archive.read(digest[0]).decode("ascii", "replace") if digest else None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as e:
        raise UserError(
            f"{path}: damaged checkpoint ({_short(e)}); restore it from a copy"
        ) from None
    except OSError:
        return None  # unreadable: torch.load says why
    if bad is not None:
        raise UserError(
            f"{path}: damaged checkpoint (its record {bad} fails its CRC check: a changed "
            f"bit); restore it from a copy"
        )
    return text


def _short(e: BaseException) -> str:
    first = " ".join(str(e).split()) or type(e).__name__
    return first[:200]


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Atomically save a checkpoint dict; `payload` must hold at least ``kind`` and ``model``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, checkpoint_bytes(payload))


def save_epoch(directory: str | Path, payload: dict[str, Any], is_best: bool) -> None:
    """The epoch's checkpoints as one unit: ``last.pt``, then (if best) the same as ``best.pt``.

    `payload` must hold ``epoch`` and ``best_epoch`` (see the module docstring)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = checkpoint_bytes(payload)
    epoch = payload.get("epoch")
    fault_point("before-last", epoch)
    atomic_write_bytes(
        directory / "last.pt", data, before_rename=lambda: fault_point("mid-last", epoch)
    )
    fault_point("after-last", epoch)
    if is_best:
        atomic_write_bytes(directory / "best.pt", data)
        fault_point("after-best", epoch)


def _epochs(path: Path) -> tuple[int | None, int | None]:
    """(epoch, best_epoch) recorded in a checkpoint, read without loading the tensors' data."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable file is reported by load_checkpoint
        return None, None
    if not isinstance(ckpt, dict):
        return None, None
    return ckpt.get("epoch"), ckpt.get("best_epoch")


def best_checkpoint(directory: str | Path) -> Path:
    """The checkpoint holding the best epoch on record: ``best.pt``, unless ``last.pt`` says it
    is itself the best and ``best.pt`` is older or missing (a kill between the two writes)."""
    directory = Path(directory)
    best, last = directory / "best.pt", directory / "last.pt"
    if not last.is_file():
        return best
    epoch, best_epoch = _epochs(last)
    last_is_best = epoch is not None and epoch == best_epoch
    if last_is_best and (not best.is_file() or _epochs(best)[0] != epoch):
        return last
    return best


def repair_best(directory: str | Path) -> bool:
    """Make ``best.pt`` hold the best epoch on record again (after a kill); True if it did."""
    directory = Path(directory)
    chosen = best_checkpoint(directory)
    if chosen.name == "best.pt":
        return False
    atomic_write_bytes(directory / "best.pt", chosen.read_bytes())
    return True


def refuse_to_overwrite_checkpoints(out: str | Path, flag: str = "--out") -> Path:
    """`out`, checked as the target of an export or a figure: a one-line `UserError` if it
    would replace a checkpoint (a file in a run's ``checkpoints/``, or a file that is an
    unroll checkpoint) — e.g. ``word2vec export RUN RUN/checkpoints/best.pt``."""
    out = Path(out)
    parent = out.absolute().parent
    if parent.name == "checkpoints" and (parent.parent / "config.json").is_file():
        raise UserError(
            f"{flag} {out}: inside the checkpoints of the run {parent.parent}; a run's "
            f"checkpoints are not overwritten (write somewhere else)"
        )
    if out.is_file() and not out.is_symlink():
        try:
            with zipfile.ZipFile(out) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            names = []
        if any(n.endswith("/data.pkl") for n in names):
            raise UserError(f"{flag} {out}: is a checkpoint; not overwritten (write elsewhere)")
    return out


def find_checkpoint(path: str | Path, name: str = "best") -> Path:
    """A checkpoint file, or the `name` checkpoint (``best``/``last``) inside a run directory."""
    if name not in ("best", "last"):
        raise UserError(f"--checkpoint {name!r}: expected best or last")
    p = Path(path)
    if p.is_dir():
        for directory in (p / "checkpoints", p):
            candidate = best_checkpoint(directory) if name == "best" else directory / "last.pt"
            if candidate.is_file():
                return candidate
        raise UserError(f"{p}: no checkpoints/{name}.pt in this run directory")
    if not p.exists():
        raise UserError(f"{p}: no such checkpoint file or run directory")
    return p


def load_checkpoint(
    path: str | Path, kind: str | None = None, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint`; if `kind` is given it must match."""
    path = Path(path)
    digest = check_archive(path) if path.is_file() else None
    try:
        with warnings.catch_warnings():  # (e.g. on the pickle protocol: the verdict is below)
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such checkpoint file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a checkpoint file") from None
    except Exception as e:  # torch raises many types for a file that is not a checkpoint
        first = " ".join(str(e).split()) or type(e).__name__
        if len(first) > 300:
            first = first[:300].rsplit(" ", 1)[0] + " ..."
        raise UserError(f"{path}: not an unroll checkpoint ({first})") from None
    if digest is not None and content_digest(ckpt) != digest:
        raise UserError(
            f"{path}: damaged checkpoint (its contents do not match the digest saved with it: "
            f"a changed bit); restore it from a copy"
        )
    if not isinstance(ckpt, dict) or "kind" not in ckpt or "model" not in ckpt:
        raise UserError(f"{path}: not an unroll checkpoint (no 'kind'/'model' entries)")
    if kind is not None and ckpt["kind"] != kind:
        raise UserError(
            f"{path}: is a {ckpt['kind']!r} checkpoint, expected {kind!r} (a run of another recipe)"
        )
    return ckpt
