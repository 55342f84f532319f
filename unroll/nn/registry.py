"""The one map from a recipe's ``cell`` name to a layer class.

Every model that takes a cell choice (language model, classifier, forecaster, seq2seq,
sequence autoencoder) looks its layer up here, so a new layer is one line in this table (and
the name in that recipe's config ``Literal``)."""

from __future__ import annotations

from torch import nn

from unroll.nn.layers import GRU, LSTM, RNN
from unroll.nn.min_layers import MinGRU, MinLSTM

RECURRENT_LAYERS: dict[str, type[nn.Module]] = {
    "lstm": LSTM,
    "gru": GRU,
    "rnn": RNN,
    "mingru": MinGRU,  # Feng et al. 2024: gates from x_t only, trains as a parallel scan
    "minlstm": MinLSTM,
}


def layer_class(cell: str) -> type[nn.Module]:
    """The layer class of ``cell`` (lstm, gru, rnn, mingru, minlstm); ValueError otherwise."""
    try:
        return RECURRENT_LAYERS[cell]
    except KeyError:
        raise ValueError(f"cell {cell!r}: expected one of {', '.join(RECURRENT_LAYERS)}") from None
