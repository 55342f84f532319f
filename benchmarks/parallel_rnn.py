"""minGRU / minLSTM (unroll.MinGRU, unroll.MinLSTM) vs torch.nn.GRU / torch.nn.LSTM: one
training step's time and the memory it saves for backward, over T.

Prints JSON lines: first the machine, then one line per T with, per model, the median
milliseconds of forward + ``y.sum()`` + backward (one layer, C = H, same hidden size), the
ratio nn.GRU / model (and nn.LSTM / model), and the bytes of the tensors autograd saved for
backward (counted by `torch.autograd.graph.saved_tensors_hooks` during the forward: every
saved tensor's storage once, parameters included; torch's fused kernels save their workspace
through the same hook, so nn.GRU/nn.LSTM are counted the same way)::

    python benchmarks/parallel_rnn.py                        # B = 16, H = 128, one thread
    python benchmarks/parallel_rnn.py --batch 64 --hidden 256
    python benchmarks/parallel_rnn.py --device cuda          # GPU when there is one

Models are timed in alternating rounds (every model once per round), so a neighbour's load
falls on all of them alike; the ratios are within a round's medians. min-RNN implementations:
"fused" (one fused pass per direction: the compiled CPU loop, Triton on CUDA), "blocked" (the
log-space scan in blocks of 64 steps) and "scan" (the paper's log-space scan over all T).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from torch import nn

import unroll
from unroll.engine.device import device_name
from unroll.nn.kernels import scan_cpu


def saved_bytes(fn) -> int:
    """Bytes of the distinct storages autograd saves for backward while ``fn()`` runs."""
    seen: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(seen.values())


def build(name: str, H: int, device) -> nn.Module:
    if name == "nn.GRU":
        return nn.GRU(H, H, device=device)
    if name == "nn.LSTM":
        return nn.LSTM(H, H, device=device)
    cls, impl = name.split(":")
    return {"MinGRU": unroll.MinGRU, "MinLSTM": unroll.MinLSTM}[cls](H, H, device=device, impl=impl)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, nargs="+", default=[64, 256, 1024, 4096], help="T")
    p.add_argument("--batch", type=int, default=16, help="B")
    p.add_argument("--hidden", type=int, default=128, help="H (= C)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--impls", nargs="+", default=["fused", "blocked", "scan"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--chunk", type=int, default=None, help="steps per block of impl blocked")
    p.add_argument(
        "--clock",
        choices=["wall", "thread"],
        default="wall",
        help="thread: this thread's CPU time (steadier on a shared machine; one thread only)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.chunk:
        scan_cpu.CHUNK = args.chunk
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    names = ["nn.GRU", "nn.LSTM"] + [f"{c}:{i}" for c in ("MinGRU", "MinLSTM") for i in args.impls]
    torch.manual_seed(0)
    models = {n: build(n, args.hidden, device) for n in names}
    print(
        json.dumps(
            {
                "benchmark": "parallel_rnn",
                "cpu": device_name("cpu"),
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "load_average": [round(v, 2) for v in os.getloadavg()],
                "min_rnn_cpu_loop": scan_cpu.unavailable_reason() or "compiled",
                "B": args.batch,
                "H": args.hidden,
                "C": args.hidden,
                "layers": 1,
                "clock": args.clock,
                "blocked_chunk": scan_cpu.CHUNK,
            }
        ),
        flush=True,
    )
    for T in args.steps:
        x = torch.randn(T, args.batch, args.hidden, device=device, requires_grad=True)

        def step(m, x=x):
            y = m(x)[0]
            y.sum().backward()

        for m in models.values():  # warm-up (and the one-time builds)
            step(m)
        times: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(args.rounds):
            for n, m in models.items():
                sync()
                t0 = clock()
                step(m)
                sync()
                times[n].append(clock() - t0)
        ms = {n: statistics.median(v) * 1e3 for n, v in times.items()}
        mem = {n: saved_bytes(lambda m=m, x=x: m(x)[0]) for n, m in models.items()}
        row = {
            "T": T,
            "ms": {n: round(v, 2) for n, v in ms.items()},
            "gru_over": {n: round(ms["nn.GRU"] / v, 2) for n, v in ms.items()},
            "lstm_over": {n: round(ms["nn.LSTM"] / v, 2) for n, v in ms.items()},
            "saved_MB": {n: round(v / 2**20, 2) for n, v in mem.items()},
            "load_average": [round(v, 2) for v in os.getloadavg()],
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
