"""The compiled CPU time loops of the fused LSTM (`lstm_cpu.cpp`), built on first use.

`loops()` returns an object with ``forward`` and ``backward`` — the same signatures and effects
as `lstm_fused.PythonLoops` — or None when they cannot be had, and then the fused LSTM runs its
Python loops (same math, slower at small sizes). The extension is compiled once per machine
and torch version by `torch.utils.cpp_extension` (a C++ compiler and ninja are needed; about
20 s) and cached in torch's extension directory (``TORCH_EXTENSIONS_DIR`` to move it).
``UNROLL_CPU_EXTENSION=0`` turns it off; `unavailable_reason()` says why it is not in use.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import torch
from torch import Tensor

from unroll.nn.kernels.build import (  # noqa: F401 - ENV, path_with_interpreter_dir: re-exported
    ENV,
    compile_extension,
    path_with_interpreter_dir,
    try_flag_sets,
    turned_off,
)
from unroll.nn.kernels.gemm import onednn_packed_weight, onednn_packing_pays

SOURCE = Path(__file__).with_name("lstm_cpu.cpp")

_lock = threading.Lock()
_state: dict = {"tried": False, "ops": None, "reason": "not loaded yet"}


def _build(flags: list[str]) -> None:
    compile_extension("unroll_lstm_cpu", [SOURCE], flags, "the CPU LSTM loops", 20)


class CompiledLoops:
    """`lstm_fused.PythonLoops`' interface over the compiled ops: the recurrent GEMMs go
    through oneDNN with the weight prepacked once per call where that pays (large H)."""

    @staticmethod
    def forward(A, h0, c0, w_hh, peep_in, peep_o, Cs, TC, Y) -> None:
        packed = onednn_packed_weight(w_hh, A.shape[1])
        torch.ops.unroll_lstm_cpu.forward(A, h0, c0, w_hh, packed, peep_in, peep_o, Cs, TC, Y)

    @staticmethod
    def backward(A, Cs, TC, c0, w_hh, peep_in, peep_o, dY, dCx, dc, dG) -> None:
        packed = None
        if A.shape[0] > 1 and onednn_packing_pays(w_hh):  # mᵀ: a fast transpose first
            packed = onednn_packed_weight(CompiledLoops.transpose(w_hh), A.shape[1])
        torch.ops.unroll_lstm_cpu.backward(
            A, Cs, TC, c0, w_hh, packed, peep_in, peep_o, dY, dCx, dc, dG
        )

    @staticmethod
    def transpose(m: Tensor) -> Tensor:
        """m (R, C) -> mᵀ (C, R), contiguous (a tiled copy)."""
        return torch.ops.unroll_lstm_cpu.transpose(m)


def loops():
    """The compiled loops (a `CompiledLoops`), or None; builds them on first call."""
    off = turned_off()
    if off is not None:
        _state["reason"] = off
        return None
    if _state["tried"]:
        return _state["ops"]
    with _lock:
        if not _state["tried"]:
            failed = try_flag_sets(_build)
            if failed is None:
                _state["ops"], _state["reason"] = CompiledLoops, None
            else:
                _state["reason"] = f"could not build lstm_cpu.cpp ({failed})"
                print(
                    f"unroll: {_state['reason']}; the fused LSTM uses its Python loops on CPU",
                    file=sys.stderr,
                )
            _state["tried"] = True
    return _state["ops"]


def unavailable_reason() -> str | None:
    """None when the compiled loops are in use, else why not (after `loops()` was called)."""
    return None if loops() is not None else _state["reason"]
