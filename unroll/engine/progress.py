"""A dependency-free progress bar.

On a terminal it redraws one line (``\r``); otherwise (CI, a log file) it prints a plain line
every `log_every` seconds, so logs stay readable. Values passed to `update` may be tensors; they
are only converted (a host-device sync) when the line is actually drawn.
"""

from __future__ import annotations

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
        """Whether the next `update` would draw (lets callers skip computing costly values)."""
        return self.enabled and (time.perf_counter() - self._last_draw >= self.min_interval)

    def update(self, n: int = 1, **values: Any) -> None:
        self.n += n
        if self.enabled and (self.due() or self.n >= self.total):
            self._draw(values)

    def _draw(self, values: dict[str, Any]) -> None:
        now = time.perf_counter()
        self._last_draw = now
        elapsed = now - self.start
        frac = self.n / self.total if self.total else 1.0
        bar_w = 20
        filled = int(bar_w * min(frac, 1.0))
        bar = "#" * filled + "-" * (bar_w - filled)
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        extras = " ".join(f"{k}={_fmt(v)}" for k, v in values.items())
        line = (
            f"{self.desc} [{bar}] {self.n}/{self.total} {elapsed:.0f}s<{eta:.0f}s {extras}".rstrip()
        )
        if self.tty:
            pad = max(self._width - len(line), 0)
            self.stream.write("\r" + line + " " * pad)
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

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
