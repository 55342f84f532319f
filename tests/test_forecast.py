"""Forecasting: metrics and baselines on hand-made series, the model, the recipe end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unroll.cli import main
from unroll.engine.metrics_log import read_metrics
from unroll.metrics.forecast import (
    backtest,
    mae,
    mase,
    mase_scale,
    naive_forecast,
    rmse,
    seasonal_naive_forecast,
)
from unroll.models.forecaster import Forecaster
from unroll.recipes.forecast import predict

# A tiny config for the synthetic series (960 rows, season 24): seconds on 2 cores.
TINY = [
    "--data", "synthetic", "--lookback", "24", "--horizon", "12", "--no-progress",
    "epochs=4", "hidden_size=16", "batch_size=128", "step=6", "lr=0.01",
]  # fmt: skip


# -- metrics and baselines ----------------------------------------------------------------------


def test_mase_hand_computed():
    train = np.array([1.0, 2.0, 4.0, 3.0, 5.0, 9.0])
    assert mase_scale(train, 1) == pytest.approx((1 + 2 + 1 + 2 + 4) / 5)  # 2.0
    assert mase_scale(train, 2) == pytest.approx((3 + 1 + 1 + 6) / 4)  # 2.75
    actual, forecast = np.array([10.0, 12.0]), np.array([11.0, 9.0])
    assert mae(actual, forecast) == pytest.approx(2.0)
    assert rmse(actual, forecast) == pytest.approx(np.sqrt((1 + 9) / 2))
    assert mase(actual, forecast, mase_scale(train, 2)) == pytest.approx(2.0 / 2.75)


def test_naive_and_seasonal_naive_hand_made():
    y = np.array([10.0, 11, 12, 13, 14, 15, 16, 17])
    np.testing.assert_array_equal(naive_forecast(y, [4, 6], 3), [[13, 13, 13], [15, 15, 15]])
    # m=2: steps 1, 2 take last season's values; step 3 wraps to the same last season
    np.testing.assert_array_equal(
        seasonal_naive_forecast(y, [4, 6], 3, season=2), [[12, 13, 12], [14, 15, 14]]
    )
    np.testing.assert_array_equal(seasonal_naive_forecast(y, [5], 2, season=1), [[14, 14]])


def test_backtest_scores_a_perfect_model_and_the_baselines():
    y = np.array([0.0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
    origins = [6, 7]

    def perfect(o):
        return y[np.asarray(o)[:, None] + np.arange(2)]

    r = backtest(y, origins, horizon=2, season=2, scale=0.5, models={"perfect": perfect})
    assert r["scores"]["perfect"] == {"mae": 0.0, "rmse": 0.0, "mase": 0.0}
    assert r["scores"]["seasonal_naive"]["mae"] == 0.0  # period-2 series
    assert r["scores"]["naive"]["mae"] == pytest.approx(0.5)
    assert r["scores"]["naive"]["mase"] == pytest.approx(1.0)


# -- the model ----------------------------------------------------------------------------------


def test_direct_and_recursive_shapes_and_rollout():
    torch.manual_seed(0)
    x = torch.randn(3, 10, 1)
    direct = Forecaster(1, 5, hidden_size=8)
    assert direct.forecast(x).shape == (3, 5)
    rec = Forecaster(1, 5, mode="recursive", hidden_size=8)
    out = rec.forecast(x)
    assert out.shape == (3, 5)
    # step 2 is the one-step forecast from the window that ends with step 1's prediction
    shifted = torch.cat([x[:, 1:], out[:, :1, None]], dim=1)
    torch.testing.assert_close(rec.forecast(shifted, 1)[:, 0], out[:, 1])
    with pytest.raises(ValueError, match="input_size=1"):
        Forecaster(2, 5, mode="recursive")


def test_last_value_normalisation_follows_the_level():
    # The trend fix: shifting a window by c shifts the forecast by exactly c.
    torch.manual_seed(0)
    model = Forecaster(1, 4, hidden_size=8).eval()
    x = torch.randn(2, 12, 1)
    with torch.no_grad():
        torch.testing.assert_close(model.forecast(x + 50.0), model.forecast(x) + 50.0)
        plain = Forecaster(1, 4, hidden_size=8, normalize="none").eval()
        assert not torch.allclose(plain.forecast(x + 50.0), plain.forecast(x) + 50.0)


# -- the recipe through the CLI -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fc") / "run"
    assert main(["forecast", *TINY, "--out", str(out)]) == 0
    return out


def test_smoke_synthetic_beats_naive_and_loss_falls(tiny_run):
    results = json.loads((tiny_run / "results.json").read_text())
    s = results["scores"]
    assert set(s) == {"lstm-direct", "naive", "seasonal_naive"}
    assert s["lstm-direct"]["mase"] < s["naive"]["mase"]
    losses = [m["train_loss"] for m in read_metrics(tiny_run)]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert results["origins"] == len(range(768, 960 - 12 + 1, 6))
    for name in ("config.json", "meta.json", "command.txt", "backtest.png"):
        assert (tiny_run / name).is_file(), name
    ckpt = torch.load(tiny_run / "checkpoints" / "best.pt", weights_only=True)
    assert ckpt["kind"] == "unroll.forecaster"
    assert ckpt["columns"] == ["value"] and set(ckpt["scaler"]) == {"mean", "std"}


def test_predict_gives_horizon_values(tiny_run, tmp_path, capsys):
    r = predict(tiny_run)
    assert len(r["values"]) == 12 and np.all(np.isfinite(r["values"]))
    lines = (tiny_run / "forecast.csv").read_text().splitlines()
    assert lines[0] == "step,t,value" and len(lines) == 13
    assert lines[1].startswith("1,960,")  # integer time labels continue past the end
    # from a CSV with the trained column, through the CLI
    csv = tmp_path / "new.csv"
    csv.write_text("value\n" + "".join(f"{10 + np.sin(i / 3):.4f}\n" for i in range(30)))
    out = tmp_path / "f.csv"
    assert (
        main(["forecast", "predict", str(tiny_run), "--data", str(csv), "--output", str(out)]) == 0
    )
    assert len(out.read_text().splitlines()) == 13
    assert "wrote" in capsys.readouterr().out


def test_resume_continues_the_run(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["forecast", "--resume", str(run), "--no-progress", "epochs=5"]) == 0
    assert [m["epoch"] for m in read_metrics(run)] == [1, 2, 3, 4, 5]
    assert main(["forecast", "--resume", str(run), "hidden_size=8"]) == 2


def _bad(tmp_path, capsys, argv):
    out = tmp_path / "run"
    rc = main(["forecast", *argv, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("unroll: error: ") and err.count("\n") == 1, err
    assert not out.exists()  # nothing half-written
    return err


@pytest.mark.parametrize(
    ("text", "argv", "expect"),
    [
        ("t,y\n0,1\n1,\n2,3\n", [], "missing value in column 'y' at line 3"),
        ("t,y\n0,1\n1,oops\n", [], "not numeric"),
        ("t,y\n0,1\n1,2\n", ["--target", "nope"], "unknown target column 'nope'"),
        ("t,y\n0,1\n1,2\n", ["--inputs", "x"], "unknown input column 'x'"),
        ("t,y\n" + "".join(f"{i},{i}\n" for i in range(20)), [], "too few"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, capsys, text, argv, expect):
    csv = tmp_path / "bad.csv"
    csv.write_text(text)
    err = _bad(tmp_path, capsys, ["--data", str(csv), *argv])
    assert str(csv) in err and expect in err


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert "no such file" in _bad(tmp_path, capsys, ["--data", str(tmp_path / "none.csv")])
    assert "unknown config key" in _bad(tmp_path, capsys, ["--data", "synthetic", "hiden=3"])
    err = _bad(tmp_path, capsys, ["--data", "synthetic", "--mode", "recursive", "epochs=x"])
    assert "epochs" in err
    assert main(["forecast", "predict", str(tmp_path / "nothing")]) == 2


def test_sin_cos_demo_writes_png(tmp_path):
    out = tmp_path / "demo"
    argv = ["forecast", "--demo", "sin-cos", "--out", str(out), "--no-progress"]
    argv += ["epochs=2", "periods=8", "streams=4", "bptt=10", "hidden_size=8"]
    assert main(argv) == 0
    png = out / "sin_cos.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(read_metrics(out)) == 2
