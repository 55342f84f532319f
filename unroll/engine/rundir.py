"""A run directory: everything needed to understand, reproduce and resume a run.

::

    RUN_DIR/
      config.json      resolved config (dataclasses.asdict) + recipe kind
      command.txt      the command line that started (or resumed) the run
      meta.json        seed, unroll version, git SHA, torch version, device, start time
      metrics.jsonl    one JSON object per line (see MetricsLogger)
      checkpoints/     last.pt, best.pt (written atomically)
      tb/              TensorBoard scalars, when tensorboard is installed

The directory is created only by `RunDir.create`, which a recipe calls after all input has
been validated, so a bad argument never leaves a half-made run behind.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from unroll.errors import UserError
from unroll.engine.checkpoint import atomic_write_text
from unroll.engine.device import device_name


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


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

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
        """Make a new run directory; refuses one that already holds a run."""
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise UserError(
                f"--out {path}: directory exists and is not empty (choose another --out, "
                f"or continue it with --resume {path})"
            )
        path.mkdir(parents=True, exist_ok=True)
        (path / "checkpoints").mkdir(exist_ok=True)
        run = cls(path)
        cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
        atomic_write_text(path / "config.json", json.dumps({"kind": kind, **cfg}, indent=2) + "\n")
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
        atomic_write_text(path / "meta.json", json.dumps(meta, indent=2) + "\n")
        run.record_command(argv)
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """Reopen an existing run directory (for --resume, eval, generate)."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise UserError(f"{path}: not a run directory (no config.json)")
        return cls(path)

    def record_command(self, argv: list[str] | None = None) -> None:
        """Append the command line (a resumed run adds a line)."""
        argv = sys.argv if argv is None else argv
        with open(self.path / "command.txt", "a", encoding="utf-8") as f:
            f.write(shlex.join(argv) + "\n")

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
        return json.loads((self.path / "config.json").read_text(encoding="utf-8"))

    def read_meta(self) -> dict[str, Any]:
        return json.loads((self.path / "meta.json").read_text(encoding="utf-8"))

    def write_json(self, name: str, obj: Any) -> Path:
        """Atomically write a result file (e.g. ``results.json``) into the run directory."""
        target = self.path / name
        atomic_write_text(target, json.dumps(obj, indent=2) + "\n")
        return target
