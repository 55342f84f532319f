"""A run directory: everything needed to understand, reproduce and resume a run.

::

    RUN_DIR/
      config.json      resolved config (dataclasses.asdict) + recipe kind
      command.txt      the command lines that started and resumed the run
      meta.json        seed, unroll version, git SHA, torch version, device, precision, start time
      metrics.jsonl    one JSON object per line (see MetricsLogger)
      checkpoints/     last.pt, best.pt (see unroll.engine.checkpoint)
      results.json     what the run reports at the end
      tb/              TensorBoard scalars, when tensorboard is installed
      .lock            held (flock) by the process that trains in it

The directory is created only by `RunDir.create`, which a recipe calls after all input has
been validated, so a bad argument never leaves a half-made run behind. One process at a time
trains in a run directory: `RunDir.lock` takes an exclusive lock that the operating system
releases when the process ends, however it ends, so a stale lock cannot block a resume.

A run directory's files are its own: one holding a symbolic link (``.lock``, ``command.txt``,
``checkpoints`` or anything else in it, in ``checkpoints/`` or ``tb/``) is refused before it is
written (`RunDir.check_own_files`), appends never follow a link (``O_NOFOLLOW``), atomic writes
replace a link rather than write through it, and taking the lock truncates nothing but a
regular file of the directory's own.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from unroll.engine.device import device_name
from unroll.errors import UserError
from unroll.fileio import atomic_write_text, remove_stale_temp_files


def git_sha() -> str | None:
    """The git commit of the unroll source tree, if it is a checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def default_run_dir(prefix: str, root: str | Path = "runs") -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{prefix}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = Path(root) / f"{prefix}-{stamp}-{n}"
    return path


def json_safe(obj: Any) -> Any:
    """`obj` with every non-finite float as None: JSON has no inf/nan (``Infinity`` is not JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n"


def check_out_path(path: str | Path) -> Path:
    """A path where a new run directory can be made, or a one-line `UserError` saying why not."""
    if str(path).strip() == "":
        raise UserError("--out '': expected a directory name")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {path}: exists and is not a directory")
    if path.is_dir() and not all(_creation_debris(p) for p in path.iterdir()):
        raise UserError(
            f"--out {path}: directory exists and is not empty (choose another --out, "
            f"or continue it with --resume {path})"
        )
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise UserError(f"--out {path}: {parent} is not a directory")
    if not os.access(parent if not path.exists() else path, os.W_OK | os.X_OK):
        raise UserError(f"--out {path}: cannot write in {parent if not path.exists() else path}")
    return path


def _creation_debris(p: Path) -> bool:
    """What a run killed while its directory was being made leaves (the lock file, a temp file
    of a write, an empty checkpoints/): such a directory is still new; `RunDir.create` clears it."""
    if p.name == "checkpoints" and p.is_dir():
        return not any(p.iterdir())
    return p.name == ".lock" or (p.name.startswith(".") and p.name.endswith(".tmp"))


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_fd: int | None = None

    # -- creation / reopening -------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        kind: str,
        config: Any,
        seed: int,
        device: str | torch.device,
        argv: list[str] | None = None,
        extra_meta: dict[str, Any] | None = None,
    ) -> RunDir:
        """Make a new run directory, locked by this process; refuses one that holds anything."""
        path = check_out_path(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"--out {path}: cannot create ({e.strerror})") from None
        run = cls(path)
        run.check_own_files()
        run.lock()
        remove_stale_temp_files(path)
        (path / "checkpoints").mkdir(exist_ok=True)
        run.write_config(kind, config)
        from unroll import __version__

        meta = {
            "kind": kind,
            "seed": seed,
            "unroll_version": __version__,
            "git_sha": git_sha(),
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "device": str(device),
            "device_name": device_name(device),
            "started": _dt.datetime.now().isoformat(timespec="seconds"),
            **(extra_meta or {}),
        }
        atomic_write_text(path / "meta.json", dumps(meta))
        run.record_command(argv)
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """Reopen an existing run directory (for --resume, eval, generate)."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise UserError(f"{path}: not a run directory (no config.json)")
        return cls(path)

    def lock(self) -> None:
        """Hold the run directory for this process (a second writer gets a `UserError`)."""
        if self._lock_fd is not None:
            return
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one writer is the user's care
            return
        path = self.path / ".lock"
        try:  # never through a link: the lock file is the directory's own
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as e:
            raise UserError(f"{path}: cannot take the run's lock ({_why(path, e)})") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
                raise UserError(
                    f"{path}: cannot take the run's lock (not a regular file of the run's own: "
                    f"remove it)"
                )
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(
                f"{self.path}: in use by process {owner} (one run or resume at a time)"
            ) from None
        except UserError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def record_command(self, argv: list[str] | None = None) -> None:
        """Append the command line (a resumed run adds a line)."""
        argv = sys.argv if argv is None else argv
        from unroll.engine.metrics_log import open_for_append

        with open_for_append(self.path / "command.txt") as f:
            f.write(shlex.join(argv) + "\n")

    def check_own_files(self) -> None:
        """A one-line `UserError` if the directory holds a symbolic link (at its top, in
        ``checkpoints/`` or ``tb/``), or ``checkpoints``/``tb`` that is not a directory, or a
        ``.lock`` that is not a file: a run writes only files of its own (module docstring)."""
        for sub in ("checkpoints", "tb"):
            p = self.path / sub
            if os.path.lexists(p) and not p.is_symlink() and not p.is_dir():
                raise UserError(f"{p}: expected a directory (the run's {sub}), found a file")
        lock = self.path / ".lock"
        if lock.is_dir() and not lock.is_symlink():
            raise UserError(f"{lock}: is a directory, expected the run's lock file (remove it)")
        for d in (self.path, self.path / "checkpoints", self.path / "tb"):
            if d != self.path and (d.is_symlink() or not d.is_dir()):
                continue
            try:
                entries = list(d.iterdir())
            except OSError as e:
                raise UserError(f"{d}: cannot read ({e.strerror})") from None
            for p in sorted(entries):
                if p.is_symlink():
                    raise UserError(
                        f"{p}: is a symbolic link; a run directory's files must be its own "
                        f"(replace the link with the file, or start afresh with --out NEW)"
                    )

    # -- contents -------------------------------------------------------------------------
    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint(self, name: str) -> Path:
        return self.checkpoints / f"{name}.pt"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def read_config(self) -> dict[str, Any]:
        path = self.path / "config.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"{path}: not a readable config ({e})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: not a readable config (expected a JSON object)")
        return data

    def write_config(self, kind: str, config: Any) -> None:
        cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
        atomic_write_text(self.path / "config.json", dumps({"kind": kind, **cfg}))

    def read_meta(self) -> dict[str, Any]:
        return json.loads((self.path / "meta.json").read_text(encoding="utf-8"))

    def write_json(self, name: str, obj: Any) -> Path:
        """Atomically write a result file (e.g. ``results.json``); inf/nan become null."""
        target = self.path / name
        atomic_write_text(target, dumps(obj))
        return target


def _why(path: Path, e: OSError) -> str:
    if os.path.islink(path):
        return "it is a symbolic link; remove it"
    if os.path.isdir(path):
        return "it is a directory; remove it"
    return e.strerror or str(e)
