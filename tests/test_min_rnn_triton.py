"""The Triton minGRU/minLSTM kernels (`unroll/nn/kernels/scan_triton.py`).

Held equal to the reference step (`unroll.nn.cells.min_rnn`) through the layer: outputs and all
gradients, float64 within 1e-10 and float32 within 1e-5, with variable lengths and a carried
state. Without a GPU the kernels run in Triton's interpreter on CPU tensors (TRITON_INTERPRET=1
is set before Triton is imported, as tests/test_lstm_triton.py does); shapes stay tiny.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

import unroll  # noqa: E402
from unroll.nn import min_layers  # noqa: E402
from unroll.nn.kernels import scan_triton  # noqa: E402

pytestmark = pytest.mark.triton
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(autouse=True)
def triton_loop(monkeypatch):
    """The layers' fused path runs the Triton kernels, in several programs even at B·H = 15."""
    if DEVICE == "cpu":
        from triton.runtime.interpreter import InterpretedFunction

        assert isinstance(scan_triton._min_forward, InterpretedFunction), (
            "scan_triton was imported before TRITON_INTERPRET=1 was set"
        )
    monkeypatch.setattr(scan_triton, "BLOCK", 8)
    monkeypatch.setattr(min_layers, "fused_loop", lambda device, dtype: scan_triton.TritonMinLoop)


@pytest.mark.parametrize("cls", [unroll.MinGRU, unroll.MinLSTM])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_triton_equal_to_reference(cls, dtype):
    torch.manual_seed(0)
    ref = cls(3, 5, bidirectional=True, dtype=torch.float64, impl="reference").to(DEVICE)
    fast = cls(3, 5, bidirectional=True, dtype=dtype, impl="fused").to(DEVICE)
    fast.load_state_dict({k: v.to(dtype) for k, v in ref.state_dict().items()})
    assert fast.implementation == "fused"
    x = torch.randn(6, 3, 3, dtype=torch.float64, device=DEVICE)
    h0 = torch.rand(2, 3, 5, dtype=torch.float64, device=DEVICE)
    lengths = [6, 2, 4]
    wy = torch.randn(6, 3, 10, dtype=torch.float64, device=DEVICE)
    wh = torch.randn(2, 3, 5, dtype=torch.float64, device=DEVICE)
    outs = []
    for layer, dt in ((ref, torch.float64), (fast, dtype)):
        xi = x.to(dt).requires_grad_()
        hi = h0.to(dt).requires_grad_()
        y, hn = layer(xi, hi, lengths=lengths)
        loss = (y * wy.to(dt)).sum() + (hn * wh.to(dt)).sum()
        grads = torch.autograd.grad(loss, [xi, hi, *layer.parameters()])
        outs.append([y, hn, *grads])
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for got, want in zip(outs[1], outs[0]):
        torch.testing.assert_close(got.double(), want, atol=tol, rtol=tol)
