"""Elman RNN cell: the reference step.

    h_t = φ(W_ih·x_t + b_ih + W_hh·h_{t-1} + b_hh),   φ = tanh or relu

Weights use PyTorch's names and shapes (`weight_ih: (H, C)`, `weight_hh: (H, H)`), so a cell's
parameters load into `torch.nn.RNNCell` and back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unroll.nn.cells.base import CellBase, check_cell_input, check_cell_state, hx_or_state

NONLINEARITIES = ("tanh", "relu")


def rnn_step(
    x_proj: Tensor, h: Tensor, weight_hh: Tensor, bias_hh: Tensor | None, nonlinearity: str
) -> Tensor:
    """One Elman step from the projected input ``x_proj = W_ih·x_t + b_ih`` (B, H)."""
    a = x_proj + F.linear(h, weight_hh, bias_hh)
    return torch.tanh(a) if nonlinearity == "tanh" else torch.relu(a)


class RNNCell(CellBase):
    """Elman RNN cell, one time step: ``h = cell(input, hx=None)``.

    h_t = φ(W_ih·x_t + b_ih + W_hh·h_{t-1} + b_hh) with φ = tanh (default) or relu.

    Args:
        input_size: C, features of x.
        hidden_size: H.
        nonlinearity: "tanh" or "relu".
        bias: if False, no ``bias_ih``/``bias_hh``.

    Shapes: input (B, C) or unbatched (C,); hx (B, H) or (H,), None means zeros; returns h
    (B, H). ``state=`` is accepted as another name for ``hx``.
    Parameters are initialised uniform(-1/√H, 1/√H) as in PyTorch.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        nonlinearity: str = "tanh",
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"RNNCell: expected nonlinearity 'tanh' or 'relu', got {nonlinearity!r}"
            )
        super().__init__(input_size, hidden_size, bias, gates=1, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity
        self.reset_parameters()

    def _torch_module(self) -> nn.RNNCell:
        return nn.RNNCell(
            self.input_size, self.hidden_size, self.bias, self.nonlinearity, device="meta"
        )

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        return s + ("" if self.bias else ", bias=False")

    def forward(
        self, input: Tensor, hx: Tensor | None = None, state: Tensor | None = None
    ) -> Tensor:
        x, state = input, hx_or_state("RNNCell", hx, state)
        check_cell_input("RNNCell", x, self.input_size, self.weight_ih)
        unbatched = x.dim() == 1
        x = x.unsqueeze(0) if unbatched else x
        h = x.new_zeros(x.shape[0], self.hidden_size) if state is None else state
        if state is not None:
            shape = (self.hidden_size,) if unbatched else (x.shape[0], self.hidden_size)
            check_cell_state("RNNCell", "hx", state, shape, self.weight_ih)
            h = h.unsqueeze(0) if unbatched else h
        h = rnn_step(
            F.linear(x, self.weight_ih, self.bias_ih),
            h,
            self.weight_hh,
            self.bias_hh,
            self.nonlinearity,
        )
        return h.squeeze(0) if unbatched else h
