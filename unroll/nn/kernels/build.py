"""Building unroll's C++ CPU kernels on first use — one way for all of them.

A kernel module (`lstm_cpu`, `word2vec_cpu`) hands its sources to `compile_extension`:
`torch.utils.cpp_extension` compiles them once into torch's extension directory
(``TORCH_EXTENSIONS_DIR`` moves it), under a name that is a hash of everything the build
depends on (`extension_name`: the source text and path, the flags, torch's version and the
CPU), so machines sharing a home directory, or two checkouts, never load or rebuild each
other's build. `try_flag_sets` tries the builds of `FLAG_SETS` in order; a C++ compiler and
ninja are needed. ``UNROLL_CPU_EXTENSION=0`` turns every compiled kernel off (`turned_off`),
and each module then runs its PyTorch/Python fallback.

The "compiling once" notice goes to this module's logger at WARNING (with no logging
configured, Python's last-resort handler prints it to stderr; the CLI shows it as a note).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

ENV = "UNROLL_CPU_EXTENSION"
OFF = ("0", "off", "false", "no")
# Built on the machine that runs it, so -march=native is safe; portable (the compiler's default
# target: SSE2 on x86-64) is the fallback for compilers that do not take it, plain the last
# resort. Vectorized loops need both of
#   -fopenmp-simd        honours their `omp simd` (no OpenMP runtime involved);
#   -fno-trapping-math   lets a clamp become min/max: GCC 12 otherwise keeps such a loop
#                        scalar (except with AVX-512's masked compares).
# Neither changes a result; PyTorch builds with -fno-trapping-math too.
FLAG_SETS = {
    "native": ["-O3", "-march=native", "-fopenmp-simd", "-fno-trapping-math"],
    "portable": ["-O3", "-fopenmp-simd", "-fno-trapping-math"],
    "plain": ["-O3"],
}

logger = logging.getLogger(__name__)


def turned_off() -> str | None:
    """Why the compiled kernels are off (``UNROLL_CPU_EXTENSION=0``), or None."""
    value = os.environ.get(ENV, "1").strip().lower()
    return f"turned off by {ENV}={os.environ[ENV]}" if value in OFF else None


def cpu_signature() -> str:
    """What -march=native depends on (the first CPU's model and feature flags)."""
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


# The fast math every kernel includes ("fast_math.h", beside the sources): in every cache key.
SHARED_HEADER = Path(__file__).with_name("fast_math.h")


def extension_name(
    prefix: str, sources: Sequence[Path], flags: list[str], signature: str | None = None
) -> str:
    """The build's name, its key in the cache. The sources' paths are in it because the build
    directory's ninja file names them: a second checkout with the same source would otherwise
    rebuild (20 s) over the first one's build on every alternation."""
    parts = [Path(s).read_text() + "\n" + str(Path(s).resolve()) for s in sources]
    parts.append(SHARED_HEADER.read_text())  # every kernel includes it
    sig = cpu_signature() if signature is None else signature
    key = "\n".join((*parts, " ".join(flags), torch.__version__, sig))
    return prefix + "_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def compile_extension(
    prefix: str,
    sources: Sequence[Path],
    flags: list[str],
    what: str,
    seconds: int,
    name: str | None = None,
) -> None:
    """Build (or load from the cache) the ops of `sources` under `name` (default:
    `extension_name`); a one-line notice before a fresh build ("compiling `what` once (about
    `seconds` s ...)"). With ``-fopenmp`` among the flags the extension links OpenMP too: then
    ``at::parallel_for`` in it runs on torch's threads (without it, ATen's header-only
    parallel_for runs its body on one thread)."""
    from torch.utils import cpp_extension

    name = name or extension_name(prefix, sources, flags)
    try:  # a private helper: only for the one-line notice below
        build_dir = cpp_extension._get_build_directory(name, False)
        fresh = not Path(build_dir, f"{name}.so").exists()
    except Exception:  # noqa: BLE001 - the notice is optional
        build_dir, fresh = "torch's extension directory", True
    if fresh:
        logger.warning(
            "unroll: compiling %s once (about %d s; cached in %s)", what, seconds, build_dir
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
    build: Callable[[list[str]], None], flag_sets: Sequence[list[str]] = tuple(FLAG_SETS.values())
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
