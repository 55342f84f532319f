"""Reference recurrent cells: one time step each, written as the equations in their docstrings."""

from unroll.nn.cells.gru import GRUCell, gru_step
from unroll.nn.cells.lstm import LSTMCell, lstm_step
from unroll.nn.cells.rnn import RNNCell, rnn_step

__all__ = ["GRUCell", "LSTMCell", "RNNCell", "gru_step", "lstm_step", "rnn_step"]
