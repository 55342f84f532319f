"""Fast paths beside the reference cells: same math, laid out for speed."""

from unroll.nn.kernels.lstm_fused import LSTMFunction, lstm_sequence

__all__ = ["LSTMFunction", "lstm_sequence"]
