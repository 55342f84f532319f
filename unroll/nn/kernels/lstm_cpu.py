"""The compiled CPU time loops of the fused LSTM (`lstm_cpu.cpp`), built on first use.

`loops()` returns an object with ``forward`` and ``backward`` — the same signatures and effects
as `lstm_fused.PythonLoops` — or None when they cannot be had, and then the fused LSTM runs its
Python loops (same math, slower at small sizes). The extension is compiled once per machine
and torch version by `torch.utils.cpp_extension` (a C++ compiler and ninja are needed; about
20 s) and cached in torch's extension directory (``TORCH_EXTENSIONS_DIR`` to move it).
``UNROLL_CPU_EXTENSION=0`` turns it off; `unavailable_reason()` says why it is not in use.

Two one-line notices go to the module's logger at WARNING: "compiling once" before a first
build, and the fallback to the Python loops when the build fails. With no logging configured,
Python's last-resort handler prints them to stderr as they are; an application that configures
logging routes or silences them (``logging.getLogger("unroll").setLevel(logging.ERROR)``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
from pathlib import Path

import torch
from torch import Tensor

from unroll.nn.kernels.lstm_fused import onednn_packed_weight, onednn_packing_pays

SOURCE = Path(__file__).with_name("lstm_cpu.cpp")
ENV = "UNROLL_CPU_EXTENSION"
# Built on the machine that runs it, so -march=native is safe; the plain flags are the fallback
# for compilers that do not take it.
FLAG_SETS = (["-O3", "-march=native", "-fopenmp-simd"], ["-O3"])

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_state: dict = {"tried": False, "ops": None, "reason": "not loaded yet"}


def _cpu_signature() -> str:
    """What -march=native depends on, so a cache shared between machines never mixes builds."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        import platform

        return platform.processor() or platform.machine()


def _extension_name(flags: list[str]) -> str:
    key = "\n".join((SOURCE.read_text(), " ".join(flags), torch.__version__, _cpu_signature()))
    return "unroll_lstm_cpu_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _build(flags: list[str]) -> None:
    from torch.utils import cpp_extension

    name = _extension_name(flags)
    try:  # a private helper: only for the one-line notice below
        build_dir = cpp_extension._get_build_directory(name, False)
        fresh = not Path(build_dir, f"{name}.so").exists()
    except Exception:  # noqa: BLE001 - the notice is optional
        build_dir, fresh = "torch's extension directory", True
    if fresh:
        logger.warning(
            "unroll: compiling the CPU LSTM loops once (about 20 s; cached in %s)", build_dir
        )
    old_path = os.environ.get("PATH")
    os.environ["PATH"] = path_with_interpreter_dir(old_path)
    try:
        cpp_extension.load(
            name=name,
            sources=[str(SOURCE)],
            extra_cflags=flags,
            is_python_module=False,
            verbose=False,
        )
    finally:
        if old_path is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = old_path


def path_with_interpreter_dir(path: str | None) -> str:
    """PATH with this interpreter's directory added last: there `pip install ninja` puts the
    ninja that torch's extension builder looks up on PATH, and a virtual environment run as
    ``.venv/bin/python`` (not activated) does not have it on PATH."""
    parts = [p for p in (path or "").split(os.pathsep) if p]
    here = os.path.dirname(sys.executable)
    return os.pathsep.join(parts if here in parts else [*parts, here])


def _first_error(message: str) -> str:
    lines = message.strip().splitlines() or ["unknown error"]
    return next((line.strip() for line in lines if "error:" in line), lines[-1].strip())


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
    if os.environ.get(ENV, "1").strip().lower() in ("0", "off", "false", "no"):
        _state["reason"] = f"turned off by {ENV}={os.environ[ENV]}"
        return None
    if _state["tried"]:
        return _state["ops"]
    with _lock:
        if not _state["tried"]:
            errors = []
            for flags in FLAG_SETS:
                try:
                    _build(flags)
                except Exception as e:  # noqa: BLE001 - any build failure means: Python loops
                    errors.append(f"{' '.join(flags)}: {_first_error(str(e))}")
                    continue
                _state["ops"], _state["reason"] = CompiledLoops, None
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
