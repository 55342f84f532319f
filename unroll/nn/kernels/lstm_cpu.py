"""The compiled CPU time loops of the fused LSTM (`lstm_cpu.cpp`), built on first use.

`loops()` returns an object with ``forward`` and ``backward`` — the same signatures and effects
as `lstm_fused.PythonLoops` — or None when they cannot be had, and then the fused LSTM runs its
Python loops (same math, slower at small sizes). The extension is compiled once per machine
and torch version by `torch.utils.cpp_extension` (a C++ compiler and ninja are needed; about
20 s) and cached in torch's extension directory (``TORCH_EXTENSIONS_DIR`` to move it).

Builds (`FLAG_SETS`): ``native`` (``-march=native``: the vector width this CPU has, e.g.
AVX-512) is tried first, ``portable`` (the compiler's baseline target) where that fails, then
``plain`` (no vectorizing flags). The cache key holds the flags, the CPU (model and feature
flags), torch's version, the source and its path, so machines sharing a home directory, or two
checkouts, never load or rebuild each other's build.

``UNROLL_CPU_EXTENSION``: ``0`` turns the extension off; unset or ``1`` tries the builds in
order; a build's name (``portable``, ``plain``) starts there, to measure what a CPU without
this one's features, or a compiler without the flags, gets. `unavailable_reason()` says why
the extension is not in use, `build_in_use()` which build is.

Two one-line notices go to loggers at WARNING: "compiling once" before a first build
(`unroll.nn.kernels.build`), and the fallback to the Python loops when the build fails. With
no logging configured, Python's last-resort handler prints them to stderr as they are; an
application that configures logging routes or silences them
(``logging.getLogger("unroll").setLevel(logging.ERROR)``).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import torch
from torch import Tensor

from unroll.nn.kernels.build import (  # noqa: F401 - path_with_interpreter_dir: re-exported
    ENV,
    FLAG_SETS,
    OFF,
    compile_extension,
    extension_name,
    path_with_interpreter_dir,
)
from unroll.nn.kernels.build import cpu_signature as _cpu_signature
from unroll.nn.kernels.build import first_error as _first_error
from unroll.nn.kernels.gemm import onednn_packed_weight, onednn_packing_pays

SOURCE = Path(__file__).with_name("lstm_cpu.cpp")
# UNROLL_CPU_EXTENSION's value -> the builds to try, in order: a build's name starts there
ORDER = tuple(FLAG_SETS)
BUILDS_FOR = {v: ORDER for v in ("", "1", "on", "true", "yes")}
BUILDS_FOR.update({kind: ORDER[ORDER.index(kind) :] for kind in ORDER})

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_state: dict = {"tried": False, "ops": None, "reason": "not loaded yet", "build": None}


def _extension_name(flags: list[str]) -> str:
    """The build's name, its key in the cache (`unroll.nn.kernels.build.extension_name`)."""
    return extension_name("unroll_lstm_cpu", [SOURCE], flags, _cpu_signature())


def _build(flags: list[str]) -> None:
    name = _extension_name(flags)
    compile_extension("unroll_lstm_cpu", [SOURCE], flags, "the CPU LSTM loops", 20, name=name)


class CompiledLoops:
    """`lstm_fused.PythonLoops`' interface over the compiled ops: the recurrent GEMMs go
    through oneDNN with the weight prepacked once per call where that pays (large H). The
    recurrent dropout masks (B, H) and zoneout's z (T, B, H) ride along
    (`lstm_fused.PythonLoops.forward`)."""

    takes_masks = True

    @staticmethod
    def forward(
        A, h0, c0, w_hh, peep_in, peep_o, Cs, TC, Y, mask_h=None, mask_g=None, zone=None
    ) -> None:
        packed = onednn_packed_weight(w_hh, A.shape[1])
        mask_h, mask_g = (None if m is None else m.contiguous() for m in (mask_h, mask_g))
        keep_c, keep_h = (None, None) if zone is None else (z.contiguous() for z in zone)
        torch.ops.unroll_lstm_cpu.forward(
            A,
            h0,
            c0,
            w_hh,
            packed,
            peep_in,
            peep_o,
            Cs,
            TC,
            Y,
            True,
            mask_h,
            mask_g,
            keep_c,
            keep_h,
        )

    @staticmethod
    def backward(
        A,
        Cs,
        TC,
        c0,
        w_hh,
        peep_in,
        peep_o,
        dY,
        dCx,
        dc,
        dG,
        mask_h=None,
        mask_g=None,
        zone=None,
        carry=None,
    ) -> None:
        packed = None
        if A.shape[0] > 1 and onednn_packing_pays(w_hh):  # mᵀ: a fast transpose first
            packed = onednn_packed_weight(CompiledLoops.transpose(w_hh), A.shape[1])
        mask_h, mask_g = (None if m is None else m.contiguous() for m in (mask_h, mask_g))
        keep_c, keep_h = (None, None) if zone is None else (z.contiguous() for z in zone)
        torch.ops.unroll_lstm_cpu.backward(
            A,
            Cs,
            TC,
            c0,
            w_hh,
            packed,
            peep_in,
            peep_o,
            dY,
            dCx,
            dc,
            dG,
            True,
            mask_h,
            mask_g,
            keep_c,
            keep_h,
            carry,
        )

    @staticmethod
    def transpose(m: Tensor) -> Tensor:
        """m (R, C) -> mᵀ (C, R), contiguous (a tiled copy)."""
        return torch.ops.unroll_lstm_cpu.transpose(m)


def loops():
    """The compiled loops (a `CompiledLoops`), or None; builds them on first call."""
    choice = os.environ.get(ENV, "").strip().lower()
    if choice in OFF:
        _state["reason"] = f"turned off by {ENV}={os.environ[ENV]}"
        return None
    if _state["tried"]:
        return _state["ops"]
    with _lock:
        if not _state["tried"]:
            errors = []
            builds = BUILDS_FOR.get(choice)
            if builds is None:
                names = ", ".join(("0", "1", *ORDER))
                errors.append(f"{ENV}={os.environ[ENV]!r} is not one of {names}")
            for kind in builds or ():
                flags = FLAG_SETS[kind]
                try:
                    _build(flags)
                except Exception as e:  # noqa: BLE001 - any build failure means: Python loops
                    errors.append(f"{' '.join(flags)}: {_first_error(str(e))}")
                    continue
                _state["ops"], _state["reason"] = CompiledLoops, None
                _state["build"] = f"{kind} ({' '.join(flags)})"
                break
            else:
                _state["reason"] = "could not build lstm_cpu.cpp (" + "; ".join(errors) + ")"
                logger.warning(
                    "unroll: %s; the fused LSTM uses its Python loops on CPU", _state["reason"]
                )
            _state["tried"] = True
    return _state["ops"]


def unavailable_reason() -> str | None:
    """None when the compiled loops are in use, else why not (after `loops()` was called)."""
    return None if loops() is not None else _state["reason"]


def build_in_use() -> str | None:
    """Which build the compiled loops run, its name and flags (``native (-O3 -march=native
    ...)``); None when they are not in use."""
    return _state["build"] if loops() is not None else None
