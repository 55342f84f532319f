"""Checkpoints: plain dicts of state_dicts, config and metadata — never a pickled module.

Layout (every recipe)::

    {"kind": "unroll.lm", "format": 1, "unroll_version": "0.1.0",
     "config": {...asdict(config)...}, "model": state_dict, "optimizer": state_dict | None,
     "rng": get_rng_state(), "epoch": int, ...recipe-specific extras (vocabulary, scaler)...}

`save_checkpoint` writes to a temporary file in the same directory, fsyncs it and renames it
over the target, so a crash leaves either the old or the new file, never half of one.
`load_checkpoint` reads with ``weights_only=True`` and checks ``kind``.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from unroll.errors import UserError

FORMAT = 1


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically (temp file in the same directory + fsync + rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Atomically save a checkpoint dict; `payload` must hold at least ``kind`` and ``model``."""
    from unroll import __version__

    if "kind" not in payload or "model" not in payload:
        raise ValueError("save_checkpoint: payload needs 'kind' and 'model' entries")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    full = {"format": FORMAT, "unroll_version": __version__, **payload}
    buffer = io.BytesIO()
    torch.save(full, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def find_checkpoint(path: str | Path, name: str = "best") -> Path:
    """A checkpoint file, or the `name` checkpoint (``best``/``last``) inside a run directory."""
    p = Path(path)
    if p.is_dir():
        for candidate in (p / "checkpoints" / f"{name}.pt", p / f"{name}.pt"):
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
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such checkpoint file") from None
    except Exception as e:  # torch raises many types for a file that is not a checkpoint
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not an unroll checkpoint ({first[:120]})") from None
    if not isinstance(ckpt, dict) or "kind" not in ckpt or "model" not in ckpt:
        raise UserError(f"{path}: not an unroll checkpoint (no 'kind'/'model' entries)")
    if kind is not None and ckpt["kind"] != kind:
        raise UserError(f"{path}: is a {ckpt['kind']!r} checkpoint, expected {kind!r}")
    return ckpt
