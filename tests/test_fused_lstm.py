"""The fused LSTM kernel: gradcheck of the hand-written backward, and equality with the cell."""

import itertools

import pytest
import torch

from unroll.nn.cells.lstm import lstm_step
from unroll.nn.kernels import lstm_cpu
from unroll.nn.kernels.lstm_fused import LSTMFunction, PythonLoops, _kernel_weights, lstm_sequence

D = torch.float64
T, B, C, H = 4, 3, 2, 3


def make_inputs(peephole, bias, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return (torch.randn(*shape, generator=g, dtype=D) * 0.7).requires_grad_(True)

    return {
        "x": r(T, B, C),
        "h0": r(B, H),
        "c0": r(B, H),
        "weight_ih": r(4 * H, C),
        "weight_hh": r(4 * H, H),
        "bias_ih": r(4 * H) if bias else None,
        "bias_hh": r(4 * H) if bias else None,
        "weight_ci": r(H) if peephole else None,
        "weight_cf": r(H) if peephole else None,
        "weight_co": r(H) if peephole else None,
    }


def loops_named(name):
    """The time loops under test: "python" (every device) or "compiled" (CPU; skipped only
    where the extension cannot be built — test_lstm_cpu.py insists on it where it can)."""
    if name == "python":
        return PythonLoops
    loops = lstm_cpu.loops()
    if loops is None:
        pytest.skip(f"compiled CPU loops unavailable: {lstm_cpu.unavailable_reason()}")
    return loops


LOOPS = ["python", "compiled"]

COMBOS = list(
    itertools.product([False, True], [False, True], [0.0, 1.0], [False, True], [False, True])
)


@pytest.mark.parametrize("loops", LOOPS)
@pytest.mark.parametrize("peephole,coupled,forget_bias,bias,with_lengths", COMBOS)
def test_gradcheck(peephole, coupled, forget_bias, bias, with_lengths, loops):
    loops = loops_named(loops)
    inputs = make_inputs(peephole, bias)
    names = [k for k, v in inputs.items() if v is not None]
    lengths = torch.tensor([4, 1, 3]) if with_lengths else None

    def f(*tensors):
        kw = dict(zip(names, tensors))
        return lstm_sequence(
            **kw, forget_bias=forget_bias, coupled=coupled, lengths=lengths, loops=loops
        )

    assert torch.autograd.gradcheck(f, [inputs[k] for k in names])


def reference_sequence(
    x,
    h0,
    c0,
    weight_ih,
    weight_hh,
    bias_ih,
    bias_hh,
    weight_ci,
    weight_cf,
    weight_co,
    forget_bias,
    coupled,
):
    """The cell's step in a loop: the specification the kernel must equal."""
    h, c, ys = h0, c0, []
    for t in range(x.shape[0]):
        x_proj = torch.nn.functional.linear(x[t], weight_ih, bias_ih)
        h, c = lstm_step(
            x_proj, h, c, weight_hh, bias_hh, weight_ci, weight_cf, weight_co, forget_bias, coupled
        )
        ys.append(h)
    return torch.stack(ys), h, c


@pytest.mark.parametrize("loops", LOOPS)
@pytest.mark.parametrize("peephole,coupled", list(itertools.product([False, True], [False, True])))
def test_equals_reference_step_outputs_and_all_grads(peephole, coupled, loops):
    loops = loops_named(loops)
    inputs = make_inputs(peephole, True, seed=3)
    g = torch.Generator().manual_seed(4)
    probes = [
        torch.randn(T, B, H, generator=g, dtype=D),
        torch.randn(B, H, generator=g, dtype=D),
        torch.randn(B, H, generator=g, dtype=D),
    ]
    results = []
    for fn in (lstm_sequence, reference_sequence):
        for v in inputs.values():
            if v is not None:
                v.grad = None
        if fn is lstm_sequence:
            outs = fn(**inputs, forget_bias=0.5, coupled=coupled, loops=loops)
        else:
            outs = fn(**inputs, forget_bias=0.5, coupled=coupled)
        sum(torch.sum(o * p) for o, p in zip(outs, probes)).backward()
        grads = {
            k: v.grad.clone() for k, v in inputs.items() if v is not None and v.grad is not None
        }
        results.append(([o.detach() for o in outs], grads))
    (outs_f, grads_f), (outs_r, grads_r) = results
    for a, b in zip(outs_f, outs_r):
        torch.testing.assert_close(a, b)
    assert grads_f.keys() == grads_r.keys()
    for k in grads_f:
        torch.testing.assert_close(grads_f[k], grads_r[k], msg=lambda m, k=k: f"{k}: {m}")


def test_kernel_weights_layout():
    w_ih, w_hh = torch.arange(8.0).view(8, 1), torch.arange(16.0).view(8, 2)  # H = 2
    b_ih, b_hh = torch.ones(8), torch.full((8,), 2.0)
    k_ih, k_hh, b = _kernel_weights(w_ih, w_hh, b_ih, b_hh, 0.5, coupled=False)
    assert torch.equal(k_ih, w_ih) and torch.equal(b, torch.tensor([3, 3, 3.5, 3.5, 3, 3, 3, 3]))
    k_ih, k_hh, b = _kernel_weights(w_ih, w_hh, b_ih, b_hh, 0.5, coupled=True)  # rows f, g, o
    assert torch.equal(k_ih, w_ih[2:]) and torch.equal(k_hh, w_hh[2:])
    assert torch.equal(b, torch.tensor([3.5, 3.5, 3, 3, 3, 3]))
    assert _kernel_weights(w_ih, w_hh, None, None, 0.0, coupled=False)[2] is None
    assert torch.equal(
        _kernel_weights(w_ih, w_hh, None, None, 1.0, True)[2], torch.tensor([1.0, 1, 0, 0, 0, 0])
    )


def test_input_that_needs_no_grad_gets_none():
    inputs = make_inputs(False, True)
    x = inputs["x"].detach()
    w_ih, w_hh, b = _kernel_weights(
        inputs["weight_ih"], inputs["weight_hh"], inputs["bias_ih"], inputs["bias_hh"], 0.0, False
    )
    y, h, c, *buffers = LSTMFunction.apply(
        x, inputs["h0"].detach(), inputs["c0"].detach(), w_ih, w_hh, b, None, None, None
    )
    assert not any(t.requires_grad for t in buffers)  # A, Cs, TC: for the backward only
    y.sum().backward()
    assert inputs["weight_hh"].grad is not None and inputs["h0"].grad is None


def test_float32_medium_size_close_to_reference():
    torch.manual_seed(0)
    Tm, Bm, Hm = 12, 8, 32
    x, h0, c0 = torch.randn(Tm, Bm, Hm), torch.randn(Bm, Hm), torch.randn(Bm, Hm)
    w_ih, w_hh = torch.randn(4 * Hm, Hm) * 0.2, torch.randn(4 * Hm, Hm) * 0.2
    b_ih, b_hh = torch.randn(4 * Hm) * 0.1, torch.randn(4 * Hm) * 0.1
    peeps = [torch.randn(Hm) * 0.1 for _ in range(3)]
    got = lstm_sequence(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *peeps)
    want = reference_sequence(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *peeps, 0.0, False)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    inputs = make_inputs(True, True)
    cpu = lstm_sequence(**inputs, forget_bias=1.0)
    gpu = lstm_sequence(
        **{k: None if v is None else v.detach().cuda() for k, v in inputs.items()}, forget_bias=1.0
    )
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(a.detach(), b.cpu())


@pytest.mark.parametrize("loops", LOOPS)
@pytest.mark.parametrize("peephole,coupled", [(False, False), (True, True)])
def test_float32_large_hidden_onednn_path_close_to_reference(peephole, coupled, loops):
    """H >= 512 in float32 on CPU takes the prepacked oneDNN recurrent GEMM (when available)."""
    torch.manual_seed(0)
    Tl, Bl, Hl = 3, 2, 512
    x, h0, c0 = torch.randn(Tl, Bl, 8), torch.randn(Bl, Hl), torch.randn(Bl, Hl)
    params = [torch.randn(4 * Hl, 8) * 0.05, torch.randn(4 * Hl, Hl) * 0.05]
    params += [torch.randn(4 * Hl) * 0.1, torch.randn(4 * Hl) * 0.1]
    params += [torch.randn(Hl) * 0.1 for _ in range(3)] if peephole else [None] * 3
    leaves = [x, h0, c0] + [p for p in params if p is not None]
    for t in leaves:
        t.requires_grad_(True)
    probe = torch.randn(Tl, Bl, Hl)
    results = []
    loops = loops_named(loops)
    for fn in (lstm_sequence, reference_sequence):
        for t in leaves:
            t.grad = None
        kw = {"forget_bias": 1.0, "coupled": coupled}
        if fn is lstm_sequence:
            kw["loops"] = loops
        y, h, c = fn(x, h0, c0, *params, **kw)
        ((y * probe).sum() + h.sum() + c.sum()).backward()
        grads = [torch.zeros_like(t) if t.grad is None else t.grad.clone() for t in leaves]
        results.append([y.detach(), h.detach(), c.detach()] + grads)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_big_gemms_through_onednn_equal_torch():
    """The whole-sequence GEMMs above BIG_GEMM_MACS (oneDNN on CPU float32), transposed views."""
    from unroll.nn.kernels import gemm

    # this build has oneDNN: the path must be taken, not silently skipped
    assert gemm._onednn_linear_works() == torch.backends.mkldnn.is_available()
    torch.manual_seed(5)
    a, b, bias = torch.randn(700, 650), torch.randn(2600, 650), torch.randn(2600)
    assert gemm.BIG_GEMM_MACS <= 700 * 650 * 2600
    want = (a.double() @ b.double().t() + bias.double()).float()
    torch.testing.assert_close(gemm.gemm_nt(a, b, bias), want, rtol=1e-4, atol=1e-3)
    dG2, inp = torch.randn(700, 2600), torch.randn(700, 650)
    got = gemm.weight_gradient(dG2, inp)
    assert got.shape == (2600, 650) and got.is_contiguous()
    torch.testing.assert_close(got, (dG2.double().t() @ inp.double()).float(), rtol=1e-4, atol=1e-3)
    dx = gemm.gemm_nt(dG2, b.t())  # b.t(): a transposed view as the weight
    torch.testing.assert_close(dx, (dG2.double() @ b.double()).float(), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("loops", LOOPS)
def test_layer_with_every_gemm_through_onednn_close_to_reference(monkeypatch, loops):
    from unroll.nn.kernels import gemm

    monkeypatch.setattr(gemm, "BIG_GEMM_MACS", 1)  # every whole-sequence GEMM: oneDNN
    assert gemm._onednn_linear_works() == torch.backends.mkldnn.is_available()
    loops = loops_named(loops)
    torch.manual_seed(6)
    Tm, Bm, Cm, Hm = 5, 3, 7, 16
    leaves = [torch.randn(Tm, Bm, Cm), torch.randn(Bm, Hm), torch.randn(Bm, Hm)]
    leaves += [torch.randn(4 * Hm, Cm) * 0.3, torch.randn(4 * Hm, Hm) * 0.3]
    leaves += [torch.randn(4 * Hm) * 0.1, torch.randn(4 * Hm) * 0.1]
    leaves += [torch.randn(Hm) * 0.3 for _ in range(3)]
    leaves = [t.requires_grad_(True) for t in leaves]
    results = []
    for fn in (lstm_sequence, reference_sequence):
        kw = {"loops": loops} if fn is lstm_sequence else {}
        out = fn(*leaves, forget_bias=1.0, coupled=False, **kw)
        grads = torch.autograd.grad(sum((o * o).sum() for o in out), leaves)
        results.append([o.detach() for o in out] + list(grads))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "peephole,coupled,forget_bias",
    [
        (False, False, 0.0),
        (False, False, 1.0),
        (True, False, 0.0),
        (False, True, 1.0),
        (True, True, 0.5),
    ],
)
def test_gradgradcheck(peephole, coupled, forget_bias):
    """Second derivatives (create_graph=True: the gradients through the reference cell) against
    finite differences of the first, every variant, with lengths; tiny sizes."""
    g = torch.Generator().manual_seed(7)
    Tt, Bt, Ct, Ht = 3, 2, 2, 2

    def r(*shape):
        return (torch.randn(*shape, generator=g, dtype=D) * 0.7).requires_grad_(True)

    inputs = [r(Tt, Bt, Ct), r(Bt, Ht), r(Bt, Ht), r(4 * Ht, Ct), r(4 * Ht, Ht), r(4 * Ht)]
    peeps = [r(Ht) for _ in range(3)] if peephole else []
    lengths = torch.tensor([3, 2])

    def f(x, h0, c0, w_ih, w_hh, b, *peeps):  # one bias: the kernel sums the two anyway
        return lstm_sequence(
            x, h0, c0, w_ih, w_hh, b, torch.zeros_like(b), *(peeps or [None] * 3),
            forget_bias=forget_bias, coupled=coupled, lengths=lengths,
        )  # fmt: skip

    assert torch.autograd.gradgradcheck(f, inputs + peeps)


@pytest.mark.parametrize("peephole,coupled", list(itertools.product([False, True], [False, True])))
def test_differentiable_backward_equals_the_hand_written_one(peephole, coupled):
    """The gradients a differentiated backward computes (create_graph=True: the reference
    cell's vjp) equal the hand-written backward's (gradchecked above), lengths too."""
    inputs = make_inputs(peephole, True, seed=5)
    leaves = [v for v in inputs.values() if v is not None]
    probe = torch.randn(T, B, H, dtype=D, generator=torch.Generator().manual_seed(6))
    grads = []
    for create_graph in (False, True):
        y, h, c = lstm_sequence(
            **inputs, forget_bias=0.5, coupled=coupled, lengths=torch.tensor([4, 1, 3])
        )
        loss = (y * probe).sum() + (h * c).sum()
        grads.append(
            torch.autograd.grad(loss, leaves, create_graph=create_graph, allow_unused=True)
        )
    for a, b in zip(*grads, strict=True):
        assert (a is None) == (b is None) == (coupled and a is None)  # coupled: w_ci unused
        if a is not None:
            assert b.requires_grad
            torch.testing.assert_close(a, b.detach())


def test_higher_order_gradients_go_through_the_reference_only():
    """A plain backward runs the hand-written loops (the fast path); only a backward that is
    itself differentiated (create_graph=True) runs the reference cell's vjp."""
    from unroll.nn.kernels import lstm_fused

    inputs = make_inputs(True, True)
    calls = []
    real = lstm_fused._reference_backward

    def counted(*args):
        calls.append(1)
        return real(*args)

    lstm_fused._reference_backward = counted
    try:
        y, h, c = lstm_sequence(**inputs)
        torch.autograd.grad(y.sum(), inputs["x"])
        assert calls == []
        y, h, c = lstm_sequence(**inputs)
        torch.autograd.grad(y.sum(), inputs["x"], create_graph=True)
        assert calls == [1]
    finally:
        lstm_fused._reference_backward = real
