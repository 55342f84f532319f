"""Checkpoints: plain dicts of state_dicts, config and metadata — never a pickled module.

Layout (every recipe)::

    {"kind": "unroll.lm", "format": 1, "unroll_version": "0.1.0",
     "config": {...asdict(config)...}, "model": state_dict, "optimizer": state_dict | None,
     "rng": get_rng_state(), "epoch": int, "best": float, "best_epoch": int,
     ...recipe-specific extras (vocabulary, scaler, class names)...}

Writing is atomic (`atomic_write_bytes`: a temporary file in the same directory, fsync, rename),
so a crash leaves either the old or the new file, never half of one.

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
process of a torchrun job dying while the others wait for it).
"""

from __future__ import annotations

import io
import os
import signal
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from unroll.errors import UserError

FORMAT = 1
FAULT_ENV = "UNROLL_FAULT"


def fault_point(name: str, epoch: int | None = None) -> None:
    """Kill this process here when ``UNROLL_FAULT`` names this point (and this epoch, when it
    names one): fault-injection tests of the save sequence. Costs one dict lookup otherwise."""
    fault = os.environ.get(FAULT_ENV)
    if fault is not None and fault in (name, f"{name}@{epoch}"):
        os.kill(os.getpid(), signal.SIGKILL)


def atomic_write_bytes(
    path: str | Path, data: bytes, mode: int = 0o644, before_rename=None
) -> None:
    """Write `data` to `path` atomically (temp file in the same directory + fsync + rename).

    Files get `mode` (default rw-r--r--, as a plain ``open`` would under the usual umask), so
    every file of a run directory has the same permissions."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode & ~_umask())
        if before_rename is not None:
            before_rename()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def checkpoint_bytes(payload: dict[str, Any]) -> bytes:
    """The serialized checkpoint (``format`` and ``unroll_version`` added)."""
    from unroll import __version__

    if "kind" not in payload or "model" not in payload:
        raise ValueError("checkpoint_bytes: payload needs 'kind' and 'model' entries")
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "unroll_version": __version__, **payload}, buffer)
    return buffer.getvalue()


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
    if not isinstance(ckpt, dict) or "kind" not in ckpt or "model" not in ckpt:
        raise UserError(f"{path}: not an unroll checkpoint (no 'kind'/'model' entries)")
    if kind is not None and ckpt["kind"] != kind:
        raise UserError(
            f"{path}: is a {ckpt['kind']!r} checkpoint, expected {kind!r} (a run of another recipe)"
        )
    return ckpt
