"""Drop-in for torch.nn: the layers take torch's arguments, compile and export like torch's.

Each case is checked against an independent reference: the torch.nn module with copied
weights, the eager run of the same layer (torch.compile), or onnxruntime on the exported file
(export). The ONNX tests need the ``onnx`` extra (onnx, onnxruntime, onnxscript).
"""

import inspect
import io
import os
import subprocess
import sys
import unittest.mock
import warnings
from contextlib import nullcontext

import pytest
import torch

import unroll
from unroll.nn.layers import exporting

T, B, C, H, P = 4, 2, 3, 5, 2

CASES = {  # id: (unroll class, torch class or None, kwargs for both, unroll-only kwargs)
    "LSTM": (unroll.LSTM, torch.nn.LSTM, {}, {}),
    "LSTM-proj": (unroll.LSTM, torch.nn.LSTM, {"proj_size": P}, {}),
    "GRU": (unroll.GRU, torch.nn.GRU, {}, {}),
    "RNN_RELU": (unroll.RNN, torch.nn.RNN, {"nonlinearity": "relu"}, {}),
    "LSTM-forget_bias": (unroll.LSTM, None, {}, {"forget_bias": 1.0}),
    "LSTM-peephole": (unroll.LSTM, None, {}, {"peephole": True}),
    "LSTM-coupled": (unroll.LSTM, None, {}, {"coupled": True, "forget_bias": 1.0}),
    "LSTM-peephole-coupled": (unroll.LSTM, None, {}, {"peephole": True, "coupled": True}),
    "LSTM-peephole-proj": (unroll.LSTM, None, {"proj_size": P}, {"peephole": True}),
}


IMPLS = ("auto", "fused", "reference")
# the cases whose math torch's kernels compute (forget_bias folded into the bias)
TORCH_MATH = {"LSTM", "LSTM-forget_bias", "LSTM-proj", "GRU", "RNN_RELU"}


# One of each kind, run by default where a test is slow per case (the rest with -m slow):
# torch's cell, a fused variant, a projection (the reference loop), a GRU.
CORE_CASES = ("LSTM", "LSTM-peephole-coupled", "LSTM-peephole-proj", "GRU")
# The impl each case takes by default where a test runs one per case (each impl in turn).
DEFAULT_IMPL = {case: IMPLS[i % 3] for i, case in enumerate(CASES)}


def slow(*values):
    """A parameter set run only with -m slow (the default run keeps one of each kind)."""
    return pytest.param(*values, marks=pytest.mark.slow)


def hx_for(layer, batch=B, seed=1):
    g = torch.Generator().manual_seed(seed)
    L = layer.num_layers * (2 if layer.bidirectional else 1)
    h = torch.randn(L, batch, layer.proj_size or layer.hidden_size, generator=g)
    if isinstance(layer, (unroll.LSTM, torch.nn.LSTM)):
        return h, torch.randn(L, batch, layer.hidden_size, generator=g)
    return h


def leaves(out):
    """The tensors of a nested output, in order."""
    return [out] if isinstance(out, torch.Tensor) else [t for o in out for t in leaves(o)]


def flat(out):
    """(y, h) or (y, (h, c)) -> [y, h(, c)]."""
    y, hn = out
    return [y, *hn] if isinstance(hn, tuple) else [y, hn]


# --- the call: forward(input, hx=None), state= kept as an alias ----------------------------------
@pytest.mark.parametrize("case,impl", [(c, i) for c in CASES for i in IMPLS])
def test_forward_takes_torch_argument_names(case, impl):
    """layer(input=, hx=) as torch.nn's, every impl: against torch.nn with the same weights
    where it has the cell, else against the reference loop."""
    ours_cls, torch_cls, kw, own = CASES[case]
    torch.manual_seed(0)
    theirs = (torch_cls or ours_cls)(C, H, num_layers=2, **kw, **({} if torch_cls else own))
    if torch_cls is None:
        theirs.impl = "reference"
    ours = ours_cls(C, H, num_layers=2, **kw, **own, impl=impl)
    ours.load_state_dict(theirs.state_dict())
    x, hx = torch.randn(T, B, C), hx_for(theirs)
    want = flat(theirs(input=x, hx=hx))
    for got in (ours(input=x, hx=hx), ours(x, hx), ours(x, state=hx)):
        for a, b in zip(flat(got), want, strict=True):
            torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="both hx and state"):
        ours(x, hx, state=hx)


def test_constructor_arguments_in_torch_order():
    """Positional arguments mean what they mean to torch.nn; unroll's own are keyword-only."""
    for ours, theirs in (
        (unroll.LSTM, torch.nn.LSTM),
        (unroll.GRU, torch.nn.GRU),
        (unroll.RNN, torch.nn.RNN),
    ):
        # torch documents its order in the first docstring line: "__init__(input_size,...)"
        doc = theirs.__doc__.strip().splitlines()[0]
        want = [a.split("=")[0] for a in doc[doc.index("(") + 1 : doc.index(")")].split(",")]
        params = list(inspect.signature(ours).parameters.values())
        positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert positional == want, ours.__name__
        extra = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
        assert "impl" in extra and extra.isdisjoint(want)
    # The 8th positional argument of an LSTM is proj_size (it was forget_bias once).
    args = (C, H, 2, False, True, 0.0, True, P)
    ours, theirs = unroll.LSTM(*args), torch.nn.LSTM(*args)
    assert ours.proj_size == P and ours.forget_bias == 0.0
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    with pytest.raises(TypeError):
        unroll.LSTM(C, H, 1, True, False, 0.0, False, 0, None, None, 1.0)


@pytest.mark.parametrize("case", ["LSTM", "LSTM-proj", "GRU", "RNN_RELU"])
def test_attributes_as_torch(case):
    ours_cls, torch_cls, kw, _ = CASES[case]
    ours = ours_cls(C, H, 2, bidirectional=True, **kw)
    theirs = torch_cls(C, H, 2, bidirectional=True, **kw)
    for name in ("mode", "proj_size", "input_size", "hidden_size", "num_layers", "bias"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert [[w.shape for w in ws] for ws in ours.all_weights] == [
        [w.shape for w in ws] for ws in theirs.all_weights
    ]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    if case != "RNN_RELU":  # ours names a relu nonlinearity, torch.nn's repr does not
        assert repr(ours) == repr(theirs)


def test_proj_size_checks():
    with pytest.raises(ValueError, match=r"proj_size < hidden_size \(5\), got 5"):
        unroll.LSTM(C, H, proj_size=H)
    with pytest.raises(ValueError, match="proj_size to be an int >= 0"):
        unroll.LSTM(C, H, proj_size=-1)
    with pytest.raises(TypeError):
        unroll.GRU(C, H, proj_size=P)  # LSTM only, as in torch


# --- torch.compile ---------------------------------------------------------------------------
class Net(torch.nn.Module):
    """A layer and a linear head, the layer's input a graph input (where the torch-kernel
    LSTM's CPU lowering failed)."""

    def __init__(self, layer):
        super().__init__()
        self.rnn = layer
        D = 2 if layer.bidirectional else 1
        self.out = torch.nn.Linear(D * (layer.proj_size or layer.hidden_size), 1)

    def forward(self, x, hx):
        y, hn = self.rnn(x, hx)
        h = hn[0] if isinstance(hn, tuple) else hn
        return self.out(y).sum() + h.square().sum()


def compiled_matches_eager(layer, **compile_kw):
    torch.manual_seed(0)
    net = Net(layer)
    x, hx = torch.randn(T, B, C), hx_for(layer)

    def loss_and_grads(f):
        net.zero_grad()
        loss = f(x, hx)
        loss.backward()
        return [loss.detach()] + [p.grad.clone() for p in net.parameters()]

    want = loss_and_grads(net)
    torch._dynamo.reset()
    got = loss_and_grads(torch.compile(net, **compile_kw))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


COMPILE_DEFAULT = [
    ("LSTM", "auto"),  # was: "expected all tensors_saved_with_vc_check to be Tensors"
    ("LSTM", "fused"),
    ("LSTM-proj", "auto"),
    ("LSTM-peephole-proj", "auto"),  # the reference loop
    ("GRU", "auto"),
]


@pytest.mark.parametrize(
    "case,impl",
    COMPILE_DEFAULT + [slow(c, i) for c in CASES for i in IMPLS if (c, i) not in COMPILE_DEFAULT],
)
def test_compile_matches_eager(case, impl):
    """Forward and every gradient, as torch.compile(model) is used (graph breaks allowed)."""
    ours_cls, _, kw, own = CASES[case]
    layer = ours_cls(C, H, num_layers=2, **kw, **own, impl=impl)
    compiled_matches_eager(layer, backend="aot_eager")


@pytest.mark.slow
def test_compile_with_inductor_runs_the_default_lstm():
    """The default (torch-kernel) LSTM under the default backend: traced, its CPU lowering
    failed ("expected Tensor() for op: torch.ops.aten.mkldnn_rnn_layer") — it runs eagerly."""
    compiled_matches_eager(unroll.LSTM(C, H, 2))


@pytest.mark.parametrize(
    "case,impl",
    [
        ("LSTM-peephole", "auto"),
        ("LSTM", "fused"),
        ("LSTM-coupled", "reference"),
        ("GRU", "auto"),
        ("RNN_RELU", "reference"),
    ],
)
def test_compile_fullgraph(case, impl):
    """No graph break: the fused LSTM (custom ops in an autograd Function), GRU/RNN's torch
    kernels and the reference loop are traced whole."""
    ours_cls, _, kw, own = CASES[case]
    compiled_matches_eager(
        ours_cls(C, H, **kw, **own, impl=impl), backend="aot_eager", fullgraph=True
    )


def test_compile_fullgraph_fused_lstm_at_onednn_sizes():
    """From H = 512 on the fused LSTM packs its recurrent weight for oneDNN behind a cached
    probe; under torch.compile it leaves GEMMs to the compiler, so nothing breaks the graph."""
    compiled_matches_eager(unroll.LSTM(C, 512, impl="fused"), backend="aot_eager", fullgraph=True)


def test_building_a_fused_lstm_loads_its_loops(monkeypatch):
    """The compiled CPU loops are loaded when a layer that will run them is built (or moved),
    not at its first forward, which torch.compile may be tracing (see the next test)."""
    from unroll.nn import layers

    calls = []
    monkeypatch.setattr(layers, "time_loops", lambda *a: calls.append(a))
    unroll.LSTM(C, H, peephole=True)
    assert calls == [(torch.device("cpu"), torch.float32)]
    calls.clear()
    unroll.LSTM(C, H, peephole=True, device="meta").to_empty(device="cpu").double()
    assert (torch.device("cpu"), torch.float64) in calls
    calls.clear()
    unroll.LSTM(C, H)  # torch's kernel: nothing to load
    unroll.LSTM(C, H, peephole=True, impl="reference")
    assert calls == []


@pytest.mark.slow
def test_compile_fullgraph_in_a_fresh_process():
    """The first fused LSTM of a process: the compiled CPU loops are loaded when the layer is
    built, so torch.compile never traces their build (a lock, a hash, a compiler run)."""
    code = (
        "import torch, unroll\n"
        "lstm = unroll.LSTM(3, 5, peephole=True)\n"
        "x = torch.randn(4, 2, 3)\n"
        "y = torch.compile(lstm, backend='aot_eager', fullgraph=True)(x)[0]\n"
        "torch.testing.assert_close(y, lstm(x)[0])\n"
        "from unroll.nn.kernels import lstm_cpu\n"
        "print('compiled loops:', lstm_cpu.loops() is not None)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "compiled loops:" in out.stdout


# --- export ------------------------------------------------------------------------------------
def test_exporting_is_false_in_eager_and_compiled_code():
    assert not exporting()
    seen = []

    def f(x):
        seen.append(exporting())
        return x * 2

    torch._dynamo.reset()
    torch.compile(f, backend="eager")(torch.randn(2))
    assert seen == [False]


class FlatIO(torch.nn.Module):
    """``layer(x, hx, lengths)`` with the state's tensors as separate inputs and outputs, so
    the exporters name each (and the dynamo exporter takes a dynamic axis: with hx a tuple
    its dynamic_axes conversion fails, torch 2.13)."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x, h0, c0=None, lengths=None):
        hx = h0 if c0 is None else (h0, c0)
        return tuple(flat(self.layer(x, hx, lengths)))


def export_and_run(layer, exporter, with_lengths=False, steps=(T + 3, 1)):
    """Export ``layer`` (example T = 4, the T axis dynamic) with either exporter, run the file
    in onnxruntime on new inputs of each length in ``steps``, and return [(onnx outputs,
    eager outputs)] and the op types in the graph."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    layer.eval()
    lstm = isinstance(layer, unroll.LSTM)
    names = ["input", "h0", "c0"] if lstm else ["input", "h0"]

    def inputs(steps, seed):
        g = torch.Generator().manual_seed(seed)
        x, hx = torch.randn(steps, B, C, generator=g), hx_for(layer, seed=seed)
        args = [x, *hx] if lstm else [x, hx, None]
        lengths = torch.tensor([steps, max(1, steps - 2)])  # unsorted is fine too
        return (*args, lengths) if with_lengths else tuple(args[: len(names)])

    buf, example = io.BytesIO(), inputs(T, 7)
    if exporter == "dynamo":
        dynamic = {
            "dynamic_shapes": ({0: torch.export.Dim.DYNAMIC},) + (None,) * (len(example) - 1)
        }
    else:
        dynamic = {"dynamic_axes": {"input": {0: "T"}}}
    with warnings.catch_warnings():
        # the exporters' own notices (deprecations, "not a leaf", ...) are not ours to judge
        warnings.filterwarnings("ignore", module="torch|onnx|onnxscript")
        torch.onnx.export(
            FlatIO(layer),
            example,
            buf,
            dynamo=exporter == "dynamo",
            input_names=names + (["lengths"] if with_lengths else []),
            **dynamic,
        )
    model = onnx.load_from_string(buf.getvalue())
    session = ort.InferenceSession(buf.getvalue())
    runs = []
    for n in steps:  # new values and lengths: nothing may be baked in
        feeds = [v for v in inputs(n, n) if v is not None]
        got = session.run(None, {i.name: v.numpy() for i, v in zip(session.get_inputs(), feeds)})
        with torch.no_grad():
            want = FlatIO(layer)(*inputs(n, n))
        runs.append(([torch.from_numpy(g) for g in got], want))
    return runs, {n.op_type for n in model.graph.node}


ONNX_OP = {"LSTM": "LSTM", "GRU": "GRU", "RNN_RELU": "RNN"}
# By default every layer and variant once through the TorchScript exporter (~0.5 s each; the
# impls in turn: what runs while exporting does not depend on impl, see the test after) and
# three through the dynamo exporter (~3 s each); the whole matrix with -m slow.
DYNAMO_DEFAULT = {"LSTM-peephole-coupled", "LSTM-peephole-proj", "GRU"}


def _onnx_params():
    for case in CASES:
        for impl in IMPLS:
            slow = impl != DEFAULT_IMPL[case]
            yield pytest.param(case, impl, "torchscript", marks=[pytest.mark.slow] * slow)
            slow = slow or case not in DYNAMO_DEFAULT
            yield pytest.param(case, impl, "dynamo", marks=[pytest.mark.slow] * slow)


@pytest.mark.parametrize("case,impl,exporter", list(_onnx_params()))
def test_onnx_export_takes_any_length_and_matches_onnxruntime(case, impl, exporter):
    """Every layer exports as ONE ONNX recurrent node per layer and direction, and the file
    takes any T (here 7 and 1 from an example of 4). Before: the variants and projections
    exported unrolled over the example's T, the dynamo exporter's translation of torch's op
    fixed T in a Reshape, and the fused kernel was baked in as constants."""
    ours_cls, _, kw, own = CASES[case]
    torch.manual_seed(0)
    layer = ours_cls(C, H, num_layers=2, bidirectional=True, **kw, **own, impl=impl)
    runs, ops = export_and_run(layer, exporter)
    for got, want in runs:
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert ONNX_OP[case.split("-")[0]] in ops
    assert not ops & {"Loop", "Scan"}


def test_what_runs_while_exporting():
    """ONNX nodes for torch.onnx.export whatever impl says; for jit.trace and torch.export
    torch's op where the math is torch's (any T), else the reference loop."""
    with unittest.mock.patch.object(torch.jit, "is_tracing", return_value=True):
        for case, (ours_cls, _, kw, own) in CASES.items():
            for impl in IMPLS:
                layer = ours_cls(C, H, **kw, **own, impl=impl)
                assert layer.implementation == ("torch" if case in TORCH_MATH else "reference")
                with unittest.mock.patch.object(torch.onnx, "is_in_onnx_export", return_value=True):
                    assert layer.implementation == "onnx"


@pytest.mark.parametrize(
    "case,exporter",
    [(c, "torchscript") for c in ("LSTM-peephole-proj", "RNN_RELU")]
    + [slow(c, "torchscript") for c in ("LSTM", "LSTM-coupled")]
    + [("GRU", "dynamo")],
)
def test_onnx_export_with_lengths(case, exporter):
    """lengths become the nodes' sequence_lens, an input of the file: new lengths per run."""
    ours_cls, _, kw, own = CASES[case]
    torch.manual_seed(0)
    layer = ours_cls(C, H, num_layers=2, bidirectional=True, **kw, **own)
    runs, _ = export_and_run(layer, exporter, with_lengths=True)
    for got, want in runs:
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("case", ["LSTM-peephole-proj", "LSTM-coupled", "GRU", "RNN_RELU"])
def test_onnx_node_definition_is_the_cell(case):
    """The TorchScript exporter's trace runs each node's definition (the reference cells on the
    node's inputs): it gives the layer's numbers, so the trace carries true values."""
    ours_cls, _, kw, own = CASES[case]
    layer = ours_cls(C, H, **kw, **own, impl="reference")
    x, hx = torch.randn(T, B, C), hx_for(layer)
    state = tuple(s[0] for s in hx) if isinstance(hx, tuple) else (hx[0],)
    with unittest.mock.patch.object(torch.jit, "is_tracing", return_value=True):
        y, final = layer._onnx_direction(x, state, 0, None, None)
    for a, b in zip([y, *final], flat(layer(x, hx)), strict=True):
        torch.testing.assert_close(a, b.squeeze(0) if b.dim() == 3 and a.dim() == 2 else b)


def test_trace_and_torch_export_record_portable_ops():
    """jit.trace and torch.export see the reference ops for a variant (no custom op), and the
    traced module reproduces eager numbers on new inputs."""
    lstm = unroll.LSTM(C, H, peephole=True)
    x = torch.randn(T, B, C)
    with pytest.warns(UserWarning, match="unrolled"):
        traced = torch.jit.trace(lstm, (x,))
    assert "unroll_lstm_cpu" not in str(traced.inlined_graph)
    x2 = torch.randn(T, B, C)
    torch.testing.assert_close(traced(x2)[0], lstm(x2)[0])
    program = torch.export.export(lstm, (x,))
    assert "unroll_lstm_cpu" not in str(program.graph)
    torch.testing.assert_close(program.module()(x2)[0], lstm(x2)[0])


# --- double backward and torch.func ------------------------------------------------------------
def double(case, impl, num_layers=2):
    """A float64 bidirectional layer of ``case`` with ``impl``, weights from seed 0."""
    ours_cls, _, kw, own = CASES[case]
    torch.manual_seed(0)
    return ours_cls(
        C, H, num_layers, bidirectional=True, **kw, **own, impl=impl, dtype=torch.float64
    )


def penalty_grads(layer, x, hx, lengths=None):
    """A gradient penalty (as WGAN-GP's): ‖∂loss/∂x‖² differentiated again, w.r.t. x and every
    parameter (None where it does not depend on one, as autograd.grad(allow_unused=True))."""
    x = x.detach().requires_grad_()
    out = layer(x, hx) if lengths is None else layer(x, hx, lengths)  # torch.nn: no lengths
    loss = sum((t * t).sum() for t in flat(out))
    (gx,) = torch.autograd.grad(loss, x, create_graph=True)
    return torch.autograd.grad(gx.square().sum(), [x, *layer.parameters()], allow_unused=True)


@pytest.mark.parametrize("case", [c if c in CORE_CASES else slow(c) for c in CASES])
def test_double_backward_equals_the_reference_loop(case):
    """Second derivatives of every impl equal the reference loop's (and torch.nn's where it has
    the cell), variable lengths too; a tensor wherever the reference has one. Before: the fused
    kernel's backward was first-order only (an error, or with allow_unused=True a None)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, C, generator=g, dtype=torch.float64)
    ref = double(case, "reference")
    hx = tuple(t.double() for t in hx_for(ref)) if isinstance(ref, unroll.LSTM) else None
    for lengths in (None, [T, 2]):
        want = penalty_grads(ref, x, hx, lengths)
        assert all(w is not None for w in want[1:])  # every parameter matters to the penalty
        for impl in ("auto", "fused"):
            layer = double(case, impl)
            got = penalty_grads(layer, x, hx, lengths)
            for name, a, b in zip(["x", *dict(layer.named_parameters())], got, want, strict=True):
                assert a is not None, f"{impl}: no second derivative for {name}"
                torch.testing.assert_close(a, b, msg=lambda m, n=name, i=impl: f"{i} {n}: {m}")
    torch_cls = CASES[case][1]
    if torch_cls is not None:
        theirs = torch_cls(C, H, 2, bidirectional=True, **CASES[case][2], dtype=torch.float64)
        theirs.load_state_dict(ref.state_dict())
        for a, b in zip(penalty_grads(theirs, x, hx), penalty_grads(ref, x, hx), strict=True):
            torch.testing.assert_close(a, b)


def func_results(layer, x, xs, noise):
    """torch.func on ``layer``: checks torch.func.grad against autograd and jacfwd against
    jacrev, and returns jacrev w.r.t. x, the per-sample gradients over xs and the outputs of
    an ensemble (the parameters plus ``noise``, vmapped)."""
    from torch.func import functional_call, grad, jacfwd, jacrev, vmap

    params = {k: v.detach() for k, v in layer.named_parameters()}

    def loss(p, x_):
        return sum((t * t).sum() for t in flat(functional_call(layer, p, (x_,))))

    def y(p, x_):
        return flat(functional_call(layer, p, (x_,)))[0]

    layer.zero_grad()
    loss(dict(layer.named_parameters()), x).backward()
    by_func = grad(loss)(params, x)
    for k, p in layer.named_parameters():
        torch.testing.assert_close(by_func[k], p.grad, msg=lambda m, k=k: f"{k}: {m}")
    jac = jacrev(y, argnums=1)(params, x)
    if layer.implementation == "torch":
        # torch's kernel (as torch.nn's modules) has no forward mode on CPU and no vmap rule
        return {"jacrev": jac}
    torch.testing.assert_close(jacfwd(y, argnums=1)(params, x), jac)
    ensemble = {k: v + noise[k] for k, v in params.items()}
    return {
        "jacrev": jac,
        "per-sample grads": vmap(grad(loss), in_dims=(None, 0))(params, xs),
        "ensemble": vmap(y, in_dims=(0, None))(ensemble, x),
    }


@pytest.mark.parametrize("case", [c if c in CORE_CASES else slow(c) for c in CASES])
def test_torch_func_equals_autograd(case):
    """torch.func.grad equals autograd; per-sample gradients (vmap of grad), jacrev, jacfwd
    and vmap over the weights (an ensemble) equal the reference loop's. Before: the fused
    kernel's Function had no setup_context, so every torch.func transform refused it."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(T, B, C, generator=g, dtype=torch.float64)
    xs = torch.randn(3, T, B, C, generator=g, dtype=torch.float64)  # 3 samples
    ref = double(case, "reference", num_layers=1)
    noise = {
        k: 0.1 * torch.randn(2, *v.shape, generator=g, dtype=v.dtype)
        for k, v in ref.named_parameters()
    }
    want = func_results(ref, x, xs, noise)
    for impl in ("auto", "fused"):
        got = func_results(double(case, impl, num_layers=1), x, xs, noise)
        for k, v in got.items():
            torch.testing.assert_close(v, want[k], msg=lambda m, i=impl, k=k: f"{i} {k}: {m}")


# --- torch.jit.script and jit.trace ------------------------------------------------------------
class LSTMUser(torch.nn.Module):
    """Scriptable code that calls an LSTM layer (torch.jit.script compiles torch.nn's RNN
    modules only inside such a parent: scripted alone, torch.nn.LSTM has no forward)."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor):
        y, (h, c) = self.rnn(x, (h0, c0))
        return y, h, c


class HiddenStateUser(LSTMUser):
    def forward(self, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor):
        y, h = self.rnn(x, h0)
        return y, h


@pytest.mark.parametrize("case", list(CASES))
def test_jit_script(case):
    """Where the math is torch's, torch.jit.script compiles torch.nn's module on the same
    parameters (`to_torch`) and gives the layer's numbers; an LSTM variant is refused in one
    line that names what works. Before: an internal error deep in `_cudnn_mode`."""
    ours_cls, torch_cls, kw, own = CASES[case]
    layer = ours_cls(C, H, 2, **kw, **own)
    user = (LSTMUser if ours_cls is unroll.LSTM else HiddenStateUser)(layer)
    if torch_cls is None:
        with pytest.raises(RuntimeError) as err:
            torch.jit.script(user)
        message = str(err.value)
        assert "\n" not in message and "cannot be scripted (an LSTM variant" in message
        assert message.endswith("use torch.jit.trace, torch.export or torch.compile")
        return
    x, hx = torch.randn(T + 2, B, C), hx_for(layer, seed=5)
    h0, c0 = hx if isinstance(hx, tuple) else (hx, hx)
    want = user(x, h0, c0)
    scripted = torch.jit.script(user)
    for a, b in zip(scripted(x, h0, c0), want, strict=True):
        torch.testing.assert_close(a, b)
    # torch.jit.script swaps the prepared module into the parent, in place: the same math
    # on the same parameters
    assert type(user.rnn) is torch_cls and user.rnn.weight_hh_l1 is layer.weight_hh_l1
    for a, b in zip(user(x, h0, c0), want, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("cell", ["LSTMCell", "GRUCell", "RNNCell"])
def test_jit_script_cells(cell):
    ours = getattr(unroll, cell)(C, H)
    x = torch.randn(B, C)
    torch.testing.assert_close(torch.jit.script(torch.nn.Sequential(ours))(x), ours(x))
    if cell == "LSTMCell":
        with pytest.raises(RuntimeError, match=r"peephole=True: .* use torch.jit.trace"):
            torch.jit.script(torch.nn.Sequential(unroll.LSTMCell(C, H, peephole=True)))


@pytest.mark.parametrize(
    "case,impl",
    [(c, i) if i == DEFAULT_IMPL[c] else slow(c, i) for c in CASES for i in IMPLS],
)
def test_jit_trace_save_load_round_trips(case, impl):
    """A traced layer saves and loads with its numbers: torch's op where the math is torch's
    (any T), the reference loop for a variant (the example's T, with a warning). Before: the
    fused kernel could not be saved ("Could not export Python function call")."""
    ours_cls, torch_cls, kw, own = CASES[case]
    torch.manual_seed(0)
    layer = FlatIO(ours_cls(C, H, 2, bidirectional=True, **kw, **own, impl=impl))
    lstm = ours_cls is unroll.LSTM

    def inputs(steps, seed):
        hx = hx_for(layer.layer, seed=seed)
        return (torch.randn(steps, B, C), *hx) if lstm else (torch.randn(steps, B, C), hx)

    loop = case not in TORCH_MATH
    with pytest.warns(UserWarning, match="unrolled") if loop else nullcontext():
        traced = torch.jit.trace(layer, inputs(T, 1))
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    buf.seek(0)
    loaded = torch.jit.load(buf)
    for steps in (T,) if loop else (T, T + 3):
        new = inputs(steps, steps)
        for a, b in zip(loaded(*new), layer(*new), strict=True):
            torch.testing.assert_close(a, b)


# --- torch.nn's types: isinstance, _flat_weights, quantization ---------------------------------
@pytest.mark.parametrize("case", ["LSTM", "LSTM-proj", "GRU", "RNN_RELU"])
def test_flat_weights_and_the_torch_twin(case):
    """`_flat_weights` (and its names) as torch.nn's. isinstance(layer, nn.LSTM) is False
    (see README: dynamo graph-breaks on every nn.LSTM/GRU/RNN, and quantization matches exact
    types anyway); `to_torch()` is the torch.nn module on the same parameters."""
    ours_cls, torch_cls, kw, _ = CASES[case]
    theirs = torch_cls(C, H, 2, bidirectional=True, **kw)
    ours = ours_cls(C, H, 2, bidirectional=True, **kw)
    ours.load_state_dict(theirs.state_dict())
    assert ours._flat_weights_names == theirs._flat_weights_names
    for a, b in zip(ours._flat_weights, theirs._flat_weights, strict=True):
        assert torch.equal(a, b)
    assert not isinstance(ours, torch_cls)
    twin = ours.to_torch()
    assert type(twin) is torch_cls and all(
        a is b for a, b in zip(twin.parameters(), ours.parameters(), strict=True)
    )
    x, hx = torch.randn(T, B, C), hx_for(theirs)
    for a, b in zip(flat(twin(x, hx)), flat(theirs(x, hx)), strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match=r"no torch.nn module computes it \(an LSTM variant"):
        unroll.LSTM(C, H, coupled=True).to_torch()


def test_quantize_dynamic_says_it_leaves_unroll_layers_float():
    """torch.ao.quantization swaps torch.nn modules by exact type: it used to leave ours float
    without a word. Now it warns, and `to_torch()` quantizes."""
    quantization = torch.ao.quantization
    torch.manual_seed(0)
    model = torch.nn.Sequential(unroll.LSTM(C, H))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        with pytest.warns(UserWarning, match="leaves unroll modules in float.*to_torch"):
            quantization.quantize_dynamic(model, dtype=torch.qint8)
        twin = torch.nn.Sequential(model[0].to_torch())
        quantized = quantization.quantize_dynamic(twin, dtype=torch.qint8)
    assert type(quantized[0]) is torch.ao.nn.quantized.dynamic.LSTM
    x = torch.randn(T, B, C)
    torch.testing.assert_close(quantized(x)[0], model(x)[0], atol=0.05, rtol=0)


@pytest.mark.parametrize("case", ["LSTM", "GRU", "RNN_RELU"])
def test_dropout_with_one_layer_warns_as_torch(case):
    ours_cls, torch_cls, kw, _ = CASES[case]
    seen = []
    for cls in (torch_cls, ours_cls):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cls(C, H, 1, dropout=0.25, **kw)
        seen.append([(w.category, str(w.message)) for w in caught])
    assert seen[0] == seen[1] and len(seen[0]) == 1


# --- torch.save(model) / torch.load ------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES) + ["LSTMCell", "GRUCell", "RNNCell"])
def test_torch_load_of_a_saved_model(case):
    """torch.load's default (weights_only=True) takes unroll's modules: only the user's own
    classes need allowlisting (torch.nn.LSTM itself is not allowlisted, torch 2.13)."""
    if case.endswith("Cell"):
        module = getattr(unroll, case)(C, H)
        x = torch.randn(B, C)
    else:
        ours_cls, _, kw, own = CASES[case]
        module, x = ours_cls(C, H, 2, **kw, **own), torch.randn(T, B, C)
    model = torch.nn.Sequential(module)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    with torch.serialization.safe_globals([torch.nn.Sequential]):
        loaded = torch.load(buf)
    assert type(loaded[0]) is type(module)
    for a, b in zip(leaves(loaded(x)), leaves(model(x)), strict=True):
        assert torch.equal(a, b)


# --- acceptance: pytorch/examples' word_language_model with unroll's layers swapped in ---------
class WordLanguageModel(torch.nn.Module):
    """pytorch/examples word_language_model's RNNModel (model.py; the recurrent types, untied),
    with its RNN classes taken from ``lib``: torch.nn, or unroll (the three-line swap)."""

    def __init__(self, lib, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5):
        super().__init__()
        self.ntoken = ntoken
        self.drop = torch.nn.Dropout(dropout)
        self.encoder = torch.nn.Embedding(ntoken, ninp)
        if rnn_type in ["LSTM", "GRU"]:
            self.rnn = getattr(lib, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        else:
            nonlinearity = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}[rnn_type]
            self.rnn = lib.RNN(ninp, nhid, nlayers, nonlinearity=nonlinearity, dropout=dropout)
        self.decoder = torch.nn.Linear(nhid, ntoken)
        initrange = 0.1
        torch.nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        torch.nn.init.zeros_(self.decoder.bias)
        torch.nn.init.uniform_(self.decoder.weight, -initrange, initrange)
        self.rnn_type, self.nhid, self.nlayers = rnn_type, nhid, nlayers

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        decoded = decoded.view(-1, self.ntoken)
        return torch.nn.functional.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        if self.rnn_type == "LSTM":
            return (
                weight.new_zeros(self.nlayers, bsz, self.nhid),
                weight.new_zeros(self.nlayers, bsz, self.nhid),
            )
        return weight.new_zeros(self.nlayers, bsz, self.nhid)


def train_word_language_model(lib, rnn_type, steps=4, V=50, bptt=6, batch=3):
    """main.py's train(): truncated BPTT on random ids, clip 0.25, plain SGD (lr 20); returns
    the losses, the final weights and the model."""
    torch.manual_seed(1111)  # main.py's seed
    model = WordLanguageModel(lib, rnn_type, V, 8, 8, 2, dropout=0.2)
    data = torch.randint(V, (steps * bptt + 1, batch), generator=torch.Generator().manual_seed(0))
    model.train()
    hidden, losses = model.init_hidden(batch), []
    for i in range(0, steps * bptt, bptt):
        source, targets = data[i : i + bptt], data[i + 1 : i + 1 + bptt].reshape(-1)
        model.zero_grad()
        hidden = tuple(h.detach() for h in hidden) if rnn_type == "LSTM" else hidden.detach()
        output, hidden = model(source, hidden)
        loss = torch.nn.functional.nll_loss(output, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-20)
        losses.append(loss.item())
    return losses, model.state_dict(), model


@pytest.mark.parametrize("rnn_type", ["LSTM", "GRU", "RNN_TANH"])
def test_word_language_model_trains_bit_identically(rnn_type):
    """The acceptance check of issue 16: swapping unroll's layers into pytorch/examples' model
    (impl="auto") gives the same losses and weights, bit for bit; the saved model loads."""
    want_losses, want_weights, _ = train_word_language_model(torch.nn, rnn_type)
    losses, weights, model = train_word_language_model(unroll, rnn_type)
    assert losses == want_losses
    assert weights.keys() == want_weights.keys()
    for k in weights:
        assert torch.equal(weights[k], want_weights[k]), k
    buf = io.BytesIO()
    torch.save(model, buf)  # as main.py saves its best model
    buf.seek(0)
    torch_nn = [torch.nn.Dropout, torch.nn.Embedding, torch.nn.Linear]
    with torch.serialization.safe_globals([WordLanguageModel, *torch_nn]):
        loaded = torch.load(buf)  # weights_only: unroll's layers need no allowlisting
    assert type(loaded.rnn) is type(model.rnn)
