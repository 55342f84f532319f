"""Metrics as JSON lines (always) and TensorBoard scalars (when tensorboard is installed).

Each `log` call appends one JSON object to ``metrics.jsonl`` and flushes, so the file is
readable while training runs and complete up to the last finished epoch after a crash.
Numbers that are tensors are converted with ``float()`` here, once per call — call `log` per
epoch or per progress update, not per step, to avoid a host-device sync on every step.
A non-finite number is written as null (JSON has no inf/nan).

The file is the run's record: `read_record` reads it back strictly (a damaged line is a
one-line error naming it; only a last line cut short by a kill mid-write is dropped), and
`RunRecord` derives what ``results.json`` reports from it — every epoch's line, before and
after any number of resumes, the time summed over them (each line's ``wall_seconds``: the
epoch's wall-clock time in the process that ran it) and the speeds from those sums — so a
resume cannot make a run forget its first epochs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unroll.errors import UserError
from unroll.fileio import atomic_write_text, write_error


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
        if truncate_after is not None and os.path.lexists(self.path):
            kept = read_record(self.path, upto=truncate_after)
            atomic_write_text(self.path, "".join(_line(r) for r in kept))
        self._file = open_for_append(self.path)
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
        try:
            self._file.write(_line(record))
            self._file.flush()
        except OSError as e:  # disk full: one line (a cut line is dropped on resume)
            raise write_error(self.path, e) from None
        if self._tb is not None:
            x = step if step is not None else record.get("epoch", 0)
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch":
                    self._tb.add_scalar(k, v, x)
            self._tb.flush()
        return record

    def close(self) -> None:
        with contextlib.suppress(OSError):  # (a write that failed already said so)
            self._file.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, allow_nan=False) + "\n"


def open_for_append(path: Path):
    """`path` opened to append text, never through a symbolic link (``O_NOFOLLOW``): a run
    directory's files are its own, a link planted in it cannot make a write land elsewhere."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        if os.path.islink(path):
            raise UserError(
                f"{path}: is a symbolic link; a run directory's files must be its own"
            ) from None
        raise UserError(f"{path}: cannot write ({e.strerror})") from None
    return os.fdopen(fd, "a", encoding="utf-8")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The lines of a run's ``metrics.jsonl`` (`path`: the file or its run directory), as
    `read_record` reads them; [] when there is none."""
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.jsonl"
    if not p.exists():
        return []
    return read_record(p)


def read_record(path: str | Path, upto: int | None = None) -> list[dict[str, Any]]:
    """The JSON objects of a ``metrics.jsonl``, one per line (of epochs up to `upto` when it
    is given). A last line without its newline that is not JSON is a write a kill cut short:
    dropped. Any other line that is not a JSON object with an integer ``epoch`` is a one-line
    `UserError` naming the file and the line: the run's record is damaged, and a resume that
    dropped the line would report a history with a hole in it."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise UserError(f"{path}: cannot read the run's record ({reason})") from None
    lines = text.split("\n")
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):  # no newline after it: a write cut short
                continue
            record = None
        epoch = record.get("epoch") if isinstance(record, dict) else None
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            raise UserError(
                f"{path}: line {n} is not a metrics record (a JSON object with an epoch): the "
                f"run's record is damaged (restore the file, or start afresh with --out NEW)"
            )
        if upto is None or epoch <= upto:
            records.append(record)
    return records


@dataclass
class RunRecord:
    """What a run reports, derived from its whole record (``metrics.jsonl``)."""

    history: list[dict[str, Any]] = field(default_factory=list)  # one line per epoch, in order

    @classmethod
    def read(cls, run_path: str | Path) -> RunRecord:
        records = read_metrics(run_path)
        by_epoch = {r["epoch"]: r for r in records}  # (one line per epoch; the last one wins)
        return cls([by_epoch[e] for e in sorted(by_epoch)])

    @property
    def epochs(self) -> int:
        """The epochs on record."""
        return len(self.history)

    @property
    def seconds(self) -> float:
        """Wall-clock time of the epochs on record (training, validation, checkpoints), summed
        over every process that ran some of them. (Lines written before ``wall_seconds`` was
        recorded count their ``seconds``.) Work a kill threw away is not counted."""
        return float(sum(_number(r.get("wall_seconds", r.get("seconds"))) for r in self.history))

    @property
    def train_seconds(self) -> float:
        """Time spent in the training steps alone (each line's ``seconds``), summed."""
        return float(sum(_number(r.get("seconds")) for r in self.history))

    def per_sec(self, items: str) -> float | None:
        """The speed over the whole run, ``<items>_per_sec`` of the lines weighted by their
        ``seconds`` (the items counted over the training time counted); None without it."""
        key = f"{items}_per_sec"
        timed = [r for r in self.history if r.get(key) is not None and r.get("seconds")]
        seconds = sum(_number(r["seconds"]) for r in timed)
        if not timed or seconds <= 0:
            return None
        return sum(_number(r[key]) * _number(r["seconds"]) for r in timed) / seconds

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def _number(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


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
