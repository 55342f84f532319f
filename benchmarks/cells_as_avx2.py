"""`benchmarks/cells.py` as an AVX2-only CPU would run it, on a CPU with AVX-512.

The compiled LSTM loops' ``native`` build becomes ``-march=x86-64-v3`` (AVX2 + FMA: what
``-march=native`` compiles to on an AVX2-only CPU); set ``ATEN_CPU_CAPABILITY=avx2`` too, so
that PyTorch's kernels are limited the same way. The other arguments go to cells.py::

    ATEN_CPU_CAPABILITY=avx2 python benchmarks/cells_as_avx2.py --threads 2 --shapes small

The JSON line's ``machine.fused_cpu_build`` shows the flags that ran.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from unroll.nn.kernels import build  # noqa: E402


def main() -> None:
    with open("/proc/cpuinfo") as f:
        flags = next((line for line in f if line.startswith("flags")), "").split()
    if "avx2" not in flags or "fma" not in flags:
        sys.exit("cells_as_avx2.py: this CPU has no AVX2/FMA, so an x86-64-v3 build cannot run")
    build.FLAG_SETS["native"][:] = [
        "-O3",
        "-march=x86-64-v3",
        "-fopenmp-simd",
        "-fno-trapping-math",
    ]
    sys.argv = [str(HERE / "cells.py"), *sys.argv[1:]]
    runpy.run_path(str(HERE / "cells.py"), run_name="__main__")


if __name__ == "__main__":
    main()
