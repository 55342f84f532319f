"""A dependency-free progress bar.

On a terminal it redraws one line (``\r``), never wider than the terminal (the bar narrows,
then the values are cut: a line that wrapped could not be redrawn); otherwise (CI, a log file)
it prints a plain line every `log_every` seconds, so logs stay readable. The finished bar
always shows the values: `due` says yes to the last update. Values passed to `update` may be
tensors; they are only converted (a host-device sync) when the line is actually drawn.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any, TextIO

import torch


def _fmt(v: Any) -> str:
    if isinstance(v, torch.Tensor):
        v = v.item()
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return str(v)


class Progress:
    def __init__(
        self,
        total: int,
        desc: str = "",
        stream: TextIO | None = None,
        enabled: bool = True,
        min_interval: float = 0.2,
        log_every: float = 30.0,
    ):
        self.total = max(int(total), 0)
        self.desc = desc
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval = min_interval if self.tty else log_every
        self.n = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._width = 0

    def due(self) -> bool:
        """Whether the next `update` (of one) would draw: lets callers skip computing costly
        values. Always true for the update that completes the bar."""
        if not self.enabled:
            return False
        last = self.n + 1 >= self.total
        return last or time.perf_counter() - self._last_draw >= self.min_interval

    def update(self, n: int = 1, **values: Any) -> None:
        self.n += n
        if self.enabled and (self.due() or self.n >= self.total):
            self._draw(values)

    def _draw(self, values: dict[str, Any]) -> None:
        now = time.perf_counter()
        self._last_draw = now
        elapsed = now - self.start
        frac = self.n / self.total if self.total else 1.0
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        extras = " ".join(f"{k}={_fmt(v)}" for k, v in values.items())
        # A redrawn line must fit: one that wraps leaves a copy on every redraw.
        columns = shutil.get_terminal_size((80, 24)).columns - 1 if self.tty else None
        line = self._fit(frac, f" {self.n}/{self.total} {elapsed:.0f}s<{eta:.0f}s", extras, columns)
        if self.tty:
            pad = max(self._width - len(line), 0)
            self.stream.write("\r" + line + " " * pad)
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _fit(self, frac: float, counts: str, extras: str, columns: int | None) -> str:
        """``desc [####----] n/total elapsed<eta values`` in at most `columns` characters: the
        bar narrows from 20 to 5 characters first, then the line is cut."""
        for bar_w in (20, 15, 10, 5):
            filled = int(bar_w * min(frac, 1.0))
            bar = "#" * filled + "-" * (bar_w - filled)
            line = f"{self.desc} [{bar}]{counts} {extras}".rstrip()
            if columns is None or len(line) <= columns:
                return line
        return line[: max(columns, 1)]

    def close(self, **values: Any) -> None:
        if self.enabled and self.tty:
            if values:
                self._draw(values)
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
