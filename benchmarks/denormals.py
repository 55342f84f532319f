"""Long sequences and denormal floats: forward + backward of a 2-layer LSTM over T = 784 (the
pixel-by-pixel shape), with denormals as they come and with `torch.set_flush_denormal(True)`
for the whole step, per variant (the standard one runs torch's kernel, the others the fused
loops, which flush denormals themselves). One JSON line; times are the median of `--repeats`.

    python benchmarks/denormals.py [--steps 784] [--batch 64] [--hidden 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

import unroll


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=784)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = {}
    for name, variant in (("standard", {}), ("peephole", {"peephole": True})):
        torch.manual_seed(0)
        layer = unroll.LSTM(1, args.hidden, 2, **variant)
        x = torch.randn(args.steps, args.batch, 1) * 0.3

        def step(layer: torch.nn.Module = layer, x: torch.Tensor = x) -> None:
            y, _ = layer(x)
            y[-1].sum().backward()

        row = {"ran": None}
        for flush in (False, True):
            torch.set_flush_denormal(flush)
            step()  # warm-up (and the first build of the compiled loops)
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                step()
                times.append(time.perf_counter() - t)
            row["flushed" if flush else "as_is"] = round(statistics.median(times), 4)
            row["ran"] = layer.implementation
        torch.set_flush_denormal(False)
        row["as_is_over_flushed"] = round(row["as_is"] / row["flushed"], 2)
        rows[name] = row
    print(
        json.dumps(
            {
                "benchmark": "denormals",
                "cpu": cpu_name(),
                "load_average": [round(v, 2) for v in os.getloadavg()],
                "torch": torch.__version__,
                "threads": 1,
                "T": args.steps,
                "B": args.batch,
                "H": args.hidden,
                "layers": 2,
                "seconds": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
