"""``unroll-torchrun``: torchrun's launch, a failed job ending in one line (torchrun itself adds
a Python traceback and a summary table below the process's own one-line error)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def launch(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
        "CUDA_VISIBLE_DEVICES": "",
    }
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", module, "--nnodes", "1", "--nproc-per-node", "2",
         "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "unroll", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize("launcher", ["torch.distributed.run", "unroll.cli.launch"])
def test_a_failed_job_is_one_line_from_the_launcher(tmp_path, launcher):
    (tmp_path / "c.txt").write_text("a b c d\n" * 20)
    job = launch(launcher, "word2vec", "train", "--data", "c.txt", "--out", "w", cwd=tmp_path)
    assert job.returncode == 2 if launcher == "unroll.cli.launch" else job.returncode != 0
    ours = "unroll: error: rank 0: word2vec trains in one process"
    assert ours in job.stderr
    if launcher == "torch.distributed.run":  # what the launcher exists for
        assert "Traceback" in job.stderr and "ChildFailedError" in job.stderr
        return
    assert "Traceback" not in job.stderr and "ChildFailedError" not in job.stderr, job.stderr
    lines = [line for line in job.stderr.splitlines() if line.strip()]
    # rank 1 fails the same way, unless torchrun stops it first (SIGTERM) once rank 0 failed
    assert lines[-1].startswith("unroll-torchrun: error: 2 process(es) failed: rank 0 (exit 2), ")
    assert any(f"rank 1 ({how}); rank " in lines[-1] for how in ("exit 2", "signal SIGTERM"))
    assert lines[-1].endswith(" first (its own error is above)")
    assert not (tmp_path / "w").exists()


def test_a_job_that_succeeds_is_torchruns(tmp_path):
    job = launch("unroll.cli.launch", "sincos", "presets", cwd=tmp_path)
    assert job.returncode == 0, job.stderr
    assert job.stdout.count("field") == 2  # each rank printed the table
