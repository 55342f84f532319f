"""Output into a pipe whose reader has left (``unroll lm presets | head -1``): no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("recipe", ["lm", "word2vec", "autoencode"])
def test_a_closed_pipe_ends_quietly(recipe):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before a byte is written: every write is EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "unroll", recipe, "presets"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=120,
        )
    finally:
        os.close(write)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 141
