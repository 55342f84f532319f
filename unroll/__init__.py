"""unroll: recurrent sequence models (RNN, LSTM, GRU) on PyTorch.

Reference cells whose code reads like their equations, fast paths held equal to them, and
recipes that reproduce published results.
"""

__version__ = "0.1.0"

from unroll.cells import GRUCell, LSTMCell, RNNCell
from unroll.layers import GRU, LSTM, RNN

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNCell", "__version__"]
