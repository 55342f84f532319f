"""The README's code: the recipe written on the engine runs and learns as it says."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _block_after(heading: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_write_your_own_recipe(tmp_path):
    code = _block_after("## Write your own recipe")
    assert len([line for line in code.splitlines() if line.strip()]) <= 45  # ~40, as promised
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    accuracy = float(re.search(r"best valid accuracy ([0-9.]+)", out.stdout).group(1))
    assert accuracy > 0.9, out.stdout
    run = tmp_path / "runs" / "majority"
    for name in ("config.json", "meta.json", "metrics.jsonl", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
