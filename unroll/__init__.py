"""unroll: recurrent sequence models (RNN, LSTM, GRU) on PyTorch.

Reference cells whose code reads like their equations, fast paths held equal to them, and
recipes that reproduce published results.

Public API:
    cells      RNNCell, LSTMCell, GRUCell                      (unroll.nn.cells)
    layers     RNN, LSTM, GRU — drop-in for torch.nn's          (unroll.nn.layers)
               MinGRU, MinLSTM — parallel-in-time (Feng et al. 2024) (unroll.nn.min_layers)
    models     LanguageModel, RNNClassifier, SoftmaxRegression, SmallCNN, Forecaster
    recipes    lm, classify, forecast, sincos, seq2seq, autoencode, word2vec: train/evaluate/
               predict functions the CLI calls, e.g. ``unroll.lm.train``; loaded on first
               use, so ``import unroll`` stays cheap
    engine     the training loop and runs, for writing a recipe of your own (unroll.engine)
    errors     UserError: bad user input, one line; the CLI prints it and exits with 2

How the code is laid out (imports run one way: nn -> models -> engine -> recipes -> cli):
    nn/ models/ data/ metrics/ engine/ recipes/ cli/  — see README.md.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from unroll.errors import UserError
from unroll.models.classifier import RNNClassifier, SmallCNN, SoftmaxRegression
from unroll.models.forecaster import Forecaster
from unroll.models.lm import LanguageModel
from unroll.nn import GRU, LSTM, RNN, GRUCell, LSTMCell, MinGRU, MinLSTM, RNNCell

# Recipes import argparse-free but heavier code (data loaders, plotting): loaded on first use.
_RECIPES = ("lm", "classify", "forecast", "sincos", "seq2seq", "autoencode", "word2vec")


def __getattr__(name: str) -> Any:
    if name in _RECIPES:
        module = importlib.import_module(f"unroll.recipes.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'unroll' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_RECIPES])


__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Forecaster",
    "GRUCell",
    "LSTMCell",
    "LanguageModel",
    "MinGRU",
    "MinLSTM",
    "RNNCell",
    "RNNClassifier",
    "SmallCNN",
    "SoftmaxRegression",
    "UserError",
    "__version__",
    "autoencode",
    "classify",
    "forecast",
    "lm",
    "seq2seq",
    "sincos",
    "word2vec",
]
