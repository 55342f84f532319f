"""``cell=mingru|minlstm`` (``model=`` for classify) in every recipe that takes a cell choice:
the model holds the min-RNN layer, a tiny run learns (bounded losses/accuracies), and the
language model carries the min-RNN's state across BPTT windows exactly."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import unroll
from unroll.cli import main
from unroll.models.lm import LanguageModel

MIN_CELLS = ("mingru", "minlstm")
LAYER = {"mingru": unroll.MinGRU, "minlstm": unroll.MinLSTM}


pytestmark = pytest.mark.usefixtures("one_thread")  # (tests/conftest.py)


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn", reason="scikit-learn (the digits extra) not installed")
    from unroll.data.images import load_images

    return load_images("digits")


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_lm_state_carried_across_windows_is_one_run(cell):
    torch.manual_seed(0)
    model = LanguageModel(30, 8, 2, cell=cell).eval()
    assert isinstance(model.rnn, LAYER[cell])
    x = torch.randint(0, 30, (3, 12))
    whole, state = model(x)
    a, s1 = model(x[:, :5])
    b, s2 = model(x[:, 5:], s1)
    torch.testing.assert_close(torch.cat([a, b], 1), whole)
    assert len(state) == 1 and state[0].shape == (2, 3, 8)
    torch.testing.assert_close(s2[0], state[0])


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_lm_recipe_char_level_learns(cell, tmp_path):
    from test_lm_recipe import tiny_config, write_corpus

    corpus = write_corpus(tmp_path / "corpus")
    config = dataclasses.replace(
        tiny_config(), cell=cell, level="char", hidden_size=24, lr=1.0, init_scale=0.1
    )
    result = unroll.lm.train(config, data=str(corpus), out=tmp_path / "run", quiet=True)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["cell"] == cell
    # far below uniform over the corpus's 25 characters (LSTM 4.5, minGRU 6.7, minLSTM 7.7)
    assert result["test_ppl"] < 10, result["test_ppl"]


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_classify_rows_beats_chance(cell, digits, tmp_path):
    from unroll.recipes.classify import make_config, train

    # hidden 64: a min-RNN of H units has fewer weights than a GRU of H (no W_hh)
    overrides = {"model": cell, "lr": 1e-2, "epochs": 6, "hidden_size": 64, "batch_size": 32}
    result = train(make_config(None, {**overrides, "tensorboard": False}), tmp_path / "r",
                   data=digits, quiet=True)  # fmt: skip
    assert result.test_accuracy > 0.7, result.test_accuracy


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_forecast_beats_naive(cell, tmp_path):
    out = tmp_path / "run"
    argv = [
        "forecast", "--data", "synthetic", "--lookback", "24", "--horizon", "12",
        "--no-progress", "epochs=4", "hidden_size=16", "batch_size=128", "step=6", "lr=0.01",
        f"cell={cell}", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    scores = json.loads((out / "results.json").read_text())["scores"]
    assert scores[f"{cell}-direct"]["mase"] < scores["naive"]["mase"], scores


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_sequence_autoencoder(cell, tmp_path):
    pytest.importorskip("sklearn", reason="scikit-learn (the digits extra) not installed")
    from unroll.recipes.autoencode import make_config, prepare, train

    digits = prepare(make_config(None, {"tensorboard": False}), torch.device("cpu"), progress=False)
    config = make_config(
        None,
        {"tensorboard": False, "model": "seq", "cell": cell, "hidden_size": 16, "epochs": 3},
    )
    result = train(config, tmp_path / "seq", data=digits, quiet=True)
    assert result.scores["test"]["bce"] < np.log(2)  # better than a flat grey guess


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_seq2seq_encoder_and_decoder(cell, tmp_path):
    from test_seq2seq_recipe import TINY, _write_copy

    from unroll import seq2seq

    data = _write_copy(tmp_path / "data")
    config = seq2seq.make_config(overrides={**TINY, "data": str(data), "cell": cell, "epochs": 2})
    seq2seq.train(config, out=tmp_path / "run", quiet=True)
    model = seq2seq.load_translator(tmp_path / "run").model
    assert isinstance(model.encoder.rnn, LAYER[cell]) and model.encoder.rnn.bidirectional
    assert isinstance(model.decoder.rnn, LAYER[cell])
