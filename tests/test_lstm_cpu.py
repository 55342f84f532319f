"""The compiled CPU loops of the fused LSTM (`unroll/nn/kernels/lstm_cpu.cpp`).

Held equal to the Python loops (`PythonLoops`, which are themselves checked against the cell
in test_fused_lstm.py) buffer by buffer, forward and backward, every variant, float32 and
float64, with and without variable lengths; plus the accuracy of the float activations and
the fallback when the extension cannot be had.
"""

import itertools
import logging
import os
import shutil
import subprocess
import sys

import pytest
import torch

from unroll.nn.kernels import lstm_cpu
from unroll.nn.kernels.lstm_fused import PythonLoops, lstm_sequence, time_loops


def compiler_present() -> bool:
    try:
        from torch.utils.cpp_extension import verify_ninja_availability

        verify_ninja_availability()
    except RuntimeError:
        return False
    return shutil.which("c++") is not None or shutil.which("g++") is not None


@pytest.fixture(scope="module")
def compiled():
    loops = lstm_cpu.loops()
    if loops is None and not compiler_present():
        pytest.skip(f"no C++ compiler/ninja here: {lstm_cpu.unavailable_reason()}")
    assert loops is not None, lstm_cpu.unavailable_reason()
    return loops


def test_compiled_loops_build_where_a_compiler_is(compiled):
    assert lstm_cpu.unavailable_reason() is None
    assert time_loops(torch.device("cpu"), torch.float32) is compiled
    assert time_loops(torch.device("cpu"), torch.float64) is compiled
    assert time_loops(torch.device("cpu"), torch.bfloat16) is PythonLoops


def test_float_activations_accuracy(compiled):
    x = torch.linspace(-80, 80, 400_001)
    sig, tanh = torch.ops.unroll_lstm_cpu.activations(x)
    xd = x.double()
    rel_sig = ((sig.double() - torch.sigmoid(xd)) / torch.sigmoid(xd)).abs().max().item()
    abs_tanh = (tanh.double() - torch.tanh(xd)).abs().max().item()
    assert rel_sig < 3e-7  # as accurate as torch.sigmoid (1.5e-7)
    assert abs_tanh < 3e-7  # 2σ(2x) − 1: absolute, not relative, accuracy near 0
    assert torch.equal(tanh[x.abs() > 10], torch.sign(x[x.abs() > 10]))  # saturates exactly
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0])
    sig, tanh = torch.ops.unroll_lstm_cpu.activations(special)
    assert sig[0].isnan() and tanh[0].isnan()  # a diverged model shows NaN, not a clamp
    assert sig[1] == 1 and sig[2] < 1e-37 and sig[3] == 0.5
    assert tanh[1] == 1 and tanh[2] == -1 and tanh[3] == 0


def test_float64_activations_are_libm(compiled):
    x = torch.linspace(-30, 30, 10_001, dtype=torch.float64)
    sig, tanh = torch.ops.unroll_lstm_cpu.activations(x)
    torch.testing.assert_close(sig, torch.sigmoid(x), rtol=1e-15, atol=1e-300)
    torch.testing.assert_close(tanh, torch.tanh(x), rtol=1e-15, atol=1e-300)


def loop_inputs(T, B, H, peephole, coupled, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    nb = 3 if coupled else 4

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    return {
        "A": r(T, B, nb * H),
        "h0": r(B, H),
        "c0": r(B, H),
        "w_hh": r(nb * H, H, scale=H**-0.5),
        "peep_in": r(nb - 2, H, scale=0.5) if peephole else None,
        "peep_o": r(H, scale=0.5) if peephole else None,
        "dY": r(T, B, H),
        "dc_n": r(B, H),
    }


def run_loops(loops, inp, with_dcx):
    """Forward then backward through ``loops`` on copies of the inputs; every buffer out."""
    T, B, G = inp["A"].shape
    H = inp["h0"].shape[1]
    A = inp["A"].clone()
    Cs, TC, Y = (A.new_empty(T, B, H) for _ in range(3))
    loops.forward(A, inp["h0"], inp["c0"], inp["w_hh"], inp["peep_in"], inp["peep_o"], Cs, TC, Y)
    dCx = None
    dc = inp["dc_n"].clone()
    if with_dcx:  # variable lengths: dc_n enters at each sequence's last step
        dCx = torch.zeros_like(Cs)
        dCx[torch.arange(B) % T, torch.arange(B)] = dc
        dc = torch.zeros_like(dc)
    dG = A.new_empty(T, B, G)
    args = (A, Cs, TC, inp["c0"], inp["w_hh"], inp["peep_in"], inp["peep_o"], inp["dY"].clone())
    loops.backward(*args, dCx, dc, dG)
    return {"A": A, "Cs": Cs, "TC": TC, "Y": Y, "dG": dG, "dc0": dc}


CASES = list(itertools.product([False, True], [False, True], [False, True]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("peephole,coupled,with_dcx", CASES)
def test_compiled_equals_python_loops(compiled, dtype, peephole, coupled, with_dcx):
    inp = loop_inputs(5, 4, 24, peephole, coupled, dtype)
    got = run_loops(compiled, inp, with_dcx)
    want = run_loops(PythonLoops, inp, with_dcx)
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 0, "atol": 2e-5}
    for k in want:
        torch.testing.assert_close(got[k], want[k], **tol, msg=lambda m, k=k: f"{k}: {m}")


@pytest.mark.parametrize("peephole,coupled", [(False, False), (True, True)])
def test_gate_math_alone_is_the_loop_without_recurrent_weights(compiled, peephole, coupled):
    """``recurrent=False`` (what benchmarks/lstm_cpu_profile.py times as the gate math) runs
    the loops as if W_hh were zero, and does not read W_hh."""
    inp = loop_inputs(5, 4, 24, peephole, coupled, torch.float64)
    want = run_loops(compiled, {**inp, "w_hh": torch.zeros_like(inp["w_hh"])}, with_dcx=True)
    ops = torch.ops.unroll_lstm_cpu
    garbage = torch.full_like(inp["w_hh"], float("nan"))

    class GateMathOnly:
        @staticmethod
        def forward(A, h0, c0, w_hh, peep_in, peep_o, Cs, TC, Y):
            ops.forward(A, h0, c0, garbage, None, peep_in, peep_o, Cs, TC, Y, recurrent=False)

        @staticmethod
        def backward(A, Cs, TC, c0, w_hh, peep_in, peep_o, dY, dCx, dc, dG):
            args = (A, Cs, TC, c0, garbage, None, peep_in, peep_o, dY, dCx, dc, dG)
            ops.backward(*args, recurrent=False)

    got = run_loops(GateMathOnly, inp, with_dcx=True)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=lambda m, k=k: f"{k}: {m}")


@pytest.mark.parametrize("peephole,coupled", [(False, False), (True, False), (True, True)])
def test_compiled_equals_python_loops_large_hidden_prepacked(compiled, peephole, coupled):
    """H >= 512 in float32: both take the prepacked oneDNN recurrent GEMM (where available)."""
    inp = loop_inputs(3, 2, 512, peephole, coupled, torch.float32, seed=1)
    got = run_loops(compiled, inp, with_dcx=False)
    want = run_loops(PythonLoops, inp, with_dcx=False)
    for k in want:
        torch.testing.assert_close(
            got[k], want[k], rtol=0, atol=5e-5, msg=lambda m, k=k: f"{k}: {m}"
        )


def test_batch_rows_split_over_threads_same_result(compiled):
    """B·H above ~32k units: a step's gate math runs on several threads."""
    inp = loop_inputs(3, 96, 512, True, False, torch.float32, seed=2)
    want = run_loops(compiled, inp, with_dcx=True)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        got = run_loops(compiled, inp, with_dcx=True)
    finally:
        torch.set_num_threads(threads)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-5)


@pytest.mark.parametrize("T,lengths", [(6, [6, 2, 4]), (6, None), (1, None), (1, [1, 1, 1])])
def test_end_to_end_gradients_equal_between_loops(compiled, T, lengths):
    torch.manual_seed(4)
    B, C, H = 3, 5, 8
    lengths = None if lengths is None else torch.tensor(lengths)
    params = [torch.randn(4 * H, C), torch.randn(4 * H, H), torch.randn(4 * H), torch.randn(4 * H)]
    params += [torch.randn(H) * 0.3 for _ in range(3)]
    leaves = [torch.randn(T, B, C), torch.randn(B, H), torch.randn(B, H)] + params
    leaves = [t.double().requires_grad_(True) for t in leaves]
    results = []
    for loops in (compiled, PythonLoops):
        out = lstm_sequence(*leaves, forget_bias=1.0, lengths=lengths, loops=loops)
        grads = torch.autograd.grad(sum((o * o).sum() for o in out), leaves)
        results.append([o.detach() for o in out] + list(grads))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_strided_state_and_peepholes_are_accepted(compiled):
    """Views that are not contiguous (a state sliced from a larger one, peepholes from a
    stacked matrix's columns) give the same result as their contiguous copies."""
    torch.manual_seed(7)
    T, B, C, H = 4, 3, 5, 6
    x = torch.randn(T, B, C)
    state = torch.randn(B, 2 * H)
    h0, c0 = state[:, :H], state[:, H:]  # non-contiguous
    w = [torch.randn(4 * H, C), torch.randn(4 * H, H), torch.randn(4 * H), torch.randn(4 * H)]
    peeps = torch.randn(H, 3)  # columns: non-contiguous vectors
    got = lstm_sequence(x, h0, c0, *w, *peeps.unbind(1), loops=compiled)
    want = lstm_sequence(
        x, h0.contiguous(), c0.contiguous(), *w, *peeps.t().contiguous(), loops=compiled
    )
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_environment_variable_turns_it_off(monkeypatch):
    monkeypatch.setenv(lstm_cpu.ENV, "0")
    assert time_loops(torch.device("cpu"), torch.float32) is PythonLoops
    assert lstm_cpu.ENV in lstm_cpu.unavailable_reason()


def broken_build(flags):
    raise RuntimeError("Error building extension\nlstm_cpu.cpp:1: error: no compiler here")


def test_build_failure_falls_back_to_python_loops_with_one_line(monkeypatch, caplog):
    monkeypatch.setattr(lstm_cpu, "_state", {"tried": False, "ops": None, "reason": ""})
    monkeypatch.setattr(lstm_cpu, "_build", broken_build)
    with caplog.at_level(logging.WARNING, logger=lstm_cpu.__name__):
        assert lstm_cpu.loops() is None
        assert time_loops(torch.device("cpu"), torch.float32) is PythonLoops
    reason = lstm_cpu.unavailable_reason()
    assert "error: no compiler here" in reason and "-march=native" in reason
    notices = [r for r in caplog.records if r.name == lstm_cpu.__name__]
    assert len(notices) == 1 and notices[0].levelno == logging.WARNING
    assert "Python loops" in notices[0].getMessage()
    assert "\n" not in notices[0].getMessage()
    # and the layer still runs, on the Python loops
    import unroll

    y, _ = unroll.LSTM(3, 4, peephole=True, impl="fused")(torch.randn(2, 1, 3))
    assert y.shape == (2, 1, 4)


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (33, 65), (2600, 650)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tiled_transpose(compiled, shape, dtype):
    m = torch.randn(*shape, dtype=dtype)
    got = compiled.transpose(m)
    assert got.is_contiguous() and torch.equal(got, m.t())
    assert torch.equal(compiled.transpose(m.t()), m)  # a non-contiguous input too


@pytest.mark.parametrize("coupled", [False, True])
def test_weight_gradients_arrive_contiguous(coupled):
    """Autograd keeps a contiguous gradient as it is; a strided one costs it a slow copy."""
    import unroll

    lstm = unroll.LSTM(6, 8, peephole=True, coupled=coupled, impl="fused")
    lstm(torch.randn(4, 3, 6))[0].sum().backward()
    for name, p in lstm.named_parameters():
        assert p.grad is not None and p.grad.is_contiguous(), name


def test_build_path_finds_the_environment_ninja():
    """`pip install ninja` puts ninja beside the interpreter; an unactivated venv lacks it on
    PATH, so the build adds that directory (last: the system's tools keep precedence)."""

    here = os.path.dirname(sys.executable)
    assert lstm_cpu.path_with_interpreter_dir("/usr/bin").split(os.pathsep) == ["/usr/bin", here]
    assert lstm_cpu.path_with_interpreter_dir(None) == here
    already = os.pathsep.join([here, "/usr/bin"])
    assert lstm_cpu.path_with_interpreter_dir(already) == already


def test_notice_reaches_stderr_without_logging_configured():
    """A script that configures no logging still sees the one-line notice (Python's
    last-resort handler), and nothing else: a fresh interpreter, so pytest's handlers are
    not in the way."""
    code = (
        "import torch; from unroll.nn.kernels import lstm_cpu\n"
        "def broken(flags): raise RuntimeError('x.cpp:1: error: no compiler here')\n"
        "lstm_cpu._build = broken\n"
        "assert lstm_cpu.loops() is None\n"
    )
    env = {k: v for k, v in os.environ.items() if k != lstm_cpu.ENV}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unroll: could not build lstm_cpu.cpp")
    assert "Python loops" in lines[0]


def test_cache_key_holds_flags_cpu_source_and_its_path(monkeypatch, tmp_path):
    """Two machines sharing a home directory (different CPUs), or two checkouts (different
    paths), get different builds; the same ones the same build."""
    native, portable = lstm_cpu.FLAG_SETS["native"], lstm_cpu.FLAG_SETS["portable"]
    name = lstm_cpu._extension_name(native)
    assert name == lstm_cpu._extension_name(list(native))
    assert name != lstm_cpu._extension_name(portable)
    monkeypatch.setattr(lstm_cpu, "_cpu_signature", lambda: "flags : avx2 fma")
    on_avx2 = lstm_cpu._extension_name(native)
    assert on_avx2 != name
    copy = tmp_path / "lstm_cpu.cpp"
    copy.write_text(lstm_cpu.SOURCE.read_text())
    monkeypatch.setattr(lstm_cpu, "SOURCE", copy)
    assert lstm_cpu._extension_name(native) != on_avx2  # same text, other checkout


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="reads /proc/cpuinfo")
def test_cpu_signature_names_the_model_and_its_features():
    signature = lstm_cpu._cpu_signature()
    assert "model name" in signature or "CPU part" in signature
    assert "flags" in signature or "Features" in signature
    assert len(signature.splitlines()) <= 7  # the first CPU only


def record_builds(monkeypatch, fail=()):
    """_build replaced by a recorder (nothing compiled); builds in ``fail`` raise."""
    monkeypatch.setattr(lstm_cpu, "_state", {"tried": False, "ops": None, "reason": ""})
    tried = []

    def fake(flags):
        tried.append(flags)
        if flags in [lstm_cpu.FLAG_SETS[k] for k in fail]:
            raise RuntimeError("x.cpp:1: error: unrecognized command-line option")

    monkeypatch.setattr(lstm_cpu, "_build", fake)
    return tried


def test_native_build_first_portable_where_it_fails(monkeypatch):
    monkeypatch.delenv(lstm_cpu.ENV, raising=False)
    tried = record_builds(monkeypatch)
    assert lstm_cpu.loops() is not None
    assert tried == [lstm_cpu.FLAG_SETS["native"]]
    assert lstm_cpu.build_in_use().startswith("native (") and "-march=native" in tried[0]

    tried = record_builds(monkeypatch, fail=["native"])
    assert lstm_cpu.loops() is not None
    assert tried == [lstm_cpu.FLAG_SETS["native"], lstm_cpu.FLAG_SETS["portable"]]
    assert lstm_cpu.build_in_use() == "portable (-O3 -fopenmp-simd -fno-trapping-math)"

    tried = record_builds(monkeypatch, fail=["native", "portable"])
    assert lstm_cpu.loops() is not None
    assert tried == [lstm_cpu.FLAG_SETS[k] for k in ("native", "portable", "plain")]
    assert lstm_cpu.build_in_use() == "plain (-O3)"


def test_environment_variable_names_the_build_to_start_from(monkeypatch):
    monkeypatch.setenv(lstm_cpu.ENV, "portable")
    tried = record_builds(monkeypatch)
    assert lstm_cpu.loops() is not None
    assert tried == [lstm_cpu.FLAG_SETS["portable"]]
    assert "-march" not in " ".join(tried[0])

    tried = record_builds(monkeypatch, fail=["portable"])
    assert lstm_cpu.loops() is not None
    assert tried == [lstm_cpu.FLAG_SETS["portable"], lstm_cpu.FLAG_SETS["plain"]]

    monkeypatch.setenv(lstm_cpu.ENV, "plain")
    tried = record_builds(monkeypatch)
    assert lstm_cpu.loops() is not None
    assert tried == [["-O3"]]


def test_unknown_environment_value_is_named_and_falls_back(monkeypatch, caplog):
    monkeypatch.setenv(lstm_cpu.ENV, "fast")
    tried = record_builds(monkeypatch)
    with caplog.at_level(logging.WARNING, logger=lstm_cpu.__name__):
        assert lstm_cpu.loops() is None
    assert tried == []
    assert "UNROLL_CPU_EXTENSION='fast' is not one of 0, 1, native, portable, plain" in (
        lstm_cpu.unavailable_reason()
    )
    assert lstm_cpu.build_in_use() is None
    assert len([r for r in caplog.records if r.name == lstm_cpu.__name__]) == 1


def test_portable_build_equals_python_loops():
    """The fallback build (no -march=native) compiled for real, its activations as accurate
    and its loops equal to the Python loops, in a fresh interpreter: one process can load
    only one build of the extension."""
    code = (
        "import torch, sys\n"
        "sys.path[:0] = [sys.argv[1]]\n"
        "import test_lstm_cpu as t\n"
        "from unroll.nn.kernels import lstm_cpu\n"
        "from unroll.nn.kernels.lstm_fused import PythonLoops\n"
        "loops = lstm_cpu.loops()\n"
        "assert loops is not None, lstm_cpu.unavailable_reason()\n"
        "print(lstm_cpu.build_in_use())\n"
        "x = torch.linspace(-80, 80, 100_001)\n"
        "sig, tanh = torch.ops.unroll_lstm_cpu.activations(x)\n"
        "want = torch.sigmoid(x.double())\n"
        "assert ((sig.double() - want) / want).abs().max() < 3e-7\n"
        "assert (tanh.double() - torch.tanh(x.double())).abs().max() < 3e-7\n"
        "for dtype, atol in ((torch.float32, 2e-5), (torch.float64, 1e-12)):\n"
        "    inp = t.loop_inputs(5, 4, 24, True, False, dtype)\n"
        "    got, want = t.run_loops(loops, inp, True), t.run_loops(PythonLoops, inp, True)\n"
        "    for k in want:\n"
        "        torch.testing.assert_close(got[k], want[k], rtol=0, atol=atol)\n"
    )
    if not compiler_present():
        pytest.skip("no C++ compiler/ninja here")
    env = {**os.environ, lstm_cpu.ENV: "portable"}
    here = os.path.dirname(__file__)
    done = subprocess.run(
        [sys.executable, "-c", code, here], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "portable (-O3 -fopenmp-simd -fno-trapping-math)"
