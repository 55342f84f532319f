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
import warnings

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
    "LSTM-peephole": (unroll.LSTM, None, {}, {"peephole": True}),
    "LSTM-coupled": (unroll.LSTM, None, {}, {"coupled": True, "forget_bias": 1.0}),
    "LSTM-peephole-proj": (unroll.LSTM, None, {"proj_size": P}, {"peephole": True}),
}


def hx_for(layer, batch=B, seed=1):
    g = torch.Generator().manual_seed(seed)
    L = layer.num_layers * (2 if layer.bidirectional else 1)
    h = torch.randn(L, batch, layer.proj_size or layer.hidden_size, generator=g)
    if isinstance(layer, (unroll.LSTM, torch.nn.LSTM)):
        return h, torch.randn(L, batch, layer.hidden_size, generator=g)
    return h


def flat(out):
    """(y, h) or (y, (h, c)) -> [y, h(, c)]."""
    y, hn = out
    return [y, *hn] if isinstance(hn, tuple) else [y, hn]


# --- the call: forward(input, hx=None), state= kept as an alias ----------------------------------
@pytest.mark.parametrize("case", ["LSTM", "LSTM-proj", "GRU", "RNN_RELU"])
def test_forward_takes_torch_argument_names(case):
    ours_cls, torch_cls, kw, _ = CASES[case]
    torch.manual_seed(0)
    theirs = torch_cls(C, H, num_layers=2, **kw)
    ours = ours_cls(C, H, num_layers=2, **kw)
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


@pytest.mark.parametrize(
    "case,impl",
    [
        ("LSTM", "auto"),  # was: "expected all tensors_saved_with_vc_check to be Tensors"
        ("LSTM", "fused"),
        ("LSTM-proj", "auto"),
        ("LSTM-peephole-proj", "auto"),  # the reference loop
        ("GRU", "auto"),
    ],
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


def export_and_run(layer, exporter, dynamic_T=False):
    """Export ``layer`` with onnx, run the file in onnxruntime on new inputs (another T when
    dynamic_T), and return (onnx outputs, eager outputs, op types in the graph)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    layer.eval()
    lstm = isinstance(layer, unroll.LSTM)
    names = ["input", "h0", "c0"] if lstm else ["input", "h0"]
    kw = {"input_names": names}
    if dynamic_T:
        kw["dynamic_axes"] = {"input": {0: "T"}}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the exporters' own notices (deprecations, "not a leaf", ...) are not ours to judge
        warnings.filterwarnings("ignore", module="torch|onnx|onnxscript")
        torch.onnx.export(
            layer,
            (torch.randn(T, B, C), hx_for(layer, seed=7)),
            buf,
            dynamo=exporter == "dynamo",
            **kw,
        )
    model = onnx.load_from_string(buf.getvalue())
    session = ort.InferenceSession(buf.getvalue())
    x = torch.randn(T + 3 if dynamic_T else T, B, C)  # new values: nothing may be baked in
    hx = hx_for(layer, seed=3)
    feeds = [x, *hx] if lstm else [x, hx]
    got = session.run(None, {i.name: v.numpy() for i, v in zip(session.get_inputs(), feeds)})
    with torch.no_grad():
        want = flat(layer(x, hx))
    return [torch.from_numpy(g) for g in got], want, {n.op_type for n in model.graph.node}


ONNX_CASES = [
    ("LSTM", "fused"),  # was: the dynamo exporter failed, the TorchScript one baked constants
    ("LSTM-peephole", "auto"),  # the fused kernel by default: the same
    ("LSTM-coupled", "fused"),
    ("LSTM-proj", "auto"),  # torch.nn.LSTM(proj_size) does not export at all
    ("LSTM-peephole-proj", "auto"),
    ("GRU", "auto"),
    ("RNN_RELU", "reference"),
]
DYNAMO_CASES = {("LSTM", "fused"), ("LSTM-peephole", "auto"), ("LSTM-proj", "auto")}  # ~2 s each


@pytest.mark.parametrize(
    "case,impl,exporter",
    [(*c, "torchscript") for c in ONNX_CASES] + [(*c, "dynamo") for c in sorted(DYNAMO_CASES)],
)
def test_onnx_export_runs_in_onnxruntime(case, impl, exporter):
    ours_cls, _, kw, own = CASES[case]
    torch.manual_seed(0)
    layer = ours_cls(C, H, num_layers=2, bidirectional=True, **kw, **own, impl=impl)
    reference_loop = impl == "reference" or own or kw.get("proj_size")
    ctx = pytest.warns(UserWarning, match=f"unrolled over the example input's T = {T}")
    if not (reference_loop and exporter == "torchscript"):
        ctx = warnings.catch_warnings()
    with ctx:
        got, want, ops = export_and_run(layer, exporter)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    if case in ("LSTM", "GRU"):  # a standard cell becomes the ONNX op, whatever impl runs eagerly
        assert case in ops


@pytest.mark.parametrize("impl", ["auto", "fused"])
def test_onnx_export_of_a_standard_lstm_takes_any_length(impl):
    """The standard LSTM exports as the ONNX LSTM op, so a dynamic T axis works; the fused
    kernel used to bake its outputs into the file as constants."""
    got, want, ops = export_and_run(
        unroll.LSTM(C, H, forget_bias=1.0, impl=impl), "torchscript", dynamic_T=True
    )
    assert got[0].shape[0] == T + 3
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert "LSTM" in ops


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
