"""Real Penn Treebank: a short ``ptb-test`` smoke run, and (``-m slow``) ``ptb-small`` in full.

PTB is found at ``$UNROLL_DATA/ptb`` (CI: ``../shared/data``); without it these tests skip.
"""

import dataclasses
import os
from pathlib import Path

import pytest

from unroll.engine.metrics_log import read_metrics
from unroll.recipes.lm import get_preset, train


def ptb_dir() -> Path:
    root = os.environ.get("UNROLL_DATA")
    path = Path(root) / "ptb" if root else None
    if path is None or not (path / "ptb.train.txt").is_file():
        pytest.skip("real PTB not found: set UNROLL_DATA to a directory holding ptb/ptb.*.txt")
    return path


def test_ptb_test_preset_loss_falls(tmp_path):
    # The whole training split (so the vocabulary is PTB's 10000 words); the first 200 lines
    # of valid and test, to keep the evaluations short.
    src, data = ptb_dir(), tmp_path / "ptb"
    data.mkdir()
    for split in ("train", "valid", "test"):
        lines = (src / f"ptb.{split}.txt").read_text(encoding="utf-8").splitlines(keepends=True)
        text = "".join(lines if split == "train" else lines[:200])
        (data / f"ptb.{split}.txt").write_text(text, encoding="utf-8")
    # The tutorial's test config, two short epochs; the untrained model is at the uniform
    # perplexity (10000), so a working trainer is far below it and still falling.
    config = dataclasses.replace(
        get_preset("ptb-test"), epochs=2, max_steps_per_epoch=150, device="cpu", threads=1
    )
    result = train(config, data=str(data), out=tmp_path / "run", quiet=True)
    m = read_metrics(tmp_path / "run")
    assert m[0]["train_ppl"] < 9000
    assert m[1]["train_ppl"] < m[0]["train_ppl"]
    assert m[1]["valid_ppl"] < m[0]["valid_ppl"] < 9000
    assert result["test_ppl"] < 9000
    assert result["best_epoch"] == 2
    assert len(result["sample"].split()) > 0


@pytest.mark.slow
def test_ptb_small_reaches_the_paper(tmp_path):
    """Zaremba et al. 2014 report 114.5 (TF tutorial 115.91); about 25 min on 2 CPU cores."""
    data = ptb_dir()
    result = train(get_preset("ptb-small"), data=str(data), out=tmp_path / "run", quiet=True)
    print(result)
    assert result["test_ppl"] <= 116.0
