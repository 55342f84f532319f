"""Building unroll's C++ CPU kernels on first use — one way for all of them.

A kernel module (`lstm_cpu`, `word2vec_cpu`) hands its sources to `compile_extension`:
`torch.utils.cpp_extension` compiles them once per machine, torch version and source text
(the name of the build says which) into torch's extension directory (``TORCH_EXTENSIONS_DIR``
moves it). `try_flag_sets` tries ``-march=native`` first (safe: built where it runs) and plain
``-O3`` next; a C++ compiler and ninja are needed. ``UNROLL_CPU_EXTENSION=0`` turns every
compiled kernel off (`turned_off`), and each module then runs its PyTorch/Python fallback.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

ENV = "UNROLL_CPU_EXTENSION"
FLAG_SETS = (["-O3", "-march=native", "-fopenmp-simd"], ["-O3"])


def turned_off() -> str | None:
    """Why the compiled kernels are off (``UNROLL_CPU_EXTENSION=0``), or None."""
    value = os.environ.get(ENV, "1").strip().lower()
    return (
        f"turned off by {ENV}={os.environ[ENV]}" if value in ("0", "off", "false", "no") else None
    )


def cpu_signature() -> str:
    """What -march=native depends on, so a cache shared between machines never mixes builds."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        import platform

        return platform.processor() or platform.machine()


def extension_name(prefix: str, sources: Sequence[Path], flags: list[str]) -> str:
    text = "".join(Path(s).read_text() for s in sources)
    key = "\n".join((text, " ".join(flags), torch.__version__, cpu_signature()))
    return prefix + "_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def compile_extension(
    prefix: str, sources: Sequence[Path], flags: list[str], what: str, seconds: int
) -> None:
    """Build (or load from the cache) the ops of `sources`; a one-line notice on stderr before
    a fresh build ("compiling `what` once (about `seconds` s ...)"). With ``-fopenmp`` among
    the flags the extension links OpenMP too: then ``at::parallel_for`` in it runs on torch's
    threads (without it, ATen's header-only parallel_for runs its body on one thread)."""
    from torch.utils import cpp_extension

    name = extension_name(prefix, sources, flags)
    try:  # a private helper: only for the one-line notice below
        build_dir = cpp_extension._get_build_directory(name, False)
        fresh = not Path(build_dir, f"{name}.so").exists()
    except Exception:  # noqa: BLE001 - the notice is optional
        build_dir, fresh = "torch's extension directory", True
    if fresh:
        print(
            f"unroll: compiling {what} once (about {seconds} s; cached in {build_dir})",
            file=sys.stderr,
        )
    old_path = os.environ.get("PATH")
    os.environ["PATH"] = path_with_interpreter_dir(old_path)
    try:
        cpp_extension.load(
            name=name,
            sources=[str(s) for s in sources],
            extra_cflags=flags,
            extra_ldflags=["-fopenmp"] if "-fopenmp" in flags else None,
            is_python_module=False,
            verbose=False,
        )
    finally:
        if old_path is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = old_path


def try_flag_sets(
    build: Callable[[list[str]], None], flag_sets: Sequence[list[str]] = FLAG_SETS
) -> str | None:
    """``build(flags)`` for each of `flag_sets` until one works: None, or why none did."""
    errors = []
    for flags in flag_sets:
        try:
            build(flags)
        except Exception as e:  # noqa: BLE001 - any build failure means: the fallback
            errors.append(f"{' '.join(flags)}: {first_error(str(e))}")
            continue
        return None
    return "; ".join(errors)


def path_with_interpreter_dir(path: str | None) -> str:
    """PATH with this interpreter's directory added last: there `pip install ninja` puts the
    ninja that torch's extension builder looks up on PATH, and a virtual environment run as
    ``.venv/bin/python`` (not activated) does not have it on PATH."""
    parts = [p for p in (path or "").split(os.pathsep) if p]
    here = os.path.dirname(sys.executable)
    return os.pathsep.join(parts if here in parts else [*parts, here])


def first_error(message: str) -> str:
    lines = message.strip().splitlines() or ["unknown error"]
    return next((line.strip() for line in lines if "error:" in line), lines[-1].strip())
