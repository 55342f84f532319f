"""Recurrent building blocks: reference cells, layers, and the kernels beside them.

No files, no argparse: `cells` hold the equations (one time step each), `layers` run a cell over
time (stacked, bidirectional, variable lengths; drop-in for torch.nn's), `kernels` hold the
fast paths that tests keep equal to the cells.
"""

from unroll.nn.cells import GRUCell, LSTMCell, RNNCell
from unroll.nn.layers import GRU, LSTM, RNN

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNCell"]
