"""Forward+backward time of unroll's recurrent layers vs torch.nn.LSTM/GRU/RNN.

Prints one JSON line per case as it finishes (``{"benchmark": "cells", "case": ...}``: a shape,
or on CUDA a shape and dtype of the Triton section; a case that fails prints its ``error`` and
the next one runs), then the whole result as the LAST line: the machine, then per shape the
median milliseconds of one training step (forward, ``y.sum()``, backward) for torch.nn.LSTM
and every unroll.LSTM variant under each implementation, plus GRU/RNN vs torch, with ratios to
torch.nn.LSTM (to torch.nn.GRU/RNN for those). Shapes are the PTB Small/Medium language models
(Zaremba et al. 2014), 2 layers (``tiny``: a check that it runs, no figure)::

    python benchmarks/cells.py                 # all cores, CPU
    python benchmarks/cells.py --threads 2     # the issue's 2-core target
    python benchmarks/cells.py --threads 1 --clock thread   # CPU time: steadier on a busy box
    python benchmarks/cells.py --device cuda --quick
    python benchmarks/cells.py --options --threads 2     # issue 26: the regularisers, LN

With ``--options`` the rows are instead torch.nn.LSTM and, for each of OPTIONS (layer norm,
recurrent dropout in both modes, zoneout, weight drop; training mode, so the masks are drawn
every step), unroll.LSTM under each implementation, with what actually ran
(``implementation``: an option a path lacks falls back) and the ratio to torch.nn.LSTM.

On CUDA a "triton" section adds, per shape and dtype (float32, bfloat16), cuDNN's nn.LSTM and
every variant through the fused kernel's Triton loops (graphs cached, and eager) and its Python
loops, with ratios to cuDNN in the same dtype.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

import unroll
from unroll.engine.device import device_name
from unroll.nn.kernels import lstm_cpu

SHAPES = {  # name: (T, B, C = H, layers)
    "small": (20, 20, 200, 2),
    "medium": (35, 20, 650, 2),
    "tiny": (4, 2, 8, 2),  # DRY=1 benchmarks/gpu_check.sh and the tests: it runs, nothing more
}
VARIANTS = {
    "standard": {},
    "forget_bias": {"forget_bias": 1.0},
    "peephole": {"peephole": True},
    "coupled": {"coupled": True},
    "peephole+coupled": {"peephole": True, "coupled": True},
}
CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}
OPTIONS = {  # issue 26's options, at the settings their papers used for word-level LMs
    "layer_norm": {"layer_norm": True},
    "recurrent_dropout_gal": {"recurrent_dropout": 0.25},
    "recurrent_dropout_semeniuta": {
        "recurrent_dropout": 0.25,
        "recurrent_dropout_mode": "semeniuta",
    },
    "zoneout": {"zoneout": (0.5, 0.05)},
    "weight_drop": {"weight_drop": 0.5},
}


def cpu_identity() -> str:
    """Vendor, family and model of the first CPU (e.g. ``AuthenticAMD family 25 model 17``):
    "AMD EPYC" alone does not tell a Zen 3 from a Zen 4 or 5, whose vector units differ."""
    fields = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        return "unknown"
    return f"{fields.get('vendor_id', '?')} family {fields.get('cpu family', '?')} model " + (
        fields.get("model", "?")
    )


def machine(device: torch.device) -> dict:
    """What the figures depend on: CPU, the vector ISA PyTorch dispatches to, which build of
    unroll's CPU loops ran, and the environment variables that change either."""
    env = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", lstm_cpu.ENV)
    return {
        "cpu_count": os.cpu_count(),
        "cpu": device_name("cpu"),
        "cpu_id": cpu_identity(),
        # ATen's vectorized kernels; oneDNN (torch.nn.LSTM on CPU) picks its own ISA
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "load_average": [round(v, 2) for v in os.getloadavg()],
        # which time loops the fused LSTM ran on CPU (unroll.nn.kernels.lstm_cpu)
        "fused_cpu_loops": lstm_cpu.unavailable_reason() or "compiled",
        "fused_cpu_build": lstm_cpu.build_in_use(),
        "env": {k: os.environ[k] for k in env if k in os.environ},
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(module: torch.nn.Module, x: torch.Tensor):
    """One training step of ``module``: forward, ``y.sum()``, backward."""

    def step() -> None:
        module.zero_grad(set_to_none=True)
        y, _ = module(x)
        y.sum().backward()

    return step


def time_cases(cases: dict, device: torch.device, warmup: int, repeats: int, clock) -> dict:
    """Median ms per case. Repeats go round-robin over the cases so that load from other
    processes (a shared machine) drifts over all of them alike instead of biasing one."""
    for step in cases.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {key: [] for key in cases}
    for _ in range(repeats):
        for key, step in cases.items():
            _sync(device)
            t0 = clock()
            step()
            _sync(device)
            times[key].append((clock() - t0) * 1e3)
    return {key: statistics.median(ts) for key, ts in times.items()}


def bench_shape(
    name: str,
    device: torch.device,
    warmup: int,
    repeats: int,
    clock,
    options: bool = False,
    impls: tuple[str, ...] = ("auto", "fused", "reference"),
) -> dict:
    T, B, H, L = SHAPES[name]
    torch.manual_seed(0)
    x = torch.randn(T, B, H, device=device)
    modules: dict[str, tuple[torch.nn.Module, str]] = {}  # key: (module, baseline key)
    modules["torch.nn.LSTM"] = (torch.nn.LSTM(H, H, L), "torch.nn.LSTM")
    if options:
        ran = {}
        for option, kw in OPTIONS.items():
            for impl in impls:
                lstm = unroll.LSTM(H, H, L, impl=impl, **kw)
                modules[f"LSTM/{option}/{impl}"] = (lstm, "torch.nn.LSTM")
                ran[f"LSTM/{option}/{impl}"] = lstm.implementation
        cases = {key: make_step(m.to(device), x) for key, (m, _) in modules.items()}
        ms = time_cases(cases, device, warmup, repeats, clock)
        base = ms["torch.nn.LSTM"]
        return {
            "T": T,
            "B": B,
            "H": H,
            "layers": L,
            "ms": {key: round(v, 3) for key, v in ms.items()},
            "ratio_to_torch": {k: round(v / base, 3) for k, v in ms.items() if k in ran},
            "implementation": ran,
        }
    for variant, kw in VARIANTS.items():
        for impl in ("auto", "fused", "reference"):
            lstm = unroll.LSTM(H, H, L, impl=impl, **kw)
            modules[f"LSTM/{variant}/{impl}"] = (lstm, "torch.nn.LSTM")
    for cls, torch_cls in ((unroll.GRU, torch.nn.GRU), (unroll.RNN, torch.nn.RNN)):
        base = f"torch.nn.{cls.__name__}"
        modules[base] = (torch_cls(H, H, L), base)
        for impl in ("auto", "reference"):
            modules[f"{cls.__name__}/{impl}"] = (cls(H, H, L, impl=impl), base)
    cases = {key: make_step(m.to(device), x) for key, (m, _) in modules.items()}
    ms = time_cases(cases, device, warmup, repeats, clock)
    ratios = {k: round(ms[k] / ms[base], 3) for k, (_, base) in modules.items() if k != base}
    return {
        "T": T,
        "B": B,
        "C": H,
        "H": H,
        "layers": L,
        "ms": {key: round(v, 3) for key, v in ms.items()},
        "ratio_to_torch": ratios,
    }


# --- CUDA: the fused LSTM's Triton time loops (unroll.nn.kernels.lstm_triton) vs cuDNN --------
CUDA_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
CUDA_LOOPS = {  # environment for each row: which time loops the fused LSTM runs on CUDA
    "triton": {},  # Triton step kernels; repeated shapes replay a cached captured graph
    "triton-eager": {"UNROLL_TRITON_GRAPHS": "0"},  # the same kernels, launched one by one
    "python": {"UNROLL_TRITON": "0"},  # PythonLoops: several launches per step
}
# The persistent kernels are not a row: they compile for minutes (float32 without TF32: tl.dot
# as FMAs). Run the whole benchmark with UNROLL_TRITON_PERSISTENT=1 --shapes small for them.


def with_env(step, env: dict[str, str]):
    """``step`` run with ``env`` set (the loops read these variables on every call)."""

    def run() -> None:
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            step()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k)
                else:
                    os.environ[k] = v

    return run


def bench_triton_shape(
    name: str, device: torch.device, warmup: int, repeats: int, clock, dtypes=CUDA_DTYPES
) -> dict:
    """Per dtype: cuDNN's torch.nn.LSTM (the anchor, same dtype) and every LSTM variant with
    impl="fused" under each of CUDA_LOOPS, with ratios to the anchor."""
    T, B, H, L = SHAPES[name]
    result = {}
    for dname, dtype in dtypes.items():
        torch.manual_seed(0)
        x = torch.randn(T, B, H, device=device, dtype=dtype)
        cases = {"torch.nn.LSTM": make_step(torch.nn.LSTM(H, H, L).to(device, dtype), x)}
        for variant, kw in VARIANTS.items():
            step = make_step(unroll.LSTM(H, H, L, impl="fused", **kw).to(device, dtype), x)
            for loops, env in CUDA_LOOPS.items():
                cases[f"LSTM/{variant}/{loops}"] = with_env(step, env)
        # warm-up >= 2: a shape's graph is captured on its second call
        ms = time_cases(cases, device, max(warmup, 2), repeats, clock)
        base = ms["torch.nn.LSTM"]
        result[dname] = {
            "ms": {k: round(v, 3) for k, v in ms.items()},
            "ratio_to_cudnn": {
                k: round(v / base, 3) for k, v in ms.items() if k != "torch.nn.LSTM"
            },
        }
    return {"T": T, "B": B, "H": H, "layers": L, **result}


def case(name: str, bench, *args) -> dict:
    """``bench(*args)``, printed at once as one JSON line (an error too: the next case runs)."""
    try:
        got = bench(*args)
    except Exception as e:  # noqa: BLE001 - e.g. no bf16 RNN in this cuDNN: the rest still runs
        got = {"error": f"{type(e).__name__}: {e}"[:2000]}
    print(json.dumps({"benchmark": "cells", "case": name, **got}), flush=True)
    return got


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)"
    )
    parser.add_argument(
        "--shapes", default="small,medium", help="comma-separated: small, medium (tiny: a check)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed repeats per case (default 10, quick 3)"
    )
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall (default), or thread: CPU time of this thread, steadier on a busy shared "
        "machine, meaningful only with --threads 1 on CPU",
    )
    parser.add_argument(
        "--quick", action="store_true", help="fast check: small shape, 1 warm-up, 3 repeats"
    )
    parser.add_argument(
        "--options",
        action="store_true",
        help="time issue 26's options (layer norm, recurrent dropout, zoneout, weight drop) "
        "instead of the variants",
    )
    parser.add_argument(
        "--impls",
        default="auto,fused,reference",
        help="with --options: the implementations to time (comma-separated)",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    if args.clock == "thread" and (device.type != "cpu" or args.threads != 1):
        parser.error("--clock thread: needs --device cpu and --threads 1")
    shapes = ["small"] if args.quick else [s for s in args.shapes.split(",") if s]
    for s in shapes:
        if s not in SHAPES:
            parser.error(f"--shapes: expected names from {sorted(SHAPES)}, got {s!r}")
    torch.set_num_threads(args.threads)
    warmup = 1 if args.quick else 3
    repeats = args.repeats or (3 if args.quick else 10)
    clock = CLOCKS[args.clock]
    result = {
        "benchmark": "cells",
        "machine": machine(device),
        "warmup": warmup,
        "repeats": repeats,
        "metric": f"median ms ({args.clock} clock) of forward + backward of y.sum()",
        "shapes": {},
    }
    impls = tuple(i for i in args.impls.split(",") if i)
    for s in shapes:
        result["shapes"][s] = case(
            s, bench_shape, s, device, warmup, repeats, clock, args.options, impls
        )
    if device.type == "cuda" and not args.options:
        from unroll.nn.kernels import lstm_triton

        result["triton"] = {"shapes": {s: {} for s in shapes}}
        for s in shapes:
            for d, t in CUDA_DTYPES.items():  # a case each: a bf16 nn.LSTM needs a recent cuDNN
                got = case(f"triton/{s}/{d}", bench_triton_shape, s, device, warmup, repeats,
                           clock, {d: t})  # fmt: skip
                result["triton"]["shapes"][s][d] = got.get(d, got)
        # what ran: "triton", or why the Python loops did (lstm_triton's probe)
        result["triton"]["loops"] = {
            d: lstm_triton.unavailable_reason(device, t) or "triton" for d, t in CUDA_DTYPES.items()
        }
    # the load at the end too: other processes that came and went during the run show here
    result["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
