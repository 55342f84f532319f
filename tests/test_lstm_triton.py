"""The Triton time loops of the fused LSTM (`unroll/nn/kernels/lstm_triton.py`).

Held equal to the reference cell (`unroll.LSTM(impl="reference")`, run in float64) and to the
Python loops: outputs and all gradients, every variant, with and without variable lengths,
T = 1, float32, float64 (and gradcheck) and bfloat16 (a stated tolerance); buffer by buffer
against the Python loops; the graph cache's bookkeeping; the one-time choice.

Without a GPU the kernels run in Triton's interpreter on CPU tensors: TRITON_INTERPRET=1 must be
set before Triton is imported, so this module sets it (only where there is no CUDA device;
nothing else imports Triton on such a machine). With a GPU the same tests run the compiled
kernels on CUDA tensors. The interpreter is slow: shapes stay tiny.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

import unroll  # noqa: E402
from unroll.nn.kernels import lstm_fused, lstm_triton  # noqa: E402
from unroll.nn.kernels.lstm_fused import PythonLoops, lstm_sequence  # noqa: E402
from unroll.nn.kernels.lstm_triton import GraphCache, TritonLoops  # noqa: E402

pytestmark = pytest.mark.triton
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
T, B, C, H = 5, 3, 4, 13  # B·H = 39: three programs of 16 units, the last one partly masked
LENGTHS = [5, 2, 1]

VARIANTS = {
    "standard": {},
    "forget_bias": {"forget_bias": 1.0},
    "peephole": {"peephole": True},
    "coupled": {"coupled": True},
    "peephole+coupled": {"peephole": True, "coupled": True, "forget_bias": 0.5},
}


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Several programs per step even at these tiny shapes (the masks and the unit index)."""
    if DEVICE == "cpu":
        from triton.runtime.interpreter import InterpretedFunction

        assert isinstance(lstm_triton._forward_step, InterpretedFunction), (
            "lstm_triton was imported before TRITON_INTERPRET=1 was set"
        )
    monkeypatch.setattr(lstm_triton, "MAX_BLOCK", 16)


@pytest.fixture
def triton_time_loops(monkeypatch):
    """The layers' fused path runs the Triton loops (as `time_loops` picks them on CUDA)."""
    monkeypatch.setattr(lstm_fused, "time_loops", lambda device, dtype: TritonLoops)


def layer_run(lstm, x, state, lengths, probes):
    """Outputs and the gradients of every input and parameter for sum(out ⊙ probe)."""
    leaves = [x, *state, *lstm.parameters()]
    for t in leaves:
        t.grad = None
    y, (h, c) = lstm(x, state, lengths=lengths)
    outs = [y, h, c]
    loss = sum((o * p.to(o.dtype)).sum() for o, p in zip(outs, probes))
    grads = torch.autograd.grad(loss, leaves)
    return [o.detach() for o in outs] + list(grads)


def make_case(dtype, seed=0, layers=1, bidirectional=False, steps=T, **variant):
    g = torch.Generator().manual_seed(seed)
    D = 2 if bidirectional else 1
    lstm = unroll.LSTM(C, H, layers, bidirectional=bidirectional, impl="fused", **variant)
    with torch.no_grad():
        for p in lstm.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.4)
    x = torch.randn(steps, B, C, generator=g)
    state = tuple(torch.randn(layers * D, B, H, generator=g) for _ in range(2))
    probes = [torch.randn(steps, B, D * H, generator=g)]
    probes += [torch.randn(layers * D, B, H, generator=g) for _ in range(2)]

    def on(dtype, impl):
        m = unroll.LSTM(
            C, H, layers, bidirectional=bidirectional, impl=impl, device=DEVICE, dtype=dtype,
            **variant,
        )  # fmt: skip
        m.load_state_dict(lstm.state_dict())
        inputs = [t.to(DEVICE, dtype).requires_grad_(True) for t in (x, *state)]
        return m, inputs[0], tuple(inputs[1:])

    return on, probes


def run_three(dtype, lengths, monkeypatch, **case):
    """(Triton loops, Python loops, reference cell in float64) results of one case."""
    on, probes = make_case(dtype, **case)
    lengths = None if lengths is None else torch.tensor(lengths)
    results = []
    for loops, impl, dt in (
        (TritonLoops, "fused", dtype),
        (PythonLoops, "fused", dtype),
        (None, "reference", torch.float64),
    ):
        monkeypatch.setattr(lstm_fused, "time_loops", lambda device, dtype, loops=loops: loops)
        m, x, state = on(dt, impl)
        results.append([r.double().cpu() for r in layer_run(m, x, state, lengths, probes)])
    return results


NAMES = ["y", "h_n", "c_n", "x", "h0", "c0"]


def assert_all_close(got, want, rtol, atol, what):
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        name = NAMES[k] if k < len(NAMES) else f"parameter {k - len(NAMES)}"
        torch.testing.assert_close(
            a, b, rtol=rtol, atol=atol, msg=lambda m, n=name: f"{what} {n}: {m}"
        )


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_float32_equals_reference_and_python_loops(variant, lengths, monkeypatch):
    got, python, reference = run_three(torch.float32, lengths, monkeypatch, **VARIANTS[variant])
    assert_all_close(got, reference, 1e-5, 1e-5, "vs the reference cell:")
    assert_all_close(got, python, 1e-5, 1e-5, "vs the Python loops:")


@pytest.mark.parametrize("variant", ["standard", "peephole+coupled"])
def test_float64_equals_reference_closely(variant, monkeypatch):
    got, _, reference = run_three(torch.float64, LENGTHS, monkeypatch, **VARIANTS[variant])
    assert_all_close(got, reference, 1e-12, 1e-12, "vs the reference cell:")


def test_two_layers_bidirectional_with_lengths(monkeypatch):
    case = dict(layers=2, bidirectional=True, peephole=True, forget_bias=1.0)
    got, python, reference = run_three(torch.float32, LENGTHS, monkeypatch, **case)
    assert_all_close(got, reference, 1e-5, 1e-5, "vs the reference cell:")
    assert_all_close(got, python, 1e-5, 1e-5, "vs the Python loops:")


# bfloat16: 8 significant bits. Stated tolerance: every output and gradient within
# BF16_TOL · (1 + |reference|) of the float64 reference, and the largest error no larger than the
# Python loops' own in bfloat16 plus one bfloat16 step (2⁻⁸) at the reference's scale, the
# Python loops' error doubled (on average the Triton loops' is smaller: they carry the cell state
# and its gradient in float32 between steps and compute each step in float32, where the Python
# loops round after every op; a weight gradient sums T·B rounded terms either way). (In the
# kernels round to bfloat16 by bit arithmetic, to nearest even as the GPU does: the
# interpreter's own conversion truncates, which makes every error about twice as large.)
BF16_TOL = 0.05


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_bfloat16_within_stated_tolerance(variant, monkeypatch):
    got, python, reference = run_three(torch.bfloat16, LENGTHS, monkeypatch, **VARIANTS[variant])
    for k, (a, p, r) in enumerate(zip(got, python, reference, strict=True)):
        err, err_python = (a - r).abs(), (p - r).abs()
        assert (err <= BF16_TOL * (1 + r.abs())).all(), (k, err.max())
        scale = r.abs().max().item()
        assert err.max() <= 2 * err_python.max() + scale * 2**-8, (k, err.max(), err_python.max())


@pytest.mark.parametrize("variant", ["peephole", "peephole+coupled"])
def test_single_step(variant, monkeypatch):
    got, python, reference = run_three(
        torch.float32, None, monkeypatch, steps=1, **VARIANTS[variant]
    )
    assert_all_close(got, reference, 1e-5, 1e-5, "T = 1, vs the reference cell:")
    assert_all_close(got, python, 1e-5, 1e-5, "T = 1, vs the Python loops:")


@pytest.mark.parametrize("coupled", [False, True])
def test_gradcheck_float64(coupled):
    g = torch.Generator().manual_seed(7)
    Tg, Bg, Cg, Hg = 3, 2, 2, 3

    def r(*shape):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * 0.7).to(DEVICE)

    tensors = [r(Tg, Bg, Cg), r(Bg, Hg), r(Bg, Hg), r(4 * Hg, Cg), r(4 * Hg, Hg)]
    tensors += [r(4 * Hg), r(4 * Hg), r(Hg), r(Hg), r(Hg)]
    if coupled:
        tensors[7] = None  # weight_ci is unused when coupled
    leaves = [t.requires_grad_(True) for t in tensors if t is not None]
    lengths = torch.tensor([3, 1])

    def f(*ts):
        it = iter(ts)
        args = [None if t is None else next(it) for t in tensors]
        return lstm_sequence(
            *args, forget_bias=1.0, coupled=coupled, lengths=lengths, loops=TritonLoops
        )

    assert torch.autograd.gradcheck(f, leaves, fast_mode=True)


def loops_buffers(loops, A, h0, c0, w_hh, peep_in, peep_o, dY, dCx, dc_n):
    """Every buffer one loops object writes, forward then backward."""
    A = A.clone()
    Cs, TC, Y = (torch.empty_like(dY) for _ in range(3))
    loops.forward(A, h0, c0, w_hh, peep_in, peep_o, Cs, TC, Y)
    dc, dG = dc_n.clone(), torch.empty_like(A)
    loops.backward(A, Cs, TC, c0, w_hh, peep_in, peep_o, dY, dCx, dc, dG)
    return {"A": A, "Cs": Cs, "TC": TC, "Y": Y, "dc": dc, "dG": dG}


def loops_inputs(nb, peephole, with_dcx, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.5):
        return (torch.randn(*shape, generator=g) * scale).to(DEVICE, dtype)

    A, h0, c0, w_hh = r(T, B, nb * H), r(B, H), r(B, H), r(nb * H, H)
    peep_in, peep_o = (r(nb - 2, H), r(H)) if peephole else (None, None)
    dY, dCx = r(T, B, H, scale=1.0), r(T, B, H, scale=1.0) if with_dcx else None
    dc_n = torch.zeros_like(c0) if with_dcx else r(B, H, scale=1.0)
    return A, h0, c0, w_hh, peep_in, peep_o, dY, dCx, dc_n


@pytest.mark.parametrize(
    "nb,peephole,with_dcx", [(4, True, True), (3, True, False), (4, False, False)]
)
def test_buffers_equal_the_python_loops(nb, peephole, with_dcx):
    """The same buffers with the same contents (activations in A, c, tanh c, h, dG, dc_0)."""
    inputs = loops_inputs(nb, peephole, with_dcx)
    got, want = (loops_buffers(lp, *inputs) for lp in (TritonLoops, PythonLoops))
    for k in want:
        torch.testing.assert_close(
            got[k], want[k], rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}"
        )


@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")
def test_activations_accurate_and_saturate():
    """h0 = 0, W_hh = 0, c0 = 0: A holds σ/tanh of the raw pre-activations after the step."""
    a = torch.linspace(-60, 60, 4 * 16 * 3).view(1, 3, 4 * 16).to(DEVICE)
    a[0, 0, :4] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0])
    z = torch.zeros(3, 16, device=DEVICE)
    A = a.clone()
    Cs, TC, Y = (torch.empty(1, 3, 16, device=DEVICE) for _ in range(3))
    TritonLoops.forward(A, z, z, torch.zeros(64, 16, device=DEVICE), None, None, Cs, TC, Y)
    A4, a4 = A.view(3, 4, 16).double(), a.view(3, 4, 16).double()
    for k, fn in enumerate((torch.sigmoid, torch.sigmoid, torch.tanh, torch.sigmoid)):
        want = fn(a4[:, k])
        ok = ~want.isnan()
        assert ((A4[:, k] - want).abs()[ok] <= 3e-7 * (1 + want.abs()[ok])).all(), k
    assert A4[0, 0, 0].isnan() and A4[0, 0, 1] == 1 and A4[0, 0, 2] == 0 and A4[0, 0, 3] == 0.5
    g = A4[:, 2]
    assert torch.equal(g[a4[:, 2] > 10], torch.ones_like(g[a4[:, 2] > 10]))
    assert torch.equal(g[a4[:, 2] < -10], -torch.ones_like(g[a4[:, 2] < -10]))


# --- the persistent kernels (opt-in): one launch per pass, W_hh on chip, a grid barrier per step.
# The interpreter runs a grid's programs one after another, so a barrier can only be passed
# with one program: these tests run H ≤ 16 (one program) and hold the kernels' math equal to
# the reference; the barrier between programs is compiled (above) but has not run anywhere.


@pytest.fixture
def persistent(monkeypatch):
    monkeypatch.setenv("UNROLL_TRITON_PERSISTENT", "1")
    A = torch.empty(T, B, 4 * H, device=DEVICE)
    assert lstm_triton._persistent_config(A, H, None) is not None  # the tests below take it


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_persistent_float32_equals_reference_and_python_loops(variant, persistent, monkeypatch):
    got, python, reference = run_three(torch.float32, LENGTHS, monkeypatch, **VARIANTS[variant])
    assert_all_close(got, reference, 1e-5, 1e-5, "vs the reference cell:")
    assert_all_close(got, python, 1e-5, 1e-5, "vs the Python loops:")


def test_persistent_float64_and_bfloat16(persistent, monkeypatch):
    variant = VARIANTS["peephole+coupled"]
    got, _, reference = run_three(torch.float64, None, monkeypatch, steps=1, **variant)
    assert_all_close(got, reference, 1e-12, 1e-12, "float64, T = 1:")
    got, python, reference = run_three(torch.bfloat16, LENGTHS, monkeypatch, **VARIANTS["peephole"])
    for k, (a, p, r) in enumerate(zip(got, python, reference, strict=True)):
        err, err_python = (a - r).abs(), (p - r).abs()
        assert (err <= BF16_TOL * (1 + r.abs())).all(), (k, err.max())
        scale = r.abs().max().item()
        assert err.max() <= 2 * err_python.max() + scale * 2**-8, (k, err.max(), err_python.max())


def test_persistent_buffers_equal_the_python_loops(persistent):
    inputs = loops_inputs(3, True, True)
    got, want = (loops_buffers(lp, *inputs) for lp in (TritonLoops, PythonLoops))
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6, msg=k)


def test_persistent_applies_only_where_it_fits(monkeypatch):
    def fits(T_, B_, H_, nb=4):
        return lstm_triton._persistent_config(torch.empty(T_, B_, nb * H_), H_, None) is not None

    assert not fits(5, 3, 13)  # off unless asked for
    monkeypatch.setenv("UNROLL_TRITON_PERSISTENT", "1")
    assert fits(5, 3, 13) and fits(5, 64, 16) and not fits(5, 65, 16)  # batch ≤ 64
    monkeypatch.setattr(lstm_triton, "_resident_programs", lambda device: 132)  # an H100/H200
    assert fits(35, 20, 256) and not fits(35, 20, 257)  # W_hh tile: H ≤ 256
    monkeypatch.setattr(lstm_triton, "_resident_programs", lambda device: 8)
    assert fits(35, 20, 128) and not fits(35, 20, 129)  # every program resident at once


# Compiles every step kernel specialization for the GPU (Triton's own compiler down to a cubin,
# no GPU needed): the interpreter runs the kernels as Python and does not check what only the
# compiler does (types, constexpr branches, what Triton's language allows).
COMPILE_FOR_GPU = """
import itertools, sys, warnings
warnings.simplefilter("ignore")
import triton, triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from unroll.nn.kernels import lstm_triton as lt

def compile(kernel, target, dt, wide, **const):
    sig = {}
    for name in kernel.arg_names:
        if name in const:
            sig[name] = "constexpr"
        elif name in ("N", "H", "G", "T", "B"):
            sig[name] = "i32"
        elif name == "sync":
            sig[name] = "*i32"
        elif name in ("c_next", "dc") or (name == "c_prev" and const.get("CARRY")):
            sig[name] = "*" + wide
        else:
            sig[name] = "*" + dt
    triton.compile(ASTSource(fn=kernel, signature=sig, constexprs=const), target=target)

def common(dt, coupled, peep):
    acc = tl.float64 if dt == "fp64" else tl.float32
    const = dict(COUPLED=coupled, PEEP=peep, ACC=acc, INTERP=False)
    return "fp64" if dt == "fp64" else "fp32", const

if sys.argv[1] == "step":
    cases = [(90, dt, c, p) for dt in ("fp32", "bf16") for c in (0, 1) for p in (0, 1)]
    cases += [(90, "fp64", 1, 1), (90, "fp16", 0, 1), (80, "bf16", 1, 1)]
    for cc, dt, coupled, peep in cases:
        target = GPUTarget("cuda", cc, 32)
        wide, const = common(dt, bool(coupled), bool(peep))
        carry = dt in ("bf16", "fp16")
        compile(lt._forward_step, target, dt, wide, CARRY=carry, BLOCK=256, **const)
        compile(lt._backward_step, target, dt, wide, HAS_DCX=True, BLOCK=256, **const)
else:  # the persistent kernels (slow to compile: tl.dot)
    cases = [(90, "bf16", 0, 1, "ieee"), (90, "bf16", 1, 1, "ieee"), (90, "fp32", 0, 1, "tf32")]
    cases += [(90, "fp32", 1, 0, "ieee"), (90, "fp64", 0, 1, "ieee")]
    for cc, dt, coupled, peep, precision in cases:
        target = GPUTarget("cuda", cc, 32)
        wide, const = common(dt, bool(coupled), bool(peep))
        const.update(BB=32, BH=16, BK=256, PRECISION=precision)
        compile(lt._persistent_forward, target, dt, wide, **const)
        compile(lt._persistent_backward, target, dt, wide, HAS_DCX=True, **const)
print("compiled", len(cases))
"""


def compile_for_gpu(which: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    command = [sys.executable, "-c", COMPILE_FOR_GPU, which]
    return subprocess.run(command, env=env, capture_output=True, text=True)


def test_step_kernels_compile_for_the_gpu():
    run = compile_for_gpu("step")
    assert run.returncode == 0 and "compiled 11" in run.stdout, run.stderr[-3000:]


@pytest.mark.slow
def test_persistent_kernels_compile_for_the_gpu():
    """About a minute and a half on 2 cores (float32 "ieee" tl.dot compiles to FMAs, slowly)."""
    run = compile_for_gpu("persistent")
    assert run.returncode == 0 and "compiled 5" in run.stdout, run.stderr[-3000:]


class Recorder:
    """A stand-in for CUDA-graph capture: the replay calls the recorded function again, which is
    what a graph does — on the buffers it was captured with, whatever the caller passes next."""

    def __init__(self):
        self.captures = self.replays = 0

    def capture(self, fn):
        self.captures += 1

        def replay():
            self.replays += 1
            fn()

        return replay


def test_graph_cache_replays_on_its_own_buffers(monkeypatch):
    rec = Recorder()
    cache = GraphCache(rec.capture, lambda t: ("stream", 0), capacity=2)
    monkeypatch.setattr(lstm_triton, "graphs", cache)
    calls = [loops_inputs(4, True, True, seed=s) for s in range(4)]
    for k, inputs in enumerate(calls):
        got = loops_buffers(TritonLoops, *inputs)
        monkeypatch.setattr(lstm_triton, "graphs", GraphCache(rec.capture, lambda t: None))
        want = loops_buffers(TritonLoops, *inputs)  # eager
        monkeypatch.setattr(lstm_triton, "graphs", cache)
        for name in want:  # a replay that read the first call's tensors would differ here
            torch.testing.assert_close(
                got[name], want[name], rtol=0, atol=0, msg=f"call {k} {name}"
            )
    # forward and backward: eager on the first call, captured on the second, replayed after
    assert (rec.captures, rec.replays, len(cache.entries)) == (2, 4, 2)
    loops_buffers(TritonLoops, *loops_inputs(3, False, False))  # other shapes: seen, not captured
    loops_buffers(TritonLoops, *loops_inputs(3, False, False))  # captured; the oldest evicted
    assert (rec.captures, len(cache.entries)) == (4, 2)


def test_graph_cache_turns_off_when_a_capture_fails(monkeypatch):
    def failing(fn):
        raise RuntimeError("operation not permitted when stream is capturing")

    cache = GraphCache(failing, lambda t: ("stream", 0))
    monkeypatch.setattr(lstm_triton, "graphs", cache)
    inputs = loops_inputs(3, True, False)
    with pytest.warns(UserWarning, match="graph cache is off for this process: capture failed"):
        got = [loops_buffers(TritonLoops, *inputs) for _ in range(3)]  # eager, failed, eager
    assert "capture failed (RuntimeError" in cache.disabled and not cache.entries
    for r in got[1:]:
        for k in r:
            torch.testing.assert_close(r[k], got[0][k], rtol=0, atol=0)


def test_graph_cache_steps_aside_when_capturing_or_off(monkeypatch):
    cache = lstm_triton.graphs
    assert cache.context(torch.zeros(1)) is None  # CPU tensors: eager
    if torch.cuda.is_available():
        assert cache.context(torch.zeros(1, device="cuda")) is not None
        monkeypatch.setenv("UNROLL_TRITON_GRAPHS", "0")
        assert cache.context(torch.zeros(1, device="cuda")) is None


def test_choice_and_reasons(monkeypatch):
    cpu = torch.device("cpu")
    assert lstm_fused.time_loops(cpu, torch.bfloat16) is PythonLoops
    assert "CUDA" in lstm_triton.unavailable_reason(cpu)
    monkeypatch.setenv("UNROLL_TRITON", "0")
    assert lstm_triton.loops("cuda", torch.float32, PythonLoops) is None
    assert lstm_triton.unavailable_reason() == "turned off by UNROLL_TRITON=0"
    monkeypatch.delenv("UNROLL_TRITON")
    if DEVICE == "cpu":  # the interpreter never serves CUDA tensors
        assert "TRITON_INTERPRET" in lstm_triton._why_not(torch.device("cuda", 0), torch.float32)
        assert lstm_triton.loops("cuda", torch.float32, PythonLoops) is None


def test_probe_agrees_and_catches_a_wrong_kernel():
    assert lstm_triton._probe(torch.device(DEVICE), torch.float32, PythonLoops) is None

    class Wrong(PythonLoops):
        @staticmethod
        def backward(A, Cs, TC, c0, w_hh, peep_in, peep_o, dY, dCx, dc, dG):
            PythonLoops.backward(A, Cs, TC, c0, w_hh, peep_in, peep_o, dY, dCx, dc, dG)
            dG[0] *= 1.01

    assert "disagrees" in lstm_triton._probe(torch.device(DEVICE), torch.float32, Wrong)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_time_loops_and_capture_of_a_whole_layer():
    """On CUDA `impl="auto"` variants run the Triton loops, and a layer's forward + backward is
    captured by an outer CUDA graph and replays to the eager results."""
    assert lstm_fused.time_loops(torch.device("cuda"), torch.float32) is TritonLoops, (
        lstm_triton.unavailable_reason()
    )
    torch.manual_seed(0)
    lstm = unroll.LSTM(16, 32, 2, peephole=True, coupled=True, device="cuda")
    x = torch.randn(7, 4, 16, device="cuda", requires_grad=True)

    def step():
        y, _ = lstm(x)
        y.square().sum().backward()

    step()  # eager (and warm-up)
    want = [p.grad.clone() for p in lstm.parameters()] + [x.grad.clone()]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    for t in [*lstm.parameters(), x]:
        t.grad = None
    with torch.cuda.graph(graph):
        step()
    graph.replay()
    got = [p.grad for p in lstm.parameters()] + [x.grad]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_cache_equals_eager():
    inputs = loops_inputs(4, True, True)
    lstm_triton.graphs.clear()
    results = [loops_buffers(TritonLoops, *inputs) for _ in range(4)]  # eager, capture, replays
    assert len(lstm_triton.graphs.entries) == 2
    for r in results[1:]:
        for k in r:
            torch.testing.assert_close(r[k], results[0][k], msg=k)


# --- the GPU's block size: the tests above shrink it to 16 units per program; the GPU runs 256.
@pytest.mark.parametrize(
    "dtype, tol",
    [(torch.float32, 1e-5), (torch.bfloat16, 1e-2), (torch.float16, 2e-3)],
    ids=["float32", "bfloat16", "float16"],
)
@pytest.mark.parametrize("nb, peephole", [(4, False), (3, True)], ids=["standard", "coupled+peep"])
def test_real_block_size_several_programs(dtype, tol, nb, peephole, monkeypatch):
    """BLOCK = MAX_BLOCK = 256 at B·H = 320: two programs, the second partly masked; forward
    and backward buffers against the Python loops in float64 (‖got − ref‖ / ‖ref‖), outputs
    poisoned with NaN first so that an unwritten element fails. float16 too (the GPU tests are
    the only other place it runs)."""
    monkeypatch.setattr(lstm_triton, "MAX_BLOCK", 256)
    T_, B_, H_ = 3, 2, 160
    g = torch.Generator().manual_seed(3)
    r = [torch.randn(*s, generator=g) * 0.5 for s in ((T_, B_, nb * H_), (B_, H_), (B_, H_))]
    r += [torch.randn(nb * H_, H_, generator=g) / H_**0.5, torch.randn(T_, B_, H_, generator=g)]
    r += [torch.randn(nb - 2, H_, generator=g) * 0.5, torch.randn(H_, generator=g) * 0.5]
    assert lstm_triton._step_config(r[0], H_, None)["BLOCK"] == 256

    def run(loops, dt):
        A, h0, c0, w_hh, dY, peep_in, peep_o = (t.to(DEVICE, dt).clone() for t in r)
        if not peephole:
            peep_in = peep_o = None
        Cs, TC, Y = (torch.full_like(dY, float("nan")) for _ in range(3))
        loops.forward(A, h0, c0, w_hh, peep_in, peep_o, Cs, TC, Y)
        dc, dG = torch.zeros_like(c0), torch.full_like(A, float("nan"))
        loops.backward(A, Cs, TC, c0, w_hh, peep_in, peep_o, dY, None, dc, dG)
        return {"A": A, "Cs": Cs, "TC": TC, "Y": Y, "dc": dc, "dG": dG}

    got, want = run(TritonLoops, dtype), run(PythonLoops, torch.float64)
    for k in want:
        a, b = got[k].double().cpu(), want[k].cpu()
        assert a.isfinite().all(), k
        assert (a - b).norm() / b.norm() < tol, (k, ((a - b).norm() / b.norm()).item())
