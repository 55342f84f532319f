"""sin -> cos: the epoch is chosen on a validation stretch and the test stretch is measured
once, on the chosen checkpoint (choosing on the test stretch reports an optimistic figure)."""

from __future__ import annotations

import json

from unroll.engine.metrics_log import read_metrics
from unroll.recipes import sincos

TINY = {"epochs": 3, "periods": 8, "batch_size": 4, "num_steps": 10, "hidden_size": 8}


def test_the_best_epoch_is_chosen_on_validation_and_tested_once(tmp_path):
    config = sincos.RECIPE.make_config(overrides={**TINY, "threads": 1, "tensorboard": False})
    result = sincos.train(config, out=tmp_path / "run", quiet=True)
    history = read_metrics(tmp_path / "run")
    assert all("valid_mse" in m and "test_mse" not in m for m in history)  # never test per epoch
    best = min(history, key=lambda m: m["valid_mse"])
    assert result.best_epoch == best["epoch"]
    assert result.best_valid_mse == best["valid_mse"]
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["test_mse"] == result.test_mse and "best_test_mse" not in saved
    # the test figure is the chosen checkpoint's on its own stretch, not the validation one
    assert result.test_mse != result.best_valid_mse
    assert 0 < result.test_mse < 10
