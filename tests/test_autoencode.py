"""The autoencode recipe end to end on tiny runs: files, scores re-derived from them, resume,
codes, the few-labels experiment, anomaly flags on a series, and the command line."""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from unroll.cli import main
from unroll.engine import load_checkpoint
from unroll.errors import UserError
from unroll.recipes.autoencode import (
    KIND,
    PRESETS,
    FewLabelsConfig,
    encode,
    evaluate,
    few_labels,
    load_autoencoder,
    make_config,
    prepare,
    train,
)

PNG = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_thread")  # (tests/conftest.py)


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn", reason="scikit-learn (the digits extra) not installed")
    return prepare(make_config(None, {"tensorboard": False}), torch.device("cpu"), progress=False)


def tiny(**extra) -> dict:
    return {"tensorboard": False, "epochs": 15, **extra}


@pytest.fixture(scope="module")
def dense_run(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("ae") / "dense"
    result = train(make_config(None, tiny()), out, data=digits, quiet=True)
    return out, result


def test_dense_digits_run_directory(dense_run, digits):
    out, result = dense_run
    for name in ("config.json", "metrics.jsonl", "results.json", "test_errors.csv"):
        assert (out / name).is_file(), name
    pytest.importorskip("matplotlib")
    for name in ("reconstructions.png", "codes.png", "worst.png"):
        assert (out / name).read_bytes()[:8] == PNG, name
    s = result.scores["test"]
    # 15 epochs learn something: well below the BCE of a flat grey guess, above the floor
    flat = -(np.log(0.5))
    assert s["bce_floor"] < s["bce"] < 0.8 * flat, s
    # the CSV holds the per-example errors whose means are the reported scores
    with open(out / "test_errors.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(digits.labels("test")) == s["examples"] == 359
    assert np.mean([float(r["bce"]) for r in rows]) == pytest.approx(s["bce"], rel=1e-4)
    assert np.mean([float(r["mse"]) for r in rows]) == pytest.approx(s["mse"], rel=1e-4)
    results = json.loads((out / "results.json").read_text())
    assert results["scores"]["test"]["bce"] == s["bce"]
    assert results["parameters"] == (64 * 32 + 32) + (32 * 8 + 8) + (8 * 32 + 32) + (32 * 64 + 64)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert results["best_valid_loss"] == min(x["valid_loss"] for x in lines)
    # the validation loss is the validation BCE of the best checkpoint
    assert results["scores"]["valid"]["bce"] == pytest.approx(results["best_valid_loss"], 1e-5)


def test_eval_rescores_and_encode_writes_the_codes(dense_run, tmp_path):
    out, result = dense_run
    again = evaluate(out, out=tmp_path / "eval")
    assert again.scores["test"]["bce"] == pytest.approx(result.scores["test"]["bce"], rel=1e-6)
    assert (tmp_path / "eval" / "test_errors.csv").is_file()
    saved = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert saved["scores"]["test"]["bce"] == pytest.approx(again.scores["test"]["bce"], rel=1e-12)
    written = encode(out, output=tmp_path / "codes.npz")
    arrays = np.load(written.path)
    model, ckpt, config = load_autoencoder(out)
    data = prepare(config, torch.device("cpu"), progress=False)
    with torch.no_grad():
        expected = model.encode(data.batch("test", slice(None)))
    np.testing.assert_allclose(arrays["test_codes"], expected.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(arrays["test_labels"], data.labels("test").numpy())
    assert arrays["train_codes"].shape == (1294, 8) and arrays["valid_codes"].shape == (144, 8)
    assert ckpt["kind"] == KIND and ckpt["shape"] == [8, 8]


def test_resume_matches_an_uninterrupted_run(digits, tmp_path):
    full = train(make_config(None, tiny(epochs=3)), tmp_path / "full", data=digits, quiet=True)
    train(make_config(None, tiny(epochs=2)), tmp_path / "part", data=digits, quiet=True)
    resumed = train({"epochs": 3}, resume=tmp_path / "part", data=digits, quiet=True)
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.pt")
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    assert resumed.scores == full.scores
    with pytest.raises(UserError, match="code_size cannot change when resuming"):
        train({"code_size": 4}, resume=tmp_path / "part", data=digits, quiet=True)


def test_denoising_brings_noisy_digits_closer_to_the_clean_ones(digits, tmp_path):
    config = make_config(None, tiny(epochs=40, noise="gaussian", noise_level=0.4))
    result = train(config, tmp_path / "dae", data=digits, quiet=True)
    d = result.scores["test"]["denoising"]
    # the PSNR table: the rebuilt images are measurably closer to the clean ones than the
    # noisy inputs are (Gaussian noise of std 0.4, clipped: about 9-10 dB on digits)
    assert d["psnr_denoised"] > d["psnr_noisy"] + 3.0, d
    pytest.importorskip("matplotlib")
    assert (tmp_path / "dae" / "reconstructions.png").read_bytes()[:8] == PNG


def test_sequence_autoencoder_on_rows_and_fewlabels(digits, tmp_path):
    config = make_config(None, tiny(model="seq", hidden_size=16, epochs=3, clip=1.0))
    result = train(config, tmp_path / "seq", data=digits, quiet=True)
    assert result.parameters == 2 * 4 * 16 * (8 + 16 + 2) + (16 * 8 + 8)  # two LSTMs + Linear
    assert result.scores["test"]["bce"] < np.log(2)  # better than a flat grey guess
    fl = FewLabelsConfig(fractions="0.1,1", epochs=3, min_steps=30, lr=1e-2, threads=1)
    got = few_labels(tmp_path / "seq", fl, quiet=True)
    inputs = [r["inputs"] for r in got.rows]
    assert inputs == [
        "raw pixels",
        "frozen codes",
        "codes, encoder fine-tuned",
        "raw rows, from scratch",
        "started from the encoder",
    ]
    assert got.labelled == [129, 1294]
    assert all(0.0 <= a <= 1.0 for r in got.rows for a in r["test_accuracy"])
    # 100% of the labels beat chance by far with every classifier
    assert all(r["test_accuracy"][-1] > 0.3 for r in got.rows), got.table
    saved = json.loads((tmp_path / "seq" / "fewlabels.json").read_text())
    assert saved["rows"][0]["test_accuracy"] == got.rows[0]["test_accuracy"]
    assert (tmp_path / "seq" / "fewlabels.txt").read_text().strip() == got.table


def test_series_anomalies_are_flagged(tmp_path):
    config = make_config("synthetic-seq", {"tensorboard": False, "epochs": 8})
    result = train(config, tmp_path / "syn", quiet=True)
    a = result.scores["anomalies"]
    assert a["injected_found"] == 3 and a["other_flags"] <= 1, a
    # the threshold is the training part's quantile: at most 1% of its windows lie above it
    model, _, _ = load_autoencoder(tmp_path / "syn")
    data = prepare(config, torch.device("cpu"))
    from unroll.recipes.autoencode.score import window_scores

    train_err, _, _ = window_scores(model, data, data.starts("train"), 1000)
    assert (train_err > a["threshold"]).float().mean() <= 0.01
    # anomalies.csv lists exactly the flagged windows of window_errors.csv
    with open(tmp_path / "syn" / "window_errors.csv") as f:
        windows = list(csv.DictReader(f))
    flagged = [
        [int(w["start"]), int(w["end"])] for w in windows if float(w["mse"]) > a["threshold"]
    ]
    assert flagged == a["flagged_windows"]
    with open(tmp_path / "syn" / "anomalies.csv") as f:
        assert [[int(w["start"]), int(w["end"])] for w in csv.DictReader(f)] == flagged
    with pytest.raises(UserError, match="needs a run on labelled images"):
        few_labels(tmp_path / "syn", quiet=True)


def test_presets_are_valid_configs():
    for name in PRESETS:
        make_config(name)
    assert make_config(None, {"data": "co2"}).model == "seq"  # the series' own preset
    default = make_config(None)  # the embedded default is the digits-dense preset
    assert (default.model, default.data, default.threads) == ("dense", "digits", 1)


# -- command line -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "vae"], "model='vae'"),
        (["hidden_sizes=12,x"], "hidden_sizes='12,x': expected comma-separated layer sizes"),
        (["noise=masking", "noise_level=1.5"], "noise_level=1.5: expected a fraction in (0, 1)"),
        (["--data", "co2", "model=dense"], "model=dense: a time series (co2)"),
        (["--data", "synthetic", "window=400"], "synthetic: the validation part has 96 rows"),
        (["--data", "/no/such/dir"], "/no/such/dir: no such directory"),
        (["--data", "missing.csv", "model=seq"], "missing.csv: no such file"),
        (["--preset", "imagenet"], "unknown preset 'imagenet'"),
        (["epochs=0"], "epochs=0: expected an integer >= 1"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_and_no_run_dir(args, message, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["autoencode", "train", "--out", str(out), "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("unroll: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not out.exists()


def test_cli_eval_encode_and_fewlabels_errors(tmp_path, capsys):
    for argv, message in [
        (["eval", str(tmp_path / "none")], "no such checkpoint file or run directory"),
        (["encode", str(tmp_path)], "no checkpoints/best.pt"),
        (["fewlabels", str(tmp_path), "fractions=0,2"], "fractions='0,2': expected"),
        (["fewlabels", str(tmp_path), "epoch=3"], "unknown config key 'epoch'"),
    ]:
        assert main(["autoencode", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("unroll: error: ") and err.count("\n") == 1 and message in err, err


def test_cli_train_eval_encode(digits, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["autoencode", "--out", str(out), "--quiet", "epochs=2", "tensorboard=false"]) == 0
    printed = capsys.readouterr().out
    trained = json.loads((out / "results.json").read_text())["scores"]["test"]
    assert f"{trained['bce']:.4f}" in printed and "run directory" in printed
    assert main(["autoencode", "eval", str(out)]) == 0
    assert f"test   {trained['bce']:>9.4f}" in capsys.readouterr().out
    assert main(["autoencode", "encode", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out and (out / "codes.npz").is_file()


# -- the targets: minutes to hours on 2 CPU cores (pytest -m slow) ---------------------


@pytest.mark.slow
def test_embedded_default_trains_and_writes_its_pngs_in_under_two_minutes(tmp_path):
    pytest.importorskip("matplotlib")
    start = time.perf_counter()
    assert main(["autoencode", "train", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    seconds = time.perf_counter() - start
    for name in ("reconstructions.png", "codes.png", "worst.png"):
        assert (tmp_path / "run" / name).read_bytes()[:8] == PNG
    assert seconds < 120, seconds


FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not FASHION.is_dir(), reason=f"{FASHION} not installed (dataset-fashion-mnist)"
)


@pytest.mark.slow
@needs_fashion
def test_fashion_conv_autoencoder_five_epochs(tmp_path):
    # The Keras example's model on Fashion-MNIST, the first 5 of its 50 epochs (about 20 min
    # on one core of the shared machine): the measured run was at valid BCE 0.2550 here.
    config = make_config("fashion-conv", {"epochs": 5, "threads": 1, "tensorboard": False})
    result = train(config, tmp_path / "conv", quiet=True)
    assert result.parameters == 28_353
    assert result.scores["valid"]["bce"] < 0.258, result.scores


@pytest.mark.slow
@needs_fashion
def test_fashion_denoising_psnr_table(tmp_path):
    config = make_config("fashion-denoise", {"epochs": 2, "threads": 1, "tensorboard": False})
    d = train(config, tmp_path / "dae", quiet=True).scores["test"]["denoising"]
    assert d["psnr_denoised"] > d["psnr_noisy"] + 5.0, d


@pytest.mark.slow
@needs_fashion
def test_fashion_one_percent_of_the_labels_codes_beat_raw_rows(tmp_path):
    # Dai & Le 2015 on Fashion-MNIST rows: the row LSTM started from the sequence
    # autoencoder's encoder beats the same LSTM from scratch with 540 labels (measured:
    # 0.7845 vs 0.7580 with seed 0, see README).
    config = make_config("fashion-rows-seq", {"threads": 1, "tensorboard": False})
    train(config, tmp_path / "seq", quiet=True)
    fl = FewLabelsConfig(fractions="0.01", threads=1)
    rows = {r["inputs"]: r["test_accuracy"][0] for r in few_labels(tmp_path / "seq", fl).rows}
    assert rows["started from the encoder"] > rows["raw rows, from scratch"] + 0.01, rows


def test_a_damaged_checkpoint_is_one_line_exit_2(dense_run, capsys, tmp_path):
    """Checkpoints are checked by the engine's `load_weights` (names, shapes, finite values)
    when read, and by `check_resumable` before a resume touches the run directory."""
    out, _ = dense_run
    ckpt = load_checkpoint(out / "checkpoints" / "best.pt")
    name = next(iter(ckpt["model"]))
    ckpt["model"][name] = ckpt["model"][name].clone().fill_(float("inf"))
    torch.save(ckpt, tmp_path / "inf.pt")
    assert main(["autoencode", "eval", str(tmp_path / "inf.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"weights: {name} holds inf or nan values" in err and "\n" not in err
    run = tmp_path / "run"
    shutil.copytree(out, run)
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    last["model"][name] = last["model"][name][:1]
    torch.save(last, run / "checkpoints" / "last.pt")
    assert main(["autoencode", "train", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"weights do not fit its config ({name} is" in err and "\n" not in err
