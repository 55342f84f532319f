"""What every cell shares: PyTorch's weight layout and init, and input/state checks."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


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


def hx_or_state(name: str, hx, state):
    """The initial state given as ``hx`` (torch.nn's name) or ``state`` (unroll's older keyword,
    kept as an alias so existing callers work); both at once is an error."""
    if state is None:
        return hx
    if hx is not None:
        raise ValueError(f"{name}: got both hx and state (two names for one argument)")
    return state


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
    """Raise ValueError unless state tensor ``s`` has ``shape`` and ``like``'s dtype/device
    (the cells' one-step state and the layers' (L·D, B, H) state alike)."""
    if not isinstance(s, Tensor):
        raise ValueError(f"{name}: expected {what} to be a Tensor, got {type(s).__name__}")
    if tuple(s.shape) != shape:
        raise ValueError(f"{name}: expected {what} of shape {shape}, got {tuple(s.shape)}")
    check_like(name, what, s, like)


class CellBase(nn.Module):
    """Weights of a cell with `gates` gate blocks, in PyTorch's layout and names::

        weight_ih (gates·H, C)   weight_hh (gates·H, H)   bias_ih, bias_hh (gates·H,) or None

    Subclasses register any extra parameters, then call `reset_parameters` (uniform ±1/√H on
    every parameter, as PyTorch initialises its cells).
    """

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool, gates: int, device=None, dtype=None
    ) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.weight_ih = nn.Parameter(torch.empty(gates * hidden_size, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(gates * hidden_size, hidden_size, **kw))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gates * hidden_size, **kw))
            self.bias_hh = nn.Parameter(torch.empty(gates * hidden_size, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)
