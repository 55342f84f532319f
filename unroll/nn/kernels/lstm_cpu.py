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

from unroll.nn.kernels.gemm import onednn_packed_weight, onednn_packing_pays

SOURCE = Path(__file__).with_name("lstm_cpu.cpp")
ENV = "UNROLL_CPU_EXTENSION"
# Built on the machine that runs it, so -march=native is safe; portable (the compiler's default
# target: SSE2 on x86-64) is the fallback for compilers that do not take it, plain the last
# resort. The gate-math loops vectorize only with both of
#   -fopenmp-simd        honours their `omp simd` (no OpenMP runtime involved);
#   -fno-trapping-math   lets the clamp in exp_poly become min/max: GCC 12 otherwise keeps
#                        the forward loop scalar (except with AVX-512's masked compares).
# Neither changes a result; PyTorch builds with -fno-trapping-math too.
FLAG_SETS = {
    "native": ["-O3", "-march=native", "-fopenmp-simd", "-fno-trapping-math"],
    "portable": ["-O3", "-fopenmp-simd", "-fno-trapping-math"],
    "plain": ["-O3"],
}
OFF = ("0", "off", "false", "no")
# UNROLL_CPU_EXTENSION's value -> the builds to try, in order: a build's name starts there
ORDER = tuple(FLAG_SETS)
BUILDS_FOR = {v: ORDER for v in ("", "1", "on", "true", "yes")}
BUILDS_FOR.update({kind: ORDER[ORDER.index(kind) :] for kind in ORDER})

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_state: dict = {"tried": False, "ops": None, "reason": "not loaded yet", "build": None}


def _cpu_signature() -> str:
    """What -march=native depends on (the first CPU's model and feature flags), so a cache
    shared between machines never mixes builds."""
    keys = ("vendor_id", "cpu family", "model", "model name", "flags", "Features", "CPU part")
    try:
        with open("/proc/cpuinfo") as f:
            lines = []
            for line in f:
                if not line.strip():
                    break  # the first CPU's block ends here
                if line.split(":", 1)[0].strip() in keys:
                    lines.append(line.strip())
            return "\n".join(lines)
    except OSError:
        import platform

        return platform.processor() or platform.machine()


def _extension_name(flags: list[str]) -> str:
    """The build's name, its key in the cache. The source's path is in it because the build
    directory's ninja file names it: a second checkout with the same source would otherwise
    rebuild (20 s) over the first one's build on every alternation."""
    parts = (SOURCE.read_text(), str(SOURCE.resolve()), " ".join(flags), torch.__version__)
    key = "\n".join((*parts, _cpu_signature()))
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
