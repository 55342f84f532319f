"""What would break or mislead on the first GPU run, checked on the CPU (issue 24): each test
stands a CUDA device in with a stand-in (a patched ``is_cuda``, a mocked ``torch.cuda``) where
the code path needs one, and fails on the code before the fix."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.backends.cudnn import rnn as cudnn_rnn

import unroll


@contextlib.contextmanager
def cuda_stand_in(monkeypatch, calls: list):
    """Tensors that say they are on CUDA, and a cuDNN flatten that records its arguments."""
    with monkeypatch.context() as m:
        m.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
        m.setattr(torch.backends.cudnn, "is_acceptable", lambda t: True)
        m.setattr(torch, "_use_cudnn_rnn_flatten_weight", lambda: True)
        m.setattr(torch.cuda, "device_of", lambda t: contextlib.nullcontext())
        m.setattr(cudnn_rnn, "get_cudnn_mode", lambda mode: mode)  # (torch._cudnn: CUDA builds)
        m.setattr(torch, "_cudnn_rnn_flatten_weight", lambda flat, *a: calls.append((flat, a)))
        yield


@pytest.mark.parametrize(
    "make, mode",
    [
        (lambda: unroll.LSTM(4, 6, num_layers=2), "LSTM"),
        (lambda: unroll.LSTM(4, 6, proj_size=3, bidirectional=True), "LSTM"),
        (lambda: unroll.GRU(4, 6), "GRU"),
        (lambda: unroll.RNN(4, 6, nonlinearity="relu"), "RNN_RELU"),
    ],
)
def test_a_layer_built_on_cuda_flattens_its_weights(make, mode, monkeypatch):
    """`LSTM(..., device="cuda")` must lay its weights out for cuDNN at once, as torch.nn.LSTM
    does, not only after ``.to()``: else cuDNN compacts them on every call and warns (an error
    under pytest's ``error::UserWarning:unroll``)."""
    calls: list = []
    with cuda_stand_in(monkeypatch, calls):
        layer = make()
    assert len(calls) == 1, "built on (stand-in) CUDA, the layer did not flatten its weights"
    flat, args = calls[0]
    assert [w is p for w, p in zip(flat, layer._flat_weights)] == [True] * len(flat)
    assert args[1:4] == (layer.input_size, mode, layer.hidden_size)
    calls.clear()
    with cuda_stand_in(monkeypatch, calls):
        layer.to(torch.float32)  # .to() flattened before the fix too: still once
    assert len(calls) == 1
