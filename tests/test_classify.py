"""The classifiers' shapes and readouts, and the classify recipe end to end on tiny runs."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch

from unroll.cli import main
from unroll.engine import load_checkpoint
from unroll.errors import UserError
from unroll.models.classifier import (
    RNNClassifier,
    SmallCNN,
    SoftmaxRegression,
    build_classifier,
)
from unroll.recipes.classify import (
    KIND,
    PRESETS,
    confusion_matrix,
    evaluate,
    format_confusion,
    make_config,
    train,
    train_baselines,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # (tests/conftest.py)


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn", reason="scikit-learn (the digits extra) not installed")
    from unroll.data.images import load_images

    return load_images("digits")


# -- models -----------------------------------------------------------------------------------


def test_baseline_shapes_and_sizes():
    x = torch.rand(5, 28, 28)
    soft = SoftmaxRegression(28, 28, 10)
    assert soft(x).shape == (5, 10)
    assert sum(p.numel() for p in soft.parameters()) == 784 * 10 + 10
    cnn = SmallCNN(28, 28, 10)
    assert cnn(x).shape == (5, 10)
    # conv1 5*5*1*32+32, conv2 5*5*32*64+64, fc (64*7*7)*1024+1024, out 1024*10+10
    expected = (25 * 32 + 32) + (25 * 32 * 64 + 64) + (3136 * 1024 + 1024) + (1024 * 10 + 10)
    assert sum(p.numel() for p in cnn.parameters()) == expected
    assert SmallCNN(8, 8, 3, fc=16)(torch.rand(2, 8, 8)).shape == (2, 3)
    with pytest.raises(ValueError, match="at least 4x4"):
        SmallCNN(3, 8, 10)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("sequence", ["rows", "pixels", "permuted"])
def test_rnn_classifier_shapes(cell, sequence):
    model = RNNClassifier(4, 6, 7, cell=cell, sequence=sequence, hidden_size=5, num_layers=2)
    assert model(torch.rand(3, 4, 6)).shape == (3, 7)
    assert model.rnn.input_size == (6 if sequence == "rows" else 1)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_readouts_pick_the_right_states(cell):
    torch.manual_seed(0)
    images = torch.rand(3, 5, 4)
    uni = RNNClassifier(5, 4, 6, cell=cell, hidden_size=7, num_layers=2)
    y, _ = uni.rnn(images)  # rows: the images are the sequences
    torch.testing.assert_close(uni(images), uni.head(y[:, -1]))
    bi = RNNClassifier(5, 4, 6, cell=cell, hidden_size=7, bidirectional=True)
    y, _ = bi.rnn(images)  # [B, T, 2H]: forward ends at t = T-1, backward at t = 0
    torch.testing.assert_close(bi(images), bi.head(torch.cat([y[:, -1, :7], y[:, 0, 7:]], 1)))
    mean = RNNClassifier(5, 4, 6, cell=cell, hidden_size=7, readout="mean", bidirectional=True)
    y, _ = mean.rnn(images)
    torch.testing.assert_close(mean(images), mean.head(y.mean(dim=1)))


def test_irnn_initialisation():
    torch.manual_seed(0)
    model = build_classifier("irnn", 28, 28, 10, sequence="pixels", hidden_size=100, num_layers=2)
    assert model.rnn.nonlinearity == "relu"
    for name, p in model.rnn.named_parameters():
        if name.startswith("weight_hh"):
            assert torch.equal(p, torch.eye(100)), name
        elif name.startswith("bias"):
            assert torch.count_nonzero(p) == 0, name
        else:
            assert 0.0005 < p.std().item() < 0.002, name  # N(0, 0.001^2)
    assert build_classifier("rnn", 8, 8, 10).rnn.nonlinearity == "tanh"


def test_permutation_travels_with_the_weights():
    a = build_classifier("lstm", 4, 4, 3, sequence="permuted", permutation_seed=1, hidden_size=4)
    b = build_classifier("lstm", 4, 4, 3, sequence="permuted", permutation_seed=2, hidden_size=4)
    assert not torch.equal(a.permutation, b.permutation)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.permutation, b.permutation)
    assert "permutation" not in build_classifier("lstm", 4, 4, 3, hidden_size=4).state_dict()


def test_confusion_matrix_hand_computed():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    predicted = torch.tensor([0, 1, 1, 2, 0, 2])
    assert confusion_matrix(labels, predicted, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    text = format_confusion([[1, 1, 0], [0, 1, 0], [1, 0, 2]], ("a", "b", "c"))
    assert text.splitlines()[3].split() == ["2", "1", "0", "2"]
    assert "classes: 0=a, 1=b, 2=c" in text


# -- recipe -----------------------------------------------------------------------------------

# Tiny but real: each trains in a few seconds and must beat chance (0.1) by far.
SMOKE = {
    "softmax": {"lr": 0.05, "epochs": 3},
    "cnn": {"lr": 5e-3, "epochs": 3, "cnn_fc": 32},
    "lstm": {"lr": 1e-2, "epochs": 4, "hidden_size": 32, "batch_size": 32},
    "gru": {"lr": 1e-2, "epochs": 4, "hidden_size": 32, "batch_size": 32},
    "rnn": {"lr": 5e-3, "epochs": 4, "hidden_size": 32, "batch_size": 32},
    "irnn": {"lr": 1e-2, "epochs": 4, "hidden_size": 32, "batch_size": 32},
}


def tiny(model: str, **extra) -> dict:
    return {"model": model, "tensorboard": False, **SMOKE[model], **extra}


@pytest.mark.parametrize("model", list(SMOKE))
def test_smoke_run_beats_chance_on_digits(model, digits, tmp_path):
    config = make_config(None, tiny(model))
    result = train(config, tmp_path / "run", data=digits, quiet=True)
    floor = 0.5 if model == "irnn" else 0.7
    assert result.test_accuracy > floor, result.test_accuracy
    assert sum(map(sum, result.confusion_matrix)) == len(digits.test_labels)


def test_run_directory_contents(digits, tmp_path, capsys):
    out = tmp_path / "run"
    config = make_config(None, tiny("gru", epochs=2))
    result = train(config, out, data=digits)
    printed = capsys.readouterr().err
    assert "epoch 2/2: lr" in printed and "valid_accuracy" in printed
    for name in ("config.json", "meta.json", "command.txt", "metrics.jsonl", "results.json"):
        assert (out / name).is_file(), name
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2] and all("valid_accuracy" in x for x in lines)
    best = load_checkpoint(out / "checkpoints" / "best.pt", kind=KIND)
    assert best["config"]["model"] == "gru" and best["image_shape"] == [8, 8]
    results = json.loads((out / "results.json").read_text())
    assert results["test_accuracy"] == result.test_accuracy
    assert results["test_examples"] == len(digits.test_labels) == 359
    matrix = results["confusion_matrix"]
    assert sum(matrix[i][i] for i in range(10)) == results["test_correct"]
    assert results["best_valid_accuracy"] == max(x["valid_accuracy"] for x in lines)
    assert (out / "confusion.txt").read_text() == format_confusion(matrix, digits.classes)
    pytest.importorskip("matplotlib")
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # classify-eval re-scores the best checkpoint to the same figure
    again = evaluate(out)
    assert again.test_accuracy == result.test_accuracy
    assert again.confusion_matrix == matrix


def test_resume_matches_an_uninterrupted_run(digits, tmp_path):
    extra = {"hidden_size": 8, "batch_size": 64, "lr": 1e-2, "lr_decay": 0.5}
    full = train(
        make_config(None, tiny("lstm", epochs=2, **extra)),
        tmp_path / "full",
        data=digits,
        quiet=True,
    )
    train(
        make_config(None, tiny("lstm", epochs=1, **extra)),
        tmp_path / "part",
        data=digits,
        quiet=True,
    )
    resumed = train({"epochs": 2}, resume=tmp_path / "part", data=digits, quiet=True)
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.pt")
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    assert resumed.test_accuracy == full.test_accuracy
    lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]
    with pytest.raises(UserError, match="hidden_size cannot change when resuming"):
        train({"hidden_size": 9}, resume=tmp_path / "part", data=digits, quiet=True)


def test_baselines_in_one_command(digits, tmp_path, capsys):
    config = make_config(
        None,
        {"model": "gru", "epochs": 1, "max_train": 300, "hidden_size": 8, "cnn_fc": 16,
         "tensorboard": False},
    )  # fmt: skip
    results = train_baselines(config, tmp_path / "cmp", data=digits, quiet=True)
    assert [r.model for r in results] == ["softmax", "cnn", "gru"]
    table = (tmp_path / "cmp" / "comparison.txt").read_text().splitlines()
    assert [row.split()[0] for row in table[2:]] == ["softmax", "cnn", "gru/rows"]
    assert table[2].split()[1] == f"{results[0].test_accuracy:.4f}"
    for name in ("softmax", "cnn", "gru"):
        assert (tmp_path / "cmp" / name / "results.json").is_file()


def test_presets_are_valid_configs():
    for name in PRESETS:
        config = make_config(name)
        assert config.model in ("lstm", "cnn", "softmax")
    assert make_config("fashion-rows-lstm", ["epochs=3"]).epochs == 3


# -- command line -----------------------------------------------------------------------------


def _bad_idx_dir(root: Path) -> Path:
    root.mkdir()
    for prefix, n in (("train", 3), ("t10k", 2)):
        head = struct.pack(">HBB3I", 0, 8, 3, n, 4, 4)
        (root / f"{prefix}-images-idx3-ubyte").write_bytes(head + bytes(16 * n))
        (root / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">HBBI", 0, 8, 1, n) + bytes(n)
        )
    (root / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x07\x03garbage")
    return root


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "transformer"], "model='transformer'"),
        (["--sequence", "columns"], "sequence='columns'"),
        (["hiden_size=3"], "unknown config key 'hiden_size'"),
        (["epochs=ten"], "epochs='ten': expected an integer"),
        (["epochs=0"], "epochs=0: expected an integer >= 1"),
        (["--preset", "imagenet"], "unknown preset 'imagenet'"),
        (["--data", "/no/such/dir"], "/no/such/dir: no such directory"),
        (["--data", "BADIDX"], "t10k-images-idx3-ubyte: not an IDX file (magic number"),
        (["device=tpu"], "--device 'tpu': expected auto, cpu, cuda"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_and_no_run_dir(args, message, tmp_path, capsys):
    out = tmp_path / "run"
    args = [str(_bad_idx_dir(tmp_path / "bad")) if a == "BADIDX" else a for a in args]
    code = main(["classify", "--out", str(out), "--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("unroll: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not out.exists()


def test_cli_refuses_a_used_out_and_a_non_run(tmp_path, capsys):
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    assert main(["classify", "--out", str(used), "epochs=1"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in used.iterdir()) == ["notes.txt"]
    assert main(["classify", "--resume", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["classify-eval", str(tmp_path / "none")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


def test_cli_train_then_eval(digits, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--model", "softmax", "--out", str(out), "--no-progress", "--epochs", "1"]
    assert main(["classify", *args, "--batch-size=16", "lr=0.05", "tensorboard=false"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert (saved["model"], saved["epochs"], saved["batch_size"], saved["lr"]) == (
        "softmax",
        1,
        16,
        0.05,
    )
    trained = json.loads((out / "results.json").read_text())["test_accuracy"]
    capsys.readouterr()
    assert main(["classify-eval", str(out)]) == 0
    assert f"test accuracy {trained:.4f}" in capsys.readouterr().out


# -- the published targets (minutes each on 2 CPU cores): pytest -m slow ----------------------

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason=f"{FASHION} not installed (dataset-fashion-mnist)")
@pytest.mark.parametrize(
    "preset, low, high",
    [
        ("fashion-softmax", 0.83, 0.86),
        ("fashion-cnn", 0.915, 1.0),
        ("fashion-rows-lstm", 0.895, 1.0),
    ],
)
def test_fashion_mnist_targets(preset, low, high, tmp_path, one_thread):
    torch.set_num_threads(2)  # the real thing: use the machine
    result = train(make_config(preset, ["tensorboard=false"]), tmp_path / "run", quiet=True)
    assert low <= result.test_accuracy <= high, result.test_accuracy
