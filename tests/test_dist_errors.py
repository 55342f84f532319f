"""Errors of torchrun jobs are one line from rank 0 (not one per rank, not a rank's Python
traceback): word2vec, which trains in one process, and a rank that stalls until the others'
collectives time out (``UNROLL_DIST_TIMEOUT``; ``UNROLL_FAULT=...:stall`` makes rank 1 hang).
torchrun's own summary of the failed job (its ChildFailedError) is the launcher's; `unroll-torchrun`
(tests/test_launch.py) ends it in one line instead.
Both start 2-process jobs (~20 s each): ``slow``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def torchrun(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **env}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        full_env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node",
         "2", "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "unroll", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def unroll_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("unroll: ")]


@pytest.mark.slow
def test_word2vec_under_torchrun_is_one_line_from_rank_0(tmp_path):
    """Old main: one error per rank."""
    (tmp_path / "c.txt").write_text("a b c d\n" * 20)
    job = torchrun("word2vec", "train", "--data", "c.txt", "--out", "w", cwd=tmp_path, env={})
    assert job.returncode != 0
    assert unroll_lines(job.stderr) == [
        "unroll: error: rank 0: word2vec trains in one process (WORLD_SIZE=2: started by "
        "torchrun); use threads=N for the cores of one machine"
    ], job.stderr
    assert "[rank" not in job.stderr  # no rank's traceback
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_a_stalled_rank_is_one_line_from_rank_0(tmp_path):
    """Old main: rank 0's gloo timeout as a Python traceback."""
    job = torchrun(
        "sincos", "train", "--out", "run", "epochs=3", "threads=1", "tensorboard=false",
        "periods=8", "batch_size=4", "num_steps=10", "hidden_size=4", "--quiet",
        cwd=tmp_path,
        env={"UNROLL_FAULT": "epoch-start-rank1@2:stall", "UNROLL_DIST_TIMEOUT": "4"},
    )  # fmt: skip
    assert job.returncode != 0
    lines = unroll_lines(job.stderr)
    assert len(lines) == 1, job.stderr
    assert lines[0].startswith("unroll: error: rank 0: another process stopped or stalled")
    assert "run/checkpoints keep epoch 1 (continue with --resume run)" in lines[0]
    assert "[rank0]: Traceback" not in job.stderr
