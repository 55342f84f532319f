"""The compiled LSTM loops flush denormals while they run (a long sequence's gradient decays
into them, and each takes a ~100-cycle assist: benchmarks/denormals.py) and leave the
thread's floating-point state as they found it."""

from __future__ import annotations

import torch

import unroll
from unroll.nn.kernels import lstm_cpu


def test_the_compiled_loops_leave_denormals_as_they_were():
    torch.manual_seed(0)
    layer = unroll.LSTM(1, 4, 2, peephole=True)
    x = torch.randn(60, 3, 1, requires_grad=True)
    y, _ = layer(x)
    y.sum().backward()
    assert layer.implementation == "fused" and lstm_cpu.build_in_use() is not None
    tiny = torch.tensor([1e-39], dtype=torch.float32)  # a float32 denormal
    assert float(tiny[0]) != 0.0 and float((tiny * 1.0)[0]) != 0.0  # no FTZ/DAZ left behind
    assert float((tiny * 0.5)[0]) != 0.0


def test_flushing_changes_nothing_above_the_denormal_range():
    torch.manual_seed(1)
    fused = unroll.LSTM(1, 8, 2, peephole=True, impl="fused")
    reference = unroll.LSTM(1, 8, 2, peephole=True, impl="reference")
    reference.load_state_dict(fused.state_dict())
    x = torch.randn(300, 2, 1) * 0.3
    grads = []
    for layer in (fused, reference):
        xi = x.clone().requires_grad_()
        y, _ = layer(xi)
        y[-1].sum().backward()
        grads.append(xi.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)
