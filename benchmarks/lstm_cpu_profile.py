"""Where the fused LSTM's time goes on CPU: one layer, forward + backward, split by phase.

For one LSTM layer at a PTB shape (x needs its gradient, as every layer but the first of a
stack) this prints ONE JSON line with

- ``ms``: median wall-clock ms of the fused layer (compiled loops) and of ``torch.nn.LSTM``
  (one layer) doing the same forward + backward of ``y.sum()``, round-robin;
- ``split``: the share of the fused layer's CPU time in each phase, from ``torch.profiler``
  (which adds some overhead per op, so shares, not times): the per-step recurrent GEMMs, the
  per-step gate math (the compiled loops' own time: elementwise work), the whole-sequence GEMMs
  (input projection, input gradient, weight gradients), weight packing, and the rest;
- ``gemm_us``: each GEMM the layer runs, at its shape, through MKL (``addmm``) and through
  oneDNN (plain, and with the weight prepacked), median µs per call: which library is faster
  here for which GEMM.

    python benchmarks/lstm_cpu_profile.py --threads 1
    python benchmarks/lstm_cpu_profile.py --threads 2 --shape medium --variant peephole
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from cells import SHAPES, VARIANTS, machine  # beside this script

from unroll.nn.kernels import lstm_cpu
from unroll.nn.layers import LSTM

LOOP_OPS = ("unroll_lstm_cpu::forward", "unroll_lstm_cpu::backward")
GEMM_OPS = ("aten::addmm", "aten::addmm_", "aten::mm", "mkldnn::_linear_pointwise")
PACK_OPS = ("mkldnn::_reorder_linear_weight", "unroll_lstm_cpu::transpose")


def median_us(fn, repeats: int, inner: int = 1) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner * 1e6)
    return statistics.median(times)


def phase_split(step, steps: int, T: int) -> tuple[dict, dict]:
    """Share of CPU time per phase over ``steps`` calls of ``step``, from the profiler's events:
    a GEMM is a per-step one when it runs inside the compiled loops. Also the loops' own time
    (the gate math) in µs per time step, forward and backward."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.events()
    total = sum(e.self_cpu_time_total for e in events)
    phases = dict.fromkeys(
        ("recurrent_gemms", "gate_math", "sequence_gemms", "packing", "rest"), 0.0
    )

    def inside_loops(e) -> bool:
        while e.cpu_parent is not None:
            e = e.cpu_parent
            if e.name in LOOP_OPS:
                return True
        return False

    loop_self: dict[str, list[float]] = {name: [] for name in LOOP_OPS}
    for e in events:
        if e.name in LOOP_OPS:
            loop_self[e.name].append(e.self_cpu_time_total)
        if e.name in LOOP_OPS:
            phase = "gate_math"  # the loops' own time: everything but the ops they call
        elif e.name in PACK_OPS:
            phase = "packing"
        elif e.name in GEMM_OPS or (e.name == "aten::add_" and inside_loops(e)):
            # add_: the packed oneDNN GEMM's result added into the gate buffer
            phase = "recurrent_gemms" if inside_loops(e) else "sequence_gemms"
        else:
            phase = "rest"
        phases[phase] += e.self_cpu_time_total
    split = {k: round(v / total, 3) for k, v in phases.items()}
    # the gate math per time step: the loops' own time per call over its T steps
    per_step = {
        name.split("::")[1]: round(statistics.median(v) / T, 2) for name, v in loop_self.items()
    }
    return split, per_step


def gemm_alternatives(T: int, B: int, C: int, H: int, nb: int, repeats: int) -> dict:
    """µs per call of each GEMM of the layer through MKL and oneDNN (plain and prepacked)."""
    lin = torch.ops.mkldnn._linear_pointwise
    pack = torch.ops.mkldnn._reorder_linear_weight
    G = nb * H
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    x2, w_ih, bias, dG2, w_hh = r(T * B, C), r(G, C), r(G), r(T * B, G), r(G, H)
    h, a, dg, dh = r(B, H), r(B, G), r(B, G), r(B, H)
    w_hh_t = w_hh.t().contiguous()
    cases = {  # name: (mkl, onednn plain, onednn prepacked); shapes as (M, K) x (K, N)
        f"input_projection ({T * B}x{C})x({C}x{G})": (
            lambda: torch.addmm(bias, x2, w_ih.t()),
            lambda: lin(x2, w_ih, bias, "none", [], ""),
            (lambda p: lambda: lin(x2, p, bias, "none", [], ""))(pack(w_ih, T * B)),
        ),
        f"input_gradient ({T * B}x{G})x({G}x{C})": (
            lambda: dG2 @ w_ih,
            lambda: lin(dG2, w_ih.t(), None, "none", [], ""),
            None,
        ),
        f"weight_gradient ({G}x{T * B})x({T * B}x{C})": (
            lambda: dG2.t() @ x2,
            lambda: lin(dG2.t(), x2.t(), None, "none", [], ""),
            None,
        ),
        f"step_forward ({B}x{H})x({H}x{G})": (
            lambda: a.addmm_(h, w_hh.t()),
            lambda: a.add_(lin(h, w_hh, None, "none", [], "")),
            (lambda p: lambda: a.add_(lin(h, p, None, "none", [], "")))(pack(w_hh, B)),
        ),
        f"step_backward ({B}x{G})x({G}x{H})": (
            lambda: torch.addmm(dh, dg, w_hh, out=h),
            lambda: torch.add(dh, lin(dg, w_hh.t(), None, "none", [], ""), out=h),
            (lambda p: lambda: torch.add(dh, lin(dg, p, None, "none", [], ""), out=h))(
                pack(w_hh_t, B)
            ),
        ),
    }
    out = {}
    for name, fns in cases.items():
        inner = 20 if name.startswith("step") else 2
        out[name] = {
            lib: round(median_us(fn, repeats, inner), 1)
            for lib, fn in zip(("mkl", "onednn", "onednn_packed"), fns)
            if fn is not None
        }
    out["packing_us"] = {
        "w_hh": round(median_us(lambda: pack(w_hh, B), repeats), 1),
        "w_hh transposed": round(
            median_us(lambda: pack(lstm_cpu.loops().transpose(w_hh), B), repeats), 1
        ),
    }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="standard")
    parser.add_argument("--repeats", type=int, default=20, help="timed repeats per case")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if lstm_cpu.loops() is None:
        parser.error(f"the compiled loops are not in use: {lstm_cpu.unavailable_reason()}")
    T, B, H, _ = SHAPES[args.shape]
    torch.manual_seed(0)
    x = torch.randn(T, B, H, requires_grad=True)
    fused = LSTM(H, H, impl="fused", **VARIANTS[args.variant])
    ref = torch.nn.LSTM(H, H)

    def step_of(module):
        def step() -> None:
            module.zero_grad(set_to_none=True)
            x.grad = None
            module(x)[0].sum().backward()

        return step

    steps = {"fused": step_of(fused), "torch.nn.LSTM": step_of(ref)}
    for step in steps.values():
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.repeats):  # round-robin: load from other processes hits both alike
        for key, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[key].append((time.perf_counter() - t0) * 1e3)
    ms = {k: round(statistics.median(v), 3) for k, v in times.items()}
    nb = 3 if VARIANTS[args.variant].get("coupled") else 4
    split, gate_math = phase_split(steps["fused"], max(5, args.repeats // 2), T)
    result = {
        "benchmark": "lstm_cpu_profile",
        "machine": machine(torch.device("cpu")),
        "shape": {"T": T, "B": B, "C": H, "H": H, "variant": args.variant, "layers": 1},
        "metric": "ms: median wall ms of one layer's forward + backward of y.sum()",
        "ms": ms,
        "ratio_to_torch": round(ms["fused"] / ms["torch.nn.LSTM"], 3),
        "split": split,
        "gate_math_us_per_step": gate_math,
        "gemm_us": gemm_alternatives(T, B, H, H, nb, args.repeats),
    }
    result["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
