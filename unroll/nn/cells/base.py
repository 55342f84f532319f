"""What every cell shares: PyTorch's weight layout and init, and input/state checks."""

from __future__ import annotations

import math
import warnings

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


class TorchTwin:
    """The torch.nn module of the same math, for tools that take torch.nn modules by exact
    type (a mixin of unroll's cells and layers, before nn.Module).

    `to_torch` builds it on the same Parameter objects; torch.jit.script scripts it instead
    (`__prepare_scriptable__`); torch.ao.quantization, which swaps torch.nn's modules by exact
    type and would leave ours float without a word, gets a warning naming `to_torch`.
    Subclasses implement `_torch_module` (the torch.nn module, on the meta device) and extend
    `_why_not_torch` (why none computes this one, e.g. an LSTM variant).
    """

    def _why_not_torch(self) -> str | None:
        from torch.nn.utils import parametrize

        return "parametrized weights" if parametrize.is_parametrized(self) else None

    def _torch_module(self) -> nn.Module:
        raise NotImplementedError

    def to_torch(self) -> nn.Module:
        """The `torch.nn` module this is (LSTM, GRU, RNN or their cells), sharing its
        parameters (the same Parameter objects: training one trains both), in the same
        train/eval mode. Raises ValueError where no torch.nn module computes the same (an LSTM
        variant: peephole, coupled, forget_bias; parametrized weights)."""
        reason = self._why_not_torch()
        if reason:
            raise ValueError(f"{self!r}: no torch.nn module computes it ({reason})")
        with warnings.catch_warnings():  # torch's num_layers=1 dropout warning: ours came first
            warnings.simplefilter("ignore", UserWarning)
            module = self._torch_module()
        for name, _ in list(module.named_parameters()):  # same names (torch.nn's)
            setattr(module, name, getattr(self, name))
        module.train(self.training)
        if hasattr(module, "flatten_parameters"):
            module.flatten_parameters()
        return module

    def __prepare_scriptable__(self) -> nn.Module:
        """torch.jit.script compiles torch.nn's modules, not ours (Python-only features: the
        ``state=`` alias, lengths, the implementation switch): it scripts `to_torch` instead,
        the same math on the same parameters. torch.jit.script puts what this returns in the
        scripted module's parent, in place (torch's way)."""
        reason = self._why_not_torch()
        if reason:
            raise RuntimeError(
                f"{self!r} cannot be scripted ({reason}: no torch.nn module computes it): "
                "use torch.jit.trace, torch.export or torch.compile"
            )
        return self.to_torch()

    def __setattr__(self, name: str, value) -> None:
        if name == "qconfig":
            # torch.ao.quantization (quantize_dynamic, prepare) sets qconfig on every module it
            # walks, then swaps torch.nn's modules by exact type.
            warnings.warn(
                f"{type(self).__name__}: torch.ao.quantization leaves unroll modules in float "
                "(it swaps torch.nn modules by exact type); quantize .to_torch() instead",
                stacklevel=2,
            )
        super().__setattr__(name, value)


class CellBase(TorchTwin, nn.Module):
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
