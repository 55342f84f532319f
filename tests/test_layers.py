"""Layers vs torch.nn.LSTM/GRU/RNN and across implementations: outputs, states, all gradients."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import unroll

D = torch.float64
T, B, C, H = 5, 3, 4, 3
LENGTHS = [3, 5, 1]  # unsorted on purpose (enforce_sorted=False semantics)

TORCH = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU, "RNN": torch.nn.RNN}
KINDS = {  # name: (unroll class, torch class, extra kwargs)
    "LSTM": (unroll.LSTM, torch.nn.LSTM, {}),
    "GRU": (unroll.GRU, torch.nn.GRU, {}),
    "RNN_TANH": (unroll.RNN, torch.nn.RNN, {"nonlinearity": "tanh"}),
    "RNN_RELU": (unroll.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
}
CONFIGS = [
    {},
    {"num_layers": 2},
    {"bidirectional": True},
    {"num_layers": 2, "bidirectional": True, "batch_first": True},
    {"num_layers": 2, "bias": False, "batch_first": True},
]


def run(module, x, state, mode, seed=1):
    """Forward + backward of a fixed random projection of (y, final state).

    mode: "padded" (all T steps), "lengths" (x padded, lengths=LENGTHS) or "packed".
    Returns a dict: y (padded, zeros at padded steps), final state tensors, and the gradients
    of x, of the initial state and of every parameter (by name).
    """
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    state = None if state is None else tuple(s.detach().clone().requires_grad_(True) for s in state)
    lstm = isinstance(module, (torch.nn.LSTM, unroll.LSTM))
    arg = None if state is None else (state if lstm else state[0])
    bf = module.batch_first
    is_torch = isinstance(module, torch.nn.RNNBase)
    if mode == "padded":
        y, hn = module(x, arg)
    elif mode == "lengths" and not is_torch:
        y, hn = module(x, arg, lengths=torch.tensor(LENGTHS))
    else:  # packed (torch runs "lengths" this way too)
        packed = pack_padded_sequence(
            x, torch.tensor(LENGTHS), batch_first=bf, enforce_sorted=False
        )
        y, hn = module(packed, arg)
        assert isinstance(y, PackedSequence)
        if mode == "packed":
            assert torch.equal(y.batch_sizes, packed.batch_sizes)
            assert torch.equal(y.sorted_indices, packed.sorted_indices)
        y = pad_packed_sequence(y, batch_first=bf, total_length=T)[0]
    hn = hn if lstm else (hn,)
    g = torch.Generator().manual_seed(seed)
    loss = (y * torch.randn(y.shape, generator=g, dtype=y.dtype)).sum()
    for s in hn:
        loss = loss + (s * torch.randn(s.shape, generator=g, dtype=s.dtype)).sum()
    loss.backward()
    out = {"y": y.detach(), **{f"state{i}": s.detach() for i, s in enumerate(hn)}, "dx": x.grad}
    if state is not None:
        out.update({f"d_state{i}": s.grad for i, s in enumerate(state)})
    for name, p in module.named_parameters():
        out[f"d_{name}"] = p.grad if p.grad is not None else torch.zeros_like(p)
    return out


def assert_same(a, b, **tol):
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=lambda m, k=k: f"{k}: {m}", **tol)


def make_x(batch_first=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, C, generator=g, dtype=D)
    return x.transpose(0, 1).contiguous() if batch_first else x


def make_state(kind, cfg, seed=2):
    """(h_0,) or the LSTM's (h_0, c_0); h_0 has proj_size units when cfg projects."""
    g = torch.Generator().manual_seed(seed)
    n = cfg.get("num_layers", 1) * (2 if cfg.get("bidirectional") else 1)
    sizes = (cfg.get("proj_size") or H, H) if kind == "LSTM" else (H,)
    return tuple(torch.randn(n, B, size, generator=g, dtype=D) for size in sizes)


@pytest.mark.parametrize("mode", ["padded", "lengths", "packed"])
@pytest.mark.parametrize("given_state", [False, True])
@pytest.mark.parametrize(
    "cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "default"
)
@pytest.mark.parametrize("kind", list(KINDS))
def test_matches_torch(kind, cfg, given_state, mode):
    ours_cls, torch_cls, extra = KINDS[kind]
    torch.manual_seed(0)
    theirs = torch_cls(C, H, **extra, **cfg, dtype=D)
    x, state = make_x(cfg.get("batch_first", False)), make_state(kind, cfg) if given_state else None
    want = run(theirs, x, state, mode)
    impls = ("reference", "auto", "fused")
    for impl in impls:
        ours = ours_cls(C, H, **extra, **cfg, impl=impl, dtype=D)
        ours.load_state_dict(theirs.state_dict())
        assert_same(run(ours, x, state, mode), want)


PROJ_CONFIGS = [
    {"proj_size": 2},
    {"proj_size": 2, "num_layers": 2, "bidirectional": True, "batch_first": True},
    {"proj_size": 1, "num_layers": 2, "bias": False},
]


@pytest.mark.parametrize("mode", ["padded", "lengths", "packed"])
@pytest.mark.parametrize("given_state", [False, True])
@pytest.mark.parametrize(
    "cfg", PROJ_CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items())
)
def test_lstm_projection_matches_torch(cfg, given_state, mode):
    """proj_size (LSTMP): torch's kernel and the reference loop; "fused" runs torch's kernel."""
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(C, H, **cfg, dtype=D)
    x, state = (
        make_x(cfg.get("batch_first", False)),
        make_state("LSTM", cfg) if given_state else None,
    )
    want = run(theirs, x, state, mode)
    for impl, runs in (("reference", "reference"), ("auto", "torch"), ("fused", "torch")):
        ours = unroll.LSTM(C, H, **cfg, impl=impl, dtype=D)
        assert ours.implementation == runs
        ours.load_state_dict(theirs.state_dict())
        assert_same(run(ours, x, state, mode), want)


def test_lstm_variants_with_projection():
    """A variant with a projection runs the reference loop (the fused kernel has no
    projection). Peepholes at zero are the standard cell, so torch.nn.LSTM checks the
    projection's wiring; forget_bias is checked against torch's kernel with the bias folded."""
    torch.manual_seed(0)
    cfg = {"num_layers": 2, "bidirectional": True, "proj_size": 2}
    theirs = torch.nn.LSTM(C, H, **cfg, dtype=D)
    x, state = make_x(), make_state("LSTM", cfg)
    for impl in ("auto", "fused"):
        peep = unroll.LSTM(C, H, **cfg, peephole=True, impl=impl, dtype=D)
        assert peep.implementation == "reference"
        assert peep.weight_hr_l1_reverse.shape == (2, H)
        peep.load_state_dict(theirs.state_dict(), strict=False)
        with torch.no_grad():
            for name, p in peep.named_parameters():
                if name.startswith(("weight_ci", "weight_cf", "weight_co")):
                    p.zero_()
        got = run(peep, x, state, "lengths")
        got = {k: v for k, v in got.items() if not k.startswith("d_weight_c")}
        assert_same(got, run(theirs, x, state, "packed"))
    ref = unroll.LSTM(C, H, **cfg, forget_bias=0.75, impl="reference", dtype=D)
    auto = unroll.LSTM(C, H, **cfg, forget_bias=0.75, dtype=D)
    assert auto.implementation == "torch"
    auto.load_state_dict(ref.state_dict())
    assert_same(run(auto, x, state, "lengths"), run(ref, x, state, "lengths"))


VARIANTS = {
    "forget_bias": {"forget_bias": 1.0},
    "peephole": {"peephole": True},
    "coupled": {"coupled": True},
    "peephole+coupled": {"peephole": True, "coupled": True, "forget_bias": -0.5},
}


@pytest.mark.parametrize("mode", ["padded", "lengths", "packed"])
@pytest.mark.parametrize("given_state", [False, True])
@pytest.mark.parametrize(
    "cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "default"
)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_lstm_variants_fused_and_auto_match_reference(variant, cfg, given_state, mode):
    torch.manual_seed(0)
    ref = unroll.LSTM(C, H, **VARIANTS[variant], **cfg, impl="reference", dtype=D)
    x, state = (
        make_x(cfg.get("batch_first", False)),
        make_state("LSTM", cfg) if given_state else None,
    )
    want = run(ref, x, state, mode)
    for impl in ("fused", "auto"):
        other = unroll.LSTM(C, H, **VARIANTS[variant], **cfg, impl=impl, dtype=D)
        other.load_state_dict(ref.state_dict())
        assert_same(run(other, x, state, mode), want)


def test_forget_bias_is_the_bias_shifted():
    """forget_bias adds a constant to the f rows: the same as a standard LSTM with that bias."""
    torch.manual_seed(0)
    for impl in ("reference", "fused", "auto"):
        a = unroll.LSTM(C, H, 2, forget_bias=1.25, impl=impl, dtype=D)
        b = torch.nn.LSTM(C, H, 2, dtype=D)
        b.load_state_dict(a.state_dict())
        with torch.no_grad():
            for k in range(2):
                getattr(b, f"bias_hh_l{k}")[H : 2 * H] += 1.25
        x = make_x()
        torch.testing.assert_close(a(x)[0], b(x)[0])
        assert torch.equal(a.state_dict()["bias_ih_l0"], b.state_dict()["bias_ih_l0"])  # not stored


def test_forget_bias_without_bias():
    torch.manual_seed(0)
    ref = unroll.LSTM(C, H, bias=False, forget_bias=2.0, impl="reference", dtype=D)
    x = make_x()
    for impl in ("fused", "auto"):
        other = unroll.LSTM(C, H, bias=False, forget_bias=2.0, impl=impl, dtype=D)
        other.load_state_dict(ref.state_dict())
        assert_same(run(other, x, None, "lengths"), run(ref, x, None, "lengths"))


@pytest.mark.parametrize("impl", ["reference", "fused", "auto"])
@pytest.mark.parametrize(
    "kind,variant",
    [
        ("LSTM", "standard"),
        ("LSTM", "peephole+coupled"),
        ("LSTM", "peephole"),
        ("GRU", "standard"),
        ("RNN_RELU", "standard"),
    ],
)
def test_variable_lengths_equal_separate_runs(kind, variant, impl):
    """Each sequence of a padded batch gives what it gives alone, without padding: padded steps
    never touch the state; the reverse direction starts at each sequence's own last step."""
    ours_cls, _, extra = KINDS[kind]
    kw = VARIANTS[variant] if variant != "standard" else {}
    torch.manual_seed(0)
    layer = ours_cls(C, H, num_layers=2, bidirectional=True, **extra, **kw, impl=impl, dtype=D)
    x = make_x()
    x[3:, 0] = 1e3  # garbage in the padding must not matter
    x[1:, 2] = float("nan")
    y, hn = layer(x, lengths=LENGTHS)
    hn = hn if kind == "LSTM" else (hn,)
    for b, n in enumerate(LENGTHS):
        y_b, hn_b = layer(x[:n, b : b + 1])
        hn_b = hn_b if kind == "LSTM" else (hn_b,)
        torch.testing.assert_close(y[:n, b : b + 1], y_b)
        assert torch.all(y[n:, b] == 0)
        for s, s_b in zip(hn, hn_b):
            torch.testing.assert_close(s[:, b : b + 1], s_b)


def test_unbatched_input_matches_torch():
    torch.manual_seed(0)
    for kind in KINDS:
        ours_cls, torch_cls, extra = KINDS[kind]
        theirs = torch_cls(C, H, 2, bidirectional=True, **extra, dtype=D)
        for impl in ("reference", "auto", "fused"):
            ours = ours_cls(C, H, 2, bidirectional=True, **extra, impl=impl, dtype=D)
            ours.load_state_dict(theirs.state_dict())
            x = make_x()[:, 0]
            (ya, ha), (yb, hb) = ours(x), theirs(x)
            torch.testing.assert_close(ya, yb)
            for u, v in zip(ha if kind == "LSTM" else [ha], hb if kind == "LSTM" else [hb]):
                torch.testing.assert_close(u, v)


def test_state_dict_round_trip_with_torch():
    torch.manual_seed(0)
    for kind in KINDS:
        ours_cls, torch_cls, extra = KINDS[kind]
        ours = ours_cls(C, H, 2, bidirectional=True, **extra, dtype=D)
        theirs = torch_cls(C, H, 2, bidirectional=True, **extra, dtype=D)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        theirs.load_state_dict(ours.state_dict())  # ours -> torch
        x = make_x()
        torch.testing.assert_close(ours(x)[0], theirs(x)[0])
        torch.nn.init.normal_(theirs.weight_hh_l1_reverse)  # torch -> ours
        ours.load_state_dict(theirs.state_dict())
        for impl in ("reference", "fused", "auto"):
            ours.impl = impl
            torch.testing.assert_close(ours(x)[0], theirs(x)[0])


def test_parameter_names_init_and_reset():
    lstm = unroll.LSTM(C, 16, 2, bidirectional=True, peephole=True)
    names = [n for n, _ in lstm.named_parameters()]
    assert names[:6] == [
        "weight_ih_l0",
        "weight_hh_l0",
        "bias_ih_l0",
        "bias_hh_l0",
        "weight_ci_l0",
        "weight_cf_l0",
    ]
    assert "weight_co_l1_reverse" in names
    assert "weight_ci_l0" not in dict(
        unroll.LSTM(C, H, peephole=True, coupled=True).named_parameters()
    )
    assert all(p.abs().max() <= 0.25 for p in lstm.parameters())
    before = lstm.weight_co_l0.detach().clone()
    lstm.reset_parameters()
    assert not torch.equal(before, lstm.weight_co_l0)
    assert list(unroll.LSTM(C, H).state_dict()) == list(torch.nn.LSTM(C, H).state_dict())


def test_implementation_switch():
    assert unroll.LSTM(C, H).implementation == "torch"
    assert unroll.LSTM(C, H, forget_bias=1.0).implementation == "torch"
    assert unroll.LSTM(C, H, peephole=True).implementation == "fused"
    assert unroll.LSTM(C, H, coupled=True).implementation == "fused"
    assert unroll.LSTM(C, H, impl="fused").implementation == "fused"
    assert unroll.LSTM(C, H, peephole=True, impl="reference").implementation == "reference"
    assert unroll.GRU(C, H).implementation == "torch"
    assert unroll.GRU(C, H, impl="fused").implementation == "torch"
    assert unroll.RNN(C, H, impl="reference").implementation == "reference"


def test_coupled_layer_input_gate_rows_get_zero_grad():
    torch.manual_seed(0)
    for impl in ("reference", "fused"):
        lstm = unroll.LSTM(C, H, coupled=True, impl=impl, dtype=D)
        y, _ = lstm(make_x())
        y.sum().backward()
        assert lstm.weight_ih_l0.grad[:H].abs().max() == 0
        assert lstm.bias_hh_l0.grad[:H].abs().max() == 0
        assert lstm.weight_hh_l0.grad[H:].abs().max() > 0


# --- dropout: between layers only, training mode only ---------------------------------------
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN_TANH"])
@pytest.mark.parametrize("impl", ["reference", "fused", "auto"])
def test_dropout_only_between_layers(kind, impl):
    ours_cls, _, extra = KINDS[kind]
    torch.manual_seed(0)
    x = make_x()
    two = ours_cls(C, H, 2, dropout=0.5, **extra, impl=impl, dtype=D).train()
    plain = ours_cls(C, H, 2, **extra, impl=impl, dtype=D)
    plain.load_state_dict(two.state_dict())
    # eval: no dropout at all
    two.eval()
    torch.testing.assert_close(two(x)[0], plain(x)[0])
    two.train()
    # training: exactly one dropout on layer 0's output, i.e. layer 1's input — nothing on the
    # recurrent state (which would change layer 0's own outputs/state) or on layer 1's output.
    l0 = ours_cls(C, H, 1, **extra, impl=impl, dtype=D)
    l1 = ours_cls(H, H, 1, **extra, impl=impl, dtype=D)
    sd = two.state_dict()
    l0.load_state_dict({k: v for k, v in sd.items() if k.endswith("_l0")})
    l1.load_state_dict({k.replace("_l1", "_l0"): v for k, v in sd.items() if k.endswith("_l1")})
    torch.manual_seed(5)
    y, hn = two(x)
    torch.manual_seed(5)
    y0, hn0 = l0(x)
    y1, hn1 = l1(F.dropout(y0, 0.5, training=True))
    assert not torch.allclose(y, plain(x)[0])
    torch.testing.assert_close(y, y1)
    for u, v0, v1 in zip(
        hn if kind == "LSTM" else [hn],
        hn0 if kind == "LSTM" else [hn0],
        hn1 if kind == "LSTM" else [hn1],
    ):
        torch.testing.assert_close(u, torch.cat([v0, v1]))


@pytest.mark.parametrize("impl", ["reference", "fused", "auto"])
def test_dropout_has_no_effect_with_one_layer(impl):
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="expects num_layers greater than 1"):  # as torch.nn
        a = unroll.LSTM(C, H, 1, dropout=0.9, impl=impl, dtype=D).train()
    b = unroll.LSTM(C, H, 1, impl=impl, dtype=D)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(make_x())[0], b(make_x())[0])


# --- graph-capture friendliness: the fixed-length path runs on the meta device -------------
@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_fixed_length_path_has_no_data_dependent_host_code(impl):
    """On 'meta' tensors there are no values, so any .item()/value-dependent branch would fail."""
    lstm = unroll.LSTM(C, H, 2, bidirectional=True, peephole=True, impl=impl, device="meta")
    y, (h, c) = lstm(torch.randn(T, B, C, device="meta"))
    (y.sum() + h.sum() + c.sum()).backward()
    assert lstm.weight_hh_l1.grad.shape == lstm.weight_hh_l1.shape


# --- bad input ----------------------------------------------------------------------------------
def test_errors():
    lstm = unroll.LSTM(200, 8, num_layers=2)
    x = torch.randn(4, 3, 200)
    with pytest.raises(
        ValueError, match=r"^LSTM: expected input with 200 features \(last dim\), got 128$"
    ):
        lstm(torch.randn(4, 3, 128))
    with pytest.raises(ValueError, match=r"expected h_0 of shape \(2, 3, 8\), got \(1, 3, 8\)"):
        lstm(x, (torch.zeros(1, 3, 8), torch.zeros(2, 3, 8)))
    with pytest.raises(ValueError, match=r"expected c_0 of shape \(2, 3, 8\), got \(2, 4, 8\)"):
        lstm(x, (torch.zeros(2, 3, 8), torch.zeros(2, 4, 8)))
    with pytest.raises(ValueError, match="pair"):
        lstm(x, torch.zeros(2, 3, 8))
    with pytest.raises(
        ValueError, match="expected input of dtype torch.float32.*got torch.float64"
    ):
        lstm(x.double())
    with pytest.raises(ValueError, match="expected h_0 of dtype torch.float32.*got torch.float64"):
        lstm(x, (torch.zeros(2, 3, 8, dtype=D), torch.zeros(2, 3, 8)))
    with pytest.raises(ValueError, match="expected c_0 on device cpu.*got meta"):
        lstm(x, (torch.zeros(2, 3, 8), torch.zeros(2, 3, 8, device="meta")))
    with pytest.raises(ValueError, match="expected input on device cpu.*got meta"):
        lstm(torch.zeros(4, 3, 200, device="meta"))
    with pytest.raises(ValueError, match=r"shape \(T, B, C\)"):
        lstm(torch.randn(1, 4, 3, 200))
    with pytest.raises(ValueError, match=r"expected every length in \[1, 4\].*max 5"):
        lstm(x, lengths=[4, 5, 1])
    with pytest.raises(ValueError, match=r"expected every length in \[1, 4\].*min 0"):
        lstm(x, lengths=torch.tensor([4, 0, 1]))
    with pytest.raises(ValueError, match="expected 3 lengths.*got 2"):
        lstm(x, lengths=[4, 2])
    with pytest.raises(ValueError, match="integer"):
        lstm(x, lengths=torch.tensor([4.0, 2.0, 1.0]))
    packed = pack_padded_sequence(x, [4, 2, 1])
    with pytest.raises(ValueError, match="lengths=None with a PackedSequence"):
        lstm(packed, lengths=[4, 2, 1])
    with pytest.raises(ValueError, match="expected input with 200 features"):
        lstm(pack_padded_sequence(torch.randn(4, 3, 7), [4, 2, 1]))
    with pytest.raises(ValueError, match="expected h_0 of shape"):
        unroll.GRU(200, 8)(x, torch.zeros(1, 2, 8))
    with pytest.raises(ValueError, match="impl"):
        unroll.LSTM(3, 4, impl="cudnn")
    with pytest.raises(ValueError, match="dropout"):
        unroll.GRU(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match="hidden_size"):
        unroll.RNN(3, 0)
    with pytest.raises(ValueError, match="nonlinearity"):
        unroll.RNN(3, 4, nonlinearity="gelu")


def test_peephole_and_coupled_together_train():
    torch.manual_seed(0)
    lstm = unroll.LSTM(C, H, 2, peephole=True, coupled=True)
    opt = torch.optim.Adam(lstm.parameters(), lr=0.05)
    x, target = torch.randn(T, B, C), torch.randn(T, B, H).tanh() * 0.5
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = F.mse_loss(lstm(x)[0], target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(torch.isfinite(p.grad).all() for p in lstm.parameters())


def test_inference_mode_and_no_grad():
    torch.manual_seed(0)
    for impl, kw in itertools.product(("reference", "fused", "auto"), ({}, {"peephole": True})):
        lstm = unroll.LSTM(C, H, 2, impl=impl, **kw)
        x = torch.randn(T, B, C)
        want = lstm(x)[0].detach()
        with torch.inference_mode():
            torch.testing.assert_close(lstm(x)[0], want)
        with torch.no_grad():
            torch.testing.assert_close(lstm(x)[0], want)


def test_module_conversion_and_autocast():
    torch.manual_seed(0)
    lstm = unroll.LSTM(C, H, 2, forget_bias=1.0).double()  # the forget-bias buffer follows
    ref = unroll.LSTM(C, H, 2, forget_bias=1.0, impl="reference", dtype=D)
    ref.load_state_dict(lstm.state_dict())
    torch.testing.assert_close(lstm(make_x())[0], ref(make_x())[0])
    # autocast: the fused kernel computes in the parameters' dtype
    fused = unroll.LSTM(C, H, 2, peephole=True, impl="fused")
    x = make_x().float()
    want = fused(x)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fused(x)[0]
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want)


class _Half(torch.nn.Module):
    def forward(self, w):
        return 0.5 * w


@pytest.mark.parametrize("impl", ["reference", "fused", "auto"])
def test_parametrized_weight_is_used(impl):
    """Weight drop and friends are parametrizations: the layer must read the computed weight."""
    torch.manual_seed(0)
    a = unroll.LSTM(C, H, 2, impl=impl, dtype=D)
    b = unroll.LSTM(C, H, 2, impl=impl, dtype=D)
    b.load_state_dict(a.state_dict())
    torch.nn.utils.parametrize.register_parametrization(a, "weight_hh_l1", _Half())
    with torch.no_grad():
        b.weight_hh_l1.mul_(0.5)
    x = make_x()
    torch.testing.assert_close(a(x)[0], b(x)[0])
    a(x)[0].sum().backward()
    assert a.parametrizations.weight_hh_l1.original.grad is not None


def test_repr_names_the_variant_options_that_are_set():
    cell = unroll.LSTMCell(3, 4, bias=False, forget_bias=1.0, peephole=True, coupled=True)
    assert repr(cell) == "LSTMCell(3, 4, bias=False, forget_bias=1.0, peephole=True, coupled=True)"
    assert repr(unroll.LSTMCell(3, 4)) == "LSTMCell(3, 4)"
    layer = unroll.LSTM(3, 4, num_layers=2, peephole=True)
    assert repr(layer).endswith(", peephole=True)") and "coupled" not in repr(layer)
    assert "forget_bias=0.5" in repr(unroll.LSTM(3, 4, forget_bias=0.5, coupled=True))
