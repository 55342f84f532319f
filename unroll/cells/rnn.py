"""Elman RNN cell: the reference step.

    h_t = φ(W_ih·x_t + b_ih + W_hh·h_{t-1} + b_hh),   φ = tanh or relu

Weights use PyTorch's names and shapes (`weight_ih: (H, C)`, `weight_hh: (H, H)`), so a cell's
parameters load into `torch.nn.RNNCell` and back.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NONLINEARITIES = ("tanh", "relu")


def rnn_step(
    x_proj: Tensor, h: Tensor, weight_hh: Tensor, bias_hh: Tensor | None, nonlinearity: str
) -> Tensor:
    """One Elman step from the projected input ``x_proj = W_ih·x_t + b_ih`` (B, H)."""
    a = x_proj + F.linear(h, weight_hh, bias_hh)
    return torch.tanh(a) if nonlinearity == "tanh" else torch.relu(a)


def check_cell_input(name: str, x: Tensor, input_size: int, like: Tensor) -> None:
    """Raise ValueError unless x is (B, C) or (C,) with C == input_size, on like's dtype/device."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected input to be a Tensor, got {type(x).__name__}")
    if x.dim() not in (1, 2):
        raise ValueError(f"{name}: expected input of shape (B, C) or (C,), got {tuple(x.shape)}")
    if x.shape[-1] != input_size:
        raise ValueError(
            f"{name}: expected input with {input_size} features (last dim), got {x.shape[-1]}"
        )
    check_like(name, "input", x, like)


def check_like(name: str, what: str, t: Tensor, like: Tensor) -> None:
    """Raise ValueError if ``t`` differs from ``like`` (the parameters) in dtype or device."""
    if t.dtype != like.dtype:
        raise ValueError(
            f"{name}: expected {what} of dtype {like.dtype} (the parameters'), got {t.dtype}"
        )
    if t.device != like.device:
        raise ValueError(
            f"{name}: expected {what} on device {like.device} (the parameters'), got {t.device}"
        )


def check_cell_state(name: str, what: str, s: Tensor, shape: tuple[int, ...], like: Tensor) -> None:
    if not isinstance(s, Tensor):
        raise ValueError(f"{name}: expected {what} to be a Tensor, got {type(s).__name__}")
    if tuple(s.shape) != shape:
        raise ValueError(f"{name}: expected {what} of shape {shape}, got {tuple(s.shape)}")
    check_like(name, what, s, like)


class RNNCell(nn.Module):
    """Elman RNN cell, one time step: ``h = cell(x, h=None)``.

    h_t = φ(W_ih·x_t + b_ih + W_hh·h_{t-1} + b_hh) with φ = tanh (default) or relu.

    Args:
        input_size: C, features of x.
        hidden_size: H.
        nonlinearity: "tanh" or "relu".
        bias: if False, no ``bias_ih``/``bias_hh``.

    Shapes: x (B, C) or unbatched (C,); state (B, H) or (H,), None means zeros; returns h (B, H).
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
        super().__init__()
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"RNNCell: expected nonlinearity 'tanh' or 'relu', got {nonlinearity!r}"
            )
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size = input_size, hidden_size
        self.nonlinearity, self.bias = nonlinearity, bias
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size, **kw))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(hidden_size, **kw))
            self.bias_hh = nn.Parameter(torch.empty(hidden_size, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        return s + ("" if self.bias else ", bias=False")

    def forward(self, x: Tensor, state: Tensor | None = None) -> Tensor:
        check_cell_input("RNNCell", x, self.input_size, self.weight_ih)
        unbatched = x.dim() == 1
        x = x.unsqueeze(0) if unbatched else x
        h = x.new_zeros(x.shape[0], self.hidden_size) if state is None else state
        if state is not None:
            shape = (self.hidden_size,) if unbatched else (x.shape[0], self.hidden_size)
            check_cell_state("RNNCell", "state", state, shape, self.weight_ih)
            h = h.unsqueeze(0) if unbatched else h
        h = rnn_step(
            F.linear(x, self.weight_ih, self.bias_ih),
            h,
            self.weight_hh,
            self.bias_hh,
            self.nonlinearity,
        )
        return h.squeeze(0) if unbatched else h
