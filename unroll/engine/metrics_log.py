"""Metrics as JSON lines (always) and TensorBoard scalars (when tensorboard is installed).

Each `log` call appends one JSON object to ``metrics.jsonl`` and flushes, so the file is
readable while training runs and complete up to the last finished epoch after a crash.
Numbers that are tensors are converted with ``float()`` here, once per call — call `log` per
epoch or per progress update, not per step, to avoid a host-device sync on every step.
A non-finite number is written as null (JSON has no inf/nan).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch


def _plain(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class MetricsLogger:
    def __init__(
        self, run_path: str | Path, tensorboard: bool = True, truncate_after: int | None = None
    ):
        """`truncate_after`: when resuming, drop the lines (and TensorBoard events) of epochs past
        this one, so the logs match the checkpoint the run continues from."""
        self.path = Path(run_path) / "metrics.jsonl"
        if truncate_after is not None and self.path.exists():
            kept = []
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill mid-write
                    continue
                if record.get("epoch", 0) <= truncate_after:
                    kept.append(line)
            from unroll.engine.checkpoint import atomic_write_text

            atomic_write_text(self.path, "".join(k + "\n" for k in kept))
        self._file = open(self.path, "a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except Exception:  # tensorboard not installed: JSON lines only
                SummaryWriter = None
            if SummaryWriter is not None:
                # purge_step: events at or after it (from the epochs being redone) are dropped.
                purge = None if truncate_after is None else truncate_after + 1
                tb_dir = Path(run_path) / "tb"
                _after_existing_event_files(tb_dir)
                self._tb = SummaryWriter(log_dir=str(tb_dir), purge_step=purge)

    def log(self, step: int | None = None, **values: Any) -> dict[str, Any]:
        record = {k: _plain(v) for k, v in values.items()}
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()
        if self._tb is not None:
            x = step if step is not None else record.get("epoch", 0)
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch":
                    self._tb.add_scalar(k, v, x)
            self._tb.flush()
        return record

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def _after_existing_event_files(tb_dir: Path) -> None:
    """Wait, if need be, until a new event file's name sorts after those already in `tb_dir`.

    TensorBoard reads a directory's event files in name order, and the purge of a resumed
    run applies only to files read before its own. The name starts with the whole second it
    was made in (``events.out.tfevents.<seconds>.<host>.<pid>...``); within one second the pid,
    compared as text, decides — so a resume within a second of the killed run could sort
    first and keep the redone epochs twice. At most a second's wait, only in that case."""
    import time

    newest = 0
    for f in tb_dir.glob("events.out.tfevents.*"):
        part = f.name.split(".")[3] if f.name.count(".") >= 3 else ""
        if part.isdigit():
            newest = max(newest, int(part))
    if newest - time.time() > 2:
        return  # a file from the future (the clock was set back): waiting would not help
    while int(time.time()) <= newest:
        time.sleep(0.05)
