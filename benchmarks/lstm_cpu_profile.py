"""Where the fused LSTM's time goes on CPU: one layer, forward + backward, split by phase.

For one LSTM layer at a PTB shape (x needs its gradient, as every layer but the first of a
stack) this prints ONE JSON line with median µs (wall clock, or ``--clock thread``), all
cases round-robin in one process, of

- ``layer``: the fused layer (compiled loops) and ``torch.nn.LSTM`` (one layer), forward +
  backward of ``y.sum()``;
- ``phases``: the fused layer's parts, each run alone on the layer's tensors: the whole-sequence
  GEMMs (input projection, input gradient, both weight gradients, the bias gradient's sum), the
  compiled time loops forward and backward, and within them the gate math alone (the loops run
  with ``recurrent=False``: no recurrent GEMM); so ``recurrent_gemms_*`` = loop − gate math −
  packing, and ``rest`` = layer − all phases (autograd, weight layout, buffers, Python);
- ``gemm_us``: each GEMM of the layer at its shape through MKL (``addmm``) and through oneDNN
  (plain, and with the weight prepacked): which library is faster here for which GEMM.

    python benchmarks/lstm_cpu_profile.py --threads 1
    python benchmarks/lstm_cpu_profile.py --threads 1 --clock thread     # on a busy machine
    python benchmarks/lstm_cpu_profile.py --threads 2 --shape medium --variant peephole
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from cells import CLOCKS, SHAPES, VARIANTS, machine  # beside this script

from unroll.nn.kernels import lstm_cpu
from unroll.nn.kernels.lstm_fused import (
    _kernel_weights,
    gemm_nt,
    onednn_packed_weight,
    onednn_packing_pays,
    weight_gradient,
)
from unroll.nn.layers import LSTM


def median_us(cases: dict, repeats: int, clock=time.perf_counter) -> dict:
    """Median µs per call of each case; repeats go round-robin over the cases so that load
    from other processes drifts over all of them alike."""
    for fn in cases.values():
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for key, fn in cases.items():
            t0 = clock()
            fn()
            times[key].append((clock() - t0) * 1e6)
    return {k: statistics.median(v) for k, v in times.items()}


def layer_cases(fused: LSTM, ref: torch.nn.LSTM, x: torch.Tensor) -> dict:
    def step_of(module):
        def step() -> None:
            module.zero_grad(set_to_none=True)
            x.grad = None
            module(x)[0].sum().backward()

        return step

    return {"layer/fused": step_of(fused), "layer/torch.nn.LSTM": step_of(ref)}


def phase_cases(fused: LSTM, x: torch.Tensor) -> tuple[dict, list[str]]:
    """The fused layer's phases on its own tensors (kernel layout, as `LSTMFunction` runs them).
    Also the names of the cases that copy the gate buffer A first (its time is subtracted)."""
    T, B, C = x.shape
    H = fused.hidden_size
    p = {k: v.detach() for k, v in fused.named_parameters()}  # no autograd in the phases
    w_ih, w_hh, bias = _kernel_weights(
        p["weight_ih_l0"],
        p["weight_hh_l0"],
        p.get("bias_ih_l0"),
        p.get("bias_hh_l0"),
        fused.forget_bias,
        fused.coupled,
    )
    w_ih, w_hh = w_ih.contiguous(), w_hh.contiguous()
    peep_in = peep_o = None
    if "weight_cf_l0" in p:  # peepholes: (nb - 2, H) rows ci, cf, or cf alone when coupled
        cf, co = p["weight_cf_l0"], p["weight_co_l0"]
        peep_in = cf.unsqueeze(0) if fused.coupled else torch.stack((p["weight_ci_l0"], cf))
        peep_o = co.contiguous()
    G = w_hh.shape[0]
    x2 = x.detach().reshape(T * B, C)
    h0, c0 = torch.zeros(B, H), torch.zeros(B, H)
    A0 = gemm_nt(x2, w_ih, bias).view(T, B, G)
    A = A0.clone()
    Cs, TC, Y = (torch.empty(T, B, H) for _ in range(3))
    loops = lstm_cpu.loops()
    loops.forward(A, h0, c0, w_hh, peep_in, peep_o, Cs, TC, Y)  # the activations, for backward
    A_act = A.clone()
    dY, dG = torch.randn(T, B, H), torch.empty(T, B, G)
    dc = torch.zeros(B, H)
    dG2 = dG.view(T * B, G)
    H_prev = torch.cat((h0.unsqueeze(0), Y[:-1])).view(T * B, H)
    ops = torch.ops.unroll_lstm_cpu

    def fwd(recurrent: bool):
        def run() -> None:
            A.copy_(A0)
            if recurrent:
                loops.forward(A, h0, c0, w_hh, peep_in, peep_o, Cs, TC, Y)
            else:
                ops.forward(A, h0, c0, w_hh, None, peep_in, peep_o, Cs, TC, Y, recurrent=False)

        return run

    def bwd(recurrent: bool):
        def run() -> None:
            dc.zero_()
            if recurrent:
                loops.backward(A_act, Cs, TC, c0, w_hh, peep_in, peep_o, dY, None, dc, dG)
            else:
                args = (A_act, Cs, TC, c0, w_hh, None, peep_in, peep_o, dY, None, dc, dG)
                ops.backward(*args, recurrent=False)

        return run

    cases = {
        "copy_A": lambda: A.copy_(A0),
        "input_projection": lambda: gemm_nt(x2, w_ih, bias),
        "loops_forward": fwd(True),
        "gate_math_forward": fwd(False),
        "loops_backward": bwd(True),
        "gate_math_backward": bwd(False),
        "input_gradient": lambda: gemm_nt(dG2, w_ih.t()),
        "weight_gradients": lambda: (weight_gradient(dG2, x2), weight_gradient(dG2, H_prev)),
        "bias_gradient": lambda: dG2.sum(0),
    }
    if onednn_packing_pays(w_hh):  # what CompiledLoops does on each call at this size
        cases["packing"] = lambda: (
            onednn_packed_weight(w_hh, B),
            onednn_packed_weight(loops.transpose(w_hh), B),
        )
    return cases, ["loops_forward", "gate_math_forward"]


def gemm_alternatives(T: int, B: int, C: int, H: int, nb: int, repeats: int, clock) -> dict:
    """µs per call of each GEMM of the layer through MKL and oneDNN (plain and prepacked)."""
    lin = torch.ops.mkldnn._linear_pointwise
    pack = torch.ops.mkldnn._reorder_linear_weight
    G = nb * H
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    x2, w_ih, bias, dG2, w_hh = r(T * B, C), r(G, C), r(G), r(T * B, G), r(G, H)
    h, a, dg, dh = r(B, H), r(B, G), r(B, G), r(B, H)
    w_ih_packed, w_hh_packed = pack(w_ih, T * B), pack(w_hh, B)
    w_hh_t_packed = pack(w_hh.t().contiguous(), B)
    cases = {  # "GEMM (M x K)(K x N)/library": one call
        f"input_projection ({T * B}x{C})({C}x{G})": {
            "mkl": lambda: torch.addmm(bias, x2, w_ih.t()),
            "onednn": lambda: lin(x2, w_ih, bias, "none", [], ""),
            "onednn_packed": lambda: lin(x2, w_ih_packed, bias, "none", [], ""),
        },
        f"input_gradient ({T * B}x{G})({G}x{C})": {
            "mkl": lambda: dG2 @ w_ih,
            "onednn": lambda: lin(dG2, w_ih.t(), None, "none", [], ""),
        },
        f"weight_gradient ({G}x{T * B})({T * B}x{C})": {
            "mkl": lambda: dG2.t() @ x2,
            "onednn": lambda: lin(dG2.t(), x2.t(), None, "none", [], ""),
        },
        f"step_forward ({B}x{H})({H}x{G})": {
            "mkl": lambda: a.addmm_(h, w_hh.t()),
            "onednn": lambda: a.add_(lin(h, w_hh, None, "none", [], "")),
            "onednn_packed": lambda: a.add_(lin(h, w_hh_packed, None, "none", [], "")),
        },
        f"step_backward ({B}x{G})({G}x{H})": {
            "mkl": lambda: torch.addmm(dh, dg, w_hh, out=h),
            "onednn": lambda: torch.add(dh, lin(dg, w_hh.t(), None, "none", [], ""), out=h),
            "onednn_packed": lambda: torch.add(
                dh, lin(dg, w_hh_t_packed, None, "none", [], ""), out=h
            ),
        },
    }
    flat = {f"{gemm}/{lib}": fn for gemm, libs in cases.items() for lib, fn in libs.items()}
    us = median_us(flat, repeats, clock)
    out: dict[str, dict] = {}
    for key, v in us.items():
        gemm, lib = key.rsplit("/", 1)
        out.setdefault(gemm, {})[lib] = round(v, 1)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="standard")
    parser.add_argument("--repeats", type=int, default=20, help="timed repeats per case")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall (default), or thread: CPU time of this thread, steadier on a busy shared "
        "machine, meaningful only with --threads 1",
    )
    args = parser.parse_args(argv)
    if args.clock == "thread" and args.threads != 1:
        parser.error("--clock thread: needs --threads 1")
    clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    if lstm_cpu.loops() is None:
        parser.error(f"the compiled loops are not in use: {lstm_cpu.unavailable_reason()}")
    T, B, H, _ = SHAPES[args.shape]
    torch.manual_seed(0)
    x = torch.randn(T, B, H, requires_grad=True)
    fused = LSTM(H, H, impl="fused", **VARIANTS[args.variant])
    ref = torch.nn.LSTM(H, H)
    phases, copies_A = phase_cases(fused, x)
    us = median_us({**layer_cases(fused, ref, x), **phases}, args.repeats, clock)
    for key in copies_A:
        us[key] -= us["copy_A"]
    del us["copy_A"]
    us["recurrent_gemms_forward"] = us["loops_forward"] - us["gate_math_forward"]
    us["recurrent_gemms_backward"] = us["loops_backward"] - us["gate_math_backward"]
    if "packing" in us:
        us["recurrent_gemms_forward"] -= us["packing"]
    parts = ("input_projection", "loops_forward", "loops_backward", "input_gradient")
    parts += ("weight_gradients", "bias_gradient")
    us["rest"] = us["layer/fused"] - sum(us[k] for k in parts)
    nb = 3 if VARIANTS[args.variant].get("coupled") else 4
    result = {
        "benchmark": "lstm_cpu_profile",
        "machine": machine(torch.device("cpu")),
        "shape": {"T": T, "B": B, "C": H, "H": H, "variant": args.variant, "layers": 1},
        "metric": f"median µs ({args.clock} clock) per call, round-robin",
        "repeats": args.repeats,
        "layer_us": {k.split("/", 1)[1]: round(v, 1) for k, v in us.items() if "/" in k},
        "ratio_to_torch": round(us["layer/fused"] / us["layer/torch.nn.LSTM"], 3),
        "phases_us": {k: round(v, 1) for k, v in us.items() if "/" not in k},
        "gate_math_ns_per_unit": {  # per (step, batch row, hidden unit)
            d: round(us[f"gate_math_{d}"] * 1e3 / (T * B * H), 3) for d in ("forward", "backward")
        },
        "gemm_us": gemm_alternatives(T, B, H, H, nb, args.repeats, clock),
    }
    result["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
