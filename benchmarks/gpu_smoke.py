"""The GPU check's smoke phase: about a minute of checks that only a GPU can answer, one JSON
line per check as it finishes (``{"check": name, "ok": true|false|null, "seconds": s, ...}``;
null: does not apply on this device). A check that raises prints ``ok: false`` with the error,
and the next one runs.

    python benchmarks/gpu_smoke.py                  # on CUDA (benchmarks/gpu_check.sh runs it)
    python benchmarks/gpu_smoke.py --device cpu     # the same checks on the CPU, tiny sizes
                                                    # (Triton in its interpreter): DRY=1

Checks, in order:
  environment     torch, CUDA, cuDNN, Triton versions and the device's name
  flatten         a layer built with device="cuda" holds its weights in one cuDNN buffer, and
                  its forward does not warn that cuDNN compacts them
  lstm_dtype      per precision (fp32, tf32, bf16): the dtype unroll's LSTM really runs in
                  (meta.json's arithmetic), beside torch.nn.LSTM's under the same autocast
  lm_step         the captured training step (graphs=on: a CUDA graph) vs the plain one: loss
                  sums and parameters after 2 epochs of 3 steps
  lm_eval         the graphed evaluation vs the eager one: total NLL
  triton_float32, triton_bfloat16, triton_float16
                  the Triton time loops at the real block size (256 units per program), forward
                  and backward, against the Python loops in float64: ‖got − ref‖ / ‖ref‖ per
                  buffer (outputs poisoned with NaN first: every element must be written); then
                  twice more, so that on CUDA the graph cache captures and replays them: the
                  replay against the eager call, and whether the cache stayed on
  persistent      the persistent kernels (UNROLL_TRITON_PERSISTENT=1) with several programs,
                  so the grid barrier really runs, in a child process under a timeout (a
                  barrier that never opens hangs: the timeout says so)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Relative error bounds against float64 (the method: fp32 far under 1e-3, bf16 1e-3 to
# 1e-2; TF32 about 3e-4).
TOL = {"float32": 1e-4, "bfloat16": 3e-2, "float16": 5e-3, "tf32": 5e-3}


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def run_check(name: str, fn, *args) -> bool:
    t0 = time.perf_counter()
    try:
        record = fn(*args)
    except Exception as e:  # noqa: BLE001 - a broken check is a result, the next one runs
        record = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000]}
    emit({"check": name, **record, "seconds": round(time.perf_counter() - t0, 2)})
    return record.get("ok") is not False


def rel_err(got, want) -> float:
    got, want = got.double().cpu(), want.double().cpu()
    if not bool(got.isfinite().all()):
        return float("inf")  # NaN never passes: an element left unwritten (poisoned) or worse
    return float((got - want).norm() / want.norm().clamp_min(1e-300))


# --- the checks ------------------------------------------------------------------------------


def environment(device):
    import torch

    from unroll.engine.device import device_name

    info = {"ok": True, "device": device_name(device), "torch": torch.__version__}
    info["cuda"] = torch.version.cuda
    info["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(capability=f"{p.major}.{p.minor}", sms=p.multi_processor_count)
        info["memory_gib"] = round(p.total_memory / 2**30, 1)
    return info


def flatten(device):
    import torch

    import unroll

    if device.type != "cuda":
        return {"ok": None, "why": "cuDNN weights: CUDA only"}
    layer = unroll.LSTM(64, 64, 2, device=device)
    buffers = {w.untyped_storage().data_ptr() for w in layer._flat_weights}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layer(torch.randn(5, 3, 64, device=device))[0].sum().backward()
    compacted = [str(w.message)[:200] for w in caught if "contiguous" in str(w.message)]
    return {"ok": len(buffers) == 1 and not compacted, "buffers": len(buffers), "warns": compacted}


def lstm_dtype(device):
    import torch

    from unroll.engine.device import arithmetic, autocast_factory, matmul_precision

    result, ok = {}, True
    for precision in ("fp32", "tf32", "bf16"):
        with matmul_precision(device, precision):
            ours = arithmetic(device, precision)
            plain = torch.nn.LSTM(4, 4).to(device)
            with torch.no_grad(), autocast_factory(device, precision)():
                theirs = str(plain(torch.randn(3, 2, 4, device=device))[0].dtype)
        result[precision] = {**ours, "torch.nn.LSTM": theirs.removeprefix("torch.")}
        ok &= ours["lstm_dtype"] != "float16"
    return {"ok": ok, **result}


def _tiny_lm(device, quick):
    from unroll.recipes.lm import LMConfig

    return LMConfig(
        vocab_size=50 if quick else 1000,
        hidden_size=16 if quick else 256,
        num_layers=2,
        num_steps=5 if quick else 20,
        batch_size=4 if quick else 20,
        dropout=0.0,
        lr=0.5,
        clip=1.0,
        device=device.type,
    )


def lm_step(device, quick):
    from unroll.engine.device import matmul_precision

    cfg = _tiny_lm(device, quick)
    with matmul_precision(device, "fp32"):  # IEEE both ways: only rounding may differ
        return _lm_step(cfg, device)


def _lm_step(cfg, device):
    import dataclasses

    import torch

    from unroll.engine.loop import set_lr
    from unroll.recipes.lm import build_model
    from unroll.recipes.lm.steps import build_train_step

    g = torch.Generator().manual_seed(1)
    shape = (3, cfg.batch_size, cfg.num_steps)
    X = torch.randint(cfg.vocab_size, shape, generator=g).to(device)
    Y = torch.randint(cfg.vocab_size, shape, generator=g).to(device)
    runs = {}
    for graphs in ("on", "off"):
        torch.manual_seed(0)
        model = build_model(cfg, cfg.vocab_size).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
        step = build_train_step(dataclasses.replace(cfg, graphs=graphs), model, opt, device)
        sums = []
        for lr in (0.5, 0.25):  # the lr changes between epochs: refilled into the graph
            set_lr(opt, lr)
            state = model.init_state(cfg.batch_size, device)
            total = torch.zeros((), dtype=torch.float64, device=device)
            for i in range(X.shape[0]):
                loss, state = step(X[i], Y[i], state)
                total += loss
            sums.append(float(total))
        runs[graphs] = sums, torch.cat([p.detach().flatten() for p in model.parameters()])
    (s_on, p_on), (s_off, p_off) = runs["on"], runs["off"]
    err = rel_err(p_on, p_off)
    loss_err = max(abs(a - b) / abs(b) for a, b in zip(s_on, s_off))
    return {"ok": err < 1e-5 and loss_err < 1e-5, "param_rel_err": err, "loss_rel_err": loss_err}


def lm_eval(device, quick):
    import torch

    from unroll.engine.device import matmul_precision
    from unroll.recipes.lm import build_model, evaluate_ids

    cfg = _tiny_lm(device, quick)
    torch.manual_seed(0)
    model = build_model(cfg, cfg.vocab_size).to(device)
    ids = torch.randint(cfg.vocab_size, (1003 if quick else 20003,))
    with matmul_precision(device, "fp32"):
        eager = evaluate_ids(model, ids, 2, 1, chunk_steps=40, graphs=False)
        graphed = evaluate_ids(model, ids, 2, 1, chunk_steps=40, graphs=True)
    err = abs(graphed[0] - eager[0]) / abs(eager[0])
    return {"ok": err < 1e-5 and graphed[1] == eager[1], "nll_rel_err": err, "tokens": eager[1]}


def _loops_inputs(T, B, H, dtype, device, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    r = [torch.randn(*s, generator=g) * 0.5 for s in ((T, B, 4 * H), (B, H), (B, H))]
    r += [torch.randn(4 * H, H, generator=g) / H**0.5, torch.randn(T, B, H, generator=g)]
    return [v.to(device, dtype) for v in r]


def _run_loops(loops, A, h0, c0, w_hh, dY):
    import torch

    a = A.clone()
    Cs, TC, Y = (torch.full_like(dY, float("nan")) for _ in range(3))  # poisoned: all written?
    loops.forward(a, h0, c0, w_hh, None, None, Cs, TC, Y)
    dc, dG = torch.zeros_like(c0), torch.full_like(a, float("nan"))
    loops.backward(a, Cs, TC, c0, w_hh, None, None, dY, None, dc, dG)
    return {"A": a, "Cs": Cs, "TC": TC, "Y": Y, "dc": dc, "dG": dG}


def triton_loops(device, quick, dtype_name):
    import torch

    from unroll.nn.kernels import lstm_triton
    from unroll.nn.kernels.lstm_fused import PythonLoops

    if lstm_triton.triton is None:
        return {"ok": None, "why": lstm_triton.unavailable_reason(device)}
    dtype = getattr(torch, dtype_name)
    T, B, H = (3, 2, 160) if quick else (20, 20, 650)  # B·H over 256: several full programs
    torch.backends.cuda.matmul.allow_tf32 = False
    inputs = _loops_inputs(T, B, H, dtype, device)
    got = _run_loops(lstm_triton.TritonLoops, *inputs)  # eager (a shape's first call)
    want = _run_loops(PythonLoops, *(t.double() for t in inputs))
    errors = {k: rel_err(got[k], want[k]) for k in want}
    # On CUDA the second call captures the loops into the graph cache, the third replays them
    for _ in range(2):
        again = _run_loops(lstm_triton.TritonLoops, *inputs)
    cached = max(rel_err(again[k], got[k]) for k in got)
    graphs = lstm_triton.graphs
    cache = graphs.disabled or ("replayed" if graphs.entries else "not used (eager)")
    block = lstm_triton._step_config(inputs[0], H, None)["BLOCK"]
    programs = -(-B * H // block)
    why = None if device.type != "cuda" else lstm_triton.unavailable_reason(device, dtype)
    ok = max(errors.values()) < TOL[dtype_name] and block == lstm_triton.MAX_BLOCK
    ok = ok and cached < TOL[dtype_name] and not graphs.disabled
    return {"ok": ok, "T": T, "B": B, "H": H, "block": block, "programs": programs,
            "rel_err": errors, "probe": why or "triton", "graph_cache": cache,
            "cache_vs_eager_rel_err": cached}  # fmt: skip


def persistent_child(device, quick):
    """In its own process (`persistent`): the persistent kernels with several programs."""
    import torch

    from unroll.nn.kernels import lstm_triton
    from unroll.nn.kernels.lstm_fused import PythonLoops

    if lstm_triton.triton is None:
        return {"ok": None, "why": lstm_triton.unavailable_reason(device)}
    os.environ[lstm_triton.PERSISTENT_ENV] = "1"
    os.environ[lstm_triton.GRAPHS_ENV] = "0"
    torch.backends.cuda.matmul.allow_tf32 = True  # tl.dot in TF32: what runs by default
    # the interpreter runs programs one after another: one program only (H ≤ 16) there
    T, B, H = (3, 2, 16) if device.type != "cuda" else (8, 8, 64)
    inputs = _loops_inputs(T, B, H, torch.float32, device)
    config = lstm_triton._persistent_config(inputs[0], H, None)
    if config is None:
        return {"ok": False, "error": f"the persistent kernels do not apply at H={H}, B={B}"}
    programs = config[0][0]
    got = _run_loops(lstm_triton.TritonLoops, *inputs)
    want = _run_loops(PythonLoops, *(t.double() for t in inputs))
    errors = {k: rel_err(got[k], want[k]) for k in want}
    ok = max(errors.values()) < TOL["tf32"] and (programs > 1 or device.type != "cuda")
    return {"ok": ok, "T": T, "B": B, "H": H, "programs": programs, "rel_err": errors}


def persistent(device, quick, deadline):
    timeout = max(5.0, min(45.0, deadline - time.monotonic()))
    command = [sys.executable, __file__, "--device", str(device), "--child", "persistent"]
    command += ["--quick"] if quick else []
    try:
        job = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout} s: a grid barrier that never "
                "opens (or a compile that long)"}  # fmt: skip
    lines = [line for line in job.stdout.splitlines() if line.startswith("{")]
    if job.returncode != 0 or not lines:
        return {"ok": False, "error": f"exit {job.returncode}: {job.stderr[-1500:]}"}
    record = json.loads(lines[-1])
    record.pop("check", None)
    record.pop("seconds", None)
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes (the default on the CPU)")
    p.add_argument(
        "--budget",
        type=float,
        default=70.0,
        help="seconds for all checks: the persistent child's timeout is what is left (≤ 45)",
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device is None or args.device == "cpu":
        import torch

        if args.device is None:
            args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cpu":
        # Triton's interpreter runs the kernels on CPU tensors; set before Triton is imported
        os.environ["TRITON_INTERPRET"] = "1"
    import torch

    deadline = time.monotonic() + args.budget - 3
    device = torch.device(args.device)
    quick = args.quick or device.type != "cuda"
    if args.child == "persistent":
        run_check("persistent", persistent_child, device, quick)
        return 0
    checks = [
        ("environment", environment, device),
        ("flatten", flatten, device),
        ("lstm_dtype", lstm_dtype, device),
        ("lm_step", lm_step, device, quick),
        ("lm_eval", lm_eval, device, quick),
        ("triton_float32", triton_loops, device, quick, "float32"),
        ("triton_bfloat16", triton_loops, device, quick, "bfloat16"),
        ("triton_float16", triton_loops, device, quick, "float16"),
        ("persistent", persistent, device, quick, deadline),
    ]
    failed = [name for name, fn, *rest in checks if not run_check(name, fn, *rest)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
