"""GRU cell with PyTorch's equations (Cho et al. 2014, reset gate applied after the matmul).

    r_t = σ(W_ir·x_t + b_ir + W_hr·h_{t-1} + b_hr)
    z_t = σ(W_iz·x_t + b_iz + W_hz·h_{t-1} + b_hz)
    n_t = tanh(W_in·x_t + b_in + r_t ⊙ (W_hn·h_{t-1} + b_hn))
    h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}

Weights stack the gates in PyTorch's order r, z, n: `weight_ih: (3H, C)`, `weight_hh: (3H, H)`.

Regularisers (options of `unroll.GRU`, which draws the masks once per sequence):
  mask_h (recurrent dropout, Gal & Ghahramani 2016, their GRU, §4): one mask per sequence on
      h_{t-1} where it enters the gates, W_h·(m_h ⊙ h_{t-1}) for r, z and n; the carried
      z_t ⊙ h_{t-1} is not dropped.
  keep_h (zoneout, Krueger et al. 2017): h_t = z_t ⊙ h_{t-1} + (1 − z_t) ⊙ h̃_t, z ~ Bernoulli(p_h)
      per step and unit in training, z = p_h (the expectation) at eval.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unroll.nn.cells.base import CellBase, check_cell_input, check_cell_state, hx_or_state


def gru_step(
    x_proj: Tensor,
    h: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor | None,
    *,
    mask_h: Tensor | None = None,
    keep_h: Tensor | float | None = None,
) -> Tensor:
    """One GRU step from the projected input ``x_proj = W_ih·x_t + b_ih`` (B, 3H); mask_h
    (B, H) Gal's dropout mask, keep_h zoneout's z (module docstring), None = off."""
    xr, xz, xn = x_proj.chunk(3, 1)
    h_in = h if mask_h is None else h * mask_h  # Gal & Ghahramani 2016
    hr, hz, hn = F.linear(h_in, weight_hh, bias_hh).chunk(3, 1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    h_new = (1 - z) * n + z * h
    if keep_h is not None:  # zoneout (Krueger et al. 2017)
        h_new = keep_h * h + (1 - keep_h) * h_new
    return h_new


class GRUCell(CellBase):
    """GRU cell, one time step: ``h = cell(input, hx=None)`` (see the module docstring).

    Args:
        input_size: C.  hidden_size: H.  bias: if False, no ``bias_ih``/``bias_hh``.

    Shapes: input (B, C) or unbatched (C,); hx (B, H) or (H,), None means zeros; returns h.
    ``state=`` is accepted as another name for ``hx``.
    Parameter names, gate order (r, z, n) and init (uniform ±1/√H) are PyTorch's.
    """

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None
    ):
        super().__init__(input_size, hidden_size, bias, gates=3, device=device, dtype=dtype)
        self.reset_parameters()

    def _torch_module(self) -> nn.GRUCell:
        return nn.GRUCell(self.input_size, self.hidden_size, self.bias, device="meta")

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def forward(
        self, input: Tensor, hx: Tensor | None = None, state: Tensor | None = None
    ) -> Tensor:
        x, state = input, hx_or_state("GRUCell", hx, state)
        check_cell_input("GRUCell", x, self.input_size, self.weight_ih)
        unbatched = x.dim() == 1
        x = x.unsqueeze(0) if unbatched else x
        h = x.new_zeros(x.shape[0], self.hidden_size) if state is None else state
        if state is not None:
            shape = (self.hidden_size,) if unbatched else (x.shape[0], self.hidden_size)
            check_cell_state("GRUCell", "hx", state, shape, self.weight_ih)
            h = h.unsqueeze(0) if unbatched else h
        h = gru_step(F.linear(x, self.weight_ih, self.bias_ih), h, self.weight_hh, self.bias_hh)
        return h.squeeze(0) if unbatched else h
