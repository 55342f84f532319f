"""unroll: recurrent sequence models (RNN, LSTM, GRU) on PyTorch.

Reference cells whose code reads like their equations, fast paths held equal to them, and
recipes that reproduce published results.

Public API:
    cells      RNNCell, LSTMCell, GRUCell                      (unroll.nn.cells)
    layers     RNN, LSTM, GRU — drop-in for torch.nn's          (unroll.nn.layers)
    models     LanguageModel, RNNClassifier, SoftmaxRegression, SmallCNN, Forecaster
    recipes    lm, classify, forecast: the functions the CLI calls, e.g. ``lm.train``,
               ``lm.evaluate``, ``lm.generate``, ``classify.train``, ``forecast.train``,
               ``forecast.predict``
    errors     UserError: bad user input, one line; the CLI prints it and exits with 2
"""

__version__ = "0.1.0"

from unroll.nn.cells import GRUCell, LSTMCell, RNNCell
from unroll.errors import UserError
from unroll.nn.layers import GRU, LSTM, RNN
from unroll.models.classifier import RNNClassifier, SmallCNN, SoftmaxRegression
from unroll.models.forecaster import Forecaster
from unroll.models.lm import LanguageModel
from unroll.recipes import classify, forecast, lm

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Forecaster",
    "GRUCell",
    "LSTMCell",
    "LanguageModel",
    "RNNCell",
    "RNNClassifier",
    "SmallCNN",
    "SoftmaxRegression",
    "UserError",
    "__version__",
    "classify",
    "forecast",
    "lm",
]
