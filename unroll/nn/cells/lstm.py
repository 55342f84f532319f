"""LSTM cell: the reference step, with forget bias, peepholes and coupled gates.

Standard LSTM (Hochreiter & Schmidhuber 1997, with a forget gate: Gers et al. 2000), PyTorch's
equations and gate order i, f, g, o:

    i_t = σ(W_i·[x_t, h_{t-1}] + b_i)
    f_t = σ(W_f·[x_t, h_{t-1}] + b_f + forget_bias)
    g_t = tanh(W_g·[x_t, h_{t-1}] + b_g)
    o_t = σ(W_o·[x_t, h_{t-1}] + b_o)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)

where W_·[x, h] + b means W_ih·x + b_ih + W_hh·h + b_hh restricted to that gate's rows.

Variants:
  forget_bias: a constant added to the forget gate's pre-activation (TensorFlow's
      BasicLSTMCell); it is not a parameter and is not stored in the bias.
  peephole=True (Gers & Schmidhuber 2000): the gates see the cell through diagonal weights,
      i and f see c_{t-1}, o sees c_t:
          i_t = σ(… + w_ci ⊙ c_{t-1}),  f_t = σ(… + w_cf ⊙ c_{t-1}),  o_t = σ(… + w_co ⊙ c_t)
      The diagonal weights are the parameters ``weight_ci``, ``weight_cf``, ``weight_co`` (H,).
  coupled=True (CIFG, Greff et al. 2017): the input gate is tied to the forget gate,
      i_t = 1 − f_t. The input-gate rows of ``weight_ih``/``weight_hh``/biases are kept so the
      parameter layout stays PyTorch's (4H rows) but they are unused: they get zero gradient
      and ``weight_ci`` is not created.
  weight_hr (the layers' proj_size, LSTMP: Sak et al. 2014): the output is projected to P
      units, and the projection is what recurs:
          h_t = W_hr·(o_t ⊙ tanh(c_t)),   W_hr (P, H);   W_hh is then (4H, P)
      `torch.nn.LSTM`'s ``proj_size``, same parameter name and shapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unroll.nn.cells.base import CellBase, check_cell_input, check_cell_state, hx_or_state


def lstm_step(
    x_proj: Tensor,
    h: Tensor,
    c: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor | None,
    weight_ci: Tensor | None = None,
    weight_cf: Tensor | None = None,
    weight_co: Tensor | None = None,
    forget_bias: float = 0.0,
    coupled: bool = False,
    weight_hr: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One LSTM step from the projected input ``x_proj = W_ih·x_t + b_ih`` (B, 4H).

    Returns (h_t, c_t): h (B, H), or (B, P) with the projection ``weight_hr`` (P, H); c (B, H).
    Peephole weights are None for a cell without peepholes, weight_hr None without projection.
    """
    a_i, a_f, a_g, a_o = (x_proj + F.linear(h, weight_hh, bias_hh)).chunk(4, 1)
    if weight_cf is not None:  # peepholes: i and f see c_{t-1}
        a_f = a_f + weight_cf * c
        if not coupled:
            a_i = a_i + weight_ci * c
    f = torch.sigmoid(a_f + forget_bias)
    i = 1 - f if coupled else torch.sigmoid(a_i)
    g = torch.tanh(a_g)
    c = f * c + i * g
    if weight_co is not None:  # peephole: o sees c_t
        a_o = a_o + weight_co * c
    o = torch.sigmoid(a_o)
    h = o * torch.tanh(c)
    if weight_hr is not None:  # projection (LSTMP): what recurs and what is output
        h = F.linear(h, weight_hr)
    return h, c


def variant_repr(forget_bias: float, peephole: bool, coupled: bool) -> str:
    """The LSTM variant options that differ from the defaults, as ``repr`` text (", …")."""
    s = f", forget_bias={forget_bias}" if forget_bias else ""
    s += ", peephole=True" if peephole else ""
    return s + (", coupled=True" if coupled else "")


class LSTMCell(CellBase):
    """LSTM cell, one step: ``h, c = cell(input, hx=None)`` (equations in the module docstring).

    Args:
        input_size: C.  hidden_size: H.
        bias: if False, no ``bias_ih``/``bias_hh``.
        forget_bias: constant added to the forget gate (not stored in the bias).
        peephole: add diagonal peephole weights ``weight_ci``/``weight_cf``/``weight_co`` (H,).
        coupled: CIFG, i_t = 1 − f_t (input-gate rows kept in the weights, unused).

    Shapes: input (B, C) or unbatched (C,); hx a pair (h, c) of (B, H) (or (H,)), None means
    zeros; returns (h_t, c_t). ``state=`` is accepted as another name for ``hx``. Parameters
    (peepholes too) are initialised uniform(-1/√H, 1/√H) as PyTorch does; with the standard
    options the parameters load into `torch.nn.LSTMCell`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        forget_bias: float = 0.0,
        peephole: bool = False,
        coupled: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, gates=4, device=device, dtype=dtype)
        self.forget_bias, self.peephole, self.coupled = float(forget_bias), peephole, coupled
        for name in ("weight_ci", "weight_cf", "weight_co"):
            wanted = peephole and not (coupled and name == "weight_ci")
            p = (
                nn.Parameter(torch.empty(hidden_size, device=device, dtype=dtype))
                if wanted
                else None
            )
            self.register_parameter(name, p)
        self.reset_parameters()

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")
        return s + variant_repr(self.forget_bias, self.peephole, self.coupled)

    def _why_not_torch(self) -> str | None:
        variant = variant_repr(self.forget_bias, self.peephole, self.coupled)
        return f"an LSTM variant: {variant.lstrip(', ')}" if variant else super()._why_not_torch()

    def _torch_module(self) -> nn.LSTMCell:
        return nn.LSTMCell(self.input_size, self.hidden_size, self.bias, device="meta")

    def forward(
        self,
        input: Tensor,
        hx: tuple[Tensor, Tensor] | None = None,
        state: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        x, state = input, hx_or_state("LSTMCell", hx, state)
        check_cell_input("LSTMCell", x, self.input_size, self.weight_ih)
        unbatched = x.dim() == 1
        x = x.unsqueeze(0) if unbatched else x
        if state is None:
            h = c = x.new_zeros(x.shape[0], self.hidden_size)
        else:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise ValueError("LSTMCell: expected state to be a pair (h, c) or None")
            shape = (self.hidden_size,) if unbatched else (x.shape[0], self.hidden_size)
            check_cell_state("LSTMCell", "h", state[0], shape, self.weight_ih)
            check_cell_state("LSTMCell", "c", state[1], shape, self.weight_ih)
            h, c = (s.unsqueeze(0) for s in state) if unbatched else state
        h, c = lstm_step(
            F.linear(x, self.weight_ih, self.bias_ih),
            h,
            c,
            self.weight_hh,
            self.bias_hh,
            self.weight_ci,
            self.weight_cf,
            self.weight_co,
            self.forget_bias,
            self.coupled,
        )
        return (h.squeeze(0), c.squeeze(0)) if unbatched else (h, c)
