"""unroll: recurrent sequence models (RNN, LSTM, GRU) on PyTorch.

Reference cells whose code reads like their equations, fast paths held equal to them, and
recipes that reproduce published results.
"""

__version__ = "0.1.0"
