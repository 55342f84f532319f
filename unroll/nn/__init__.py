"""Recurrent building blocks: reference cells, layers, and the kernels beside them.

No files, no argparse: `cells` hold the equations (one time step each), `layers` run a cell over
time (stacked, bidirectional, variable lengths; drop-in for torch.nn's), `kernels` hold the
fast paths that tests keep equal to the cells.
"""

import torch

from unroll.nn.cells import GRUCell, LSTMCell, RNNCell
from unroll.nn.layers import GRU, LSTM, RNN
from unroll.nn.min_layers import MinGRU, MinLSTM

# torch.load's default (weights_only=True) unpickles only allowlisted classes: a saved model
# (torch.save(model), as pytorch/examples does) holding unroll modules loads without the user
# allowlisting ours; their own classes (and torch.nn's, which torch does not allowlist) are
# theirs to add.
torch.serialization.add_safe_globals([GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, MinGRU, MinLSTM])

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "MinGRU", "MinLSTM", "RNNCell"]
