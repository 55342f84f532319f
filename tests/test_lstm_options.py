"""LSTM/GRU regularisers and layer norm (issue 26): each option against a hand-written
reference of its paper's equations, gradcheck, every implementation against the reference
cell (outputs and all gradients), the combination table, eval-mode forms, reproducible masks."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import unroll
from unroll.nn.cells.lstm import LSTMCell

D = torch.float64
T, B, C, H = 5, 3, 4, 3
LENGTHS = [3, 5, 1]

OPTIONS = {  # name: the layer's keyword options
    "layer_norm": {"layer_norm": True},
    "gal": {"recurrent_dropout": 0.4},
    "semeniuta": {"recurrent_dropout": 0.4, "recurrent_dropout_mode": "semeniuta"},
    "zoneout": {"zoneout": (0.3, 0.5)},
    "weight_drop": {"weight_drop": 0.5},
    "all": {
        "layer_norm": True,
        "recurrent_dropout": 0.3,
        "zoneout": (0.2, 0.4),
        "weight_drop": 0.3,
    },
}


def ln(v):
    """Layer norm without gain, written out (biased variance, eps 1e-5)."""
    mu = v.mean(-1, keepdim=True)
    var = ((v - mu) ** 2).mean(-1, keepdim=True)
    return (v - mu) / torch.sqrt(var + 1e-5)


def by_hand(layer, x, plan, h, c, fb=0.0):
    """One layer/direction of an LSTM written from the papers' equations (not lstm_step):
    Ba et al. 2016 (LN), Gal & Ghahramani 2016 (mask on h_{t-1}), Semeniuta et al. 2016 (mask
    on g), Krueger et al. 2017 (zoneout), Merity et al. 2018 (plan's dropped W_hh)."""
    w_ih, b_ih, b_hh = layer.weight_ih_l0, layer.bias_ih_l0, layer.bias_hh_l0
    w_hh = plan["w_hh"]
    ys = []
    for t in range(x.shape[0]):
        ax = x[t] @ w_ih.T
        hin = h if plan["mask_h"] is None else h * plan["mask_h"]
        ah = hin @ w_hh.T
        if layer.layer_norm:
            ax, ah = ln(ax) * layer.weight_ln_ih_l0, ln(ah) * layer.weight_ln_hh_l0
        a = ax + b_ih + ah + b_hh
        i = torch.sigmoid(a[:, :H])
        f = torch.sigmoid(a[:, H : 2 * H] + fb)
        g = torch.tanh(a[:, 2 * H : 3 * H])
        o = torch.sigmoid(a[:, 3 * H :])
        if plan["mask_g"] is not None:
            g = g * plan["mask_g"]
        c_new = f * c + i * g
        cc = ln(c_new) * layer.weight_ln_c_l0 + layer.bias_ln_c_l0 if layer.layer_norm else c_new
        h_new = o * torch.tanh(cc)
        zc, zh = plan["keep_c"], plan["keep_h"]
        zc = zc[t] if isinstance(zc, torch.Tensor) else zc
        zh = zh[t] if isinstance(zh, torch.Tensor) else zh
        if zc is not None:
            c_new = zc * c + (1 - zc) * c_new
        if zh is not None:
            h_new = zh * h + (1 - zh) * h_new
        h, c = h_new, c_new
        ys.append(h)
    return torch.stack(ys), h, c


def make(kw, impl="reference", seed=0, **cfg):
    torch.manual_seed(seed)
    layer = unroll.LSTM(C, H, **kw, **cfg, impl=impl, dtype=D)
    if layer.layer_norm:  # away from γ = 1, β = 0 so that they matter
        with torch.no_grad():
            for name, p in layer.named_parameters():
                if "_ln_" in name:
                    p.add_(torch.randn_like(p) * 0.3)
    return layer


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, C, generator=g, dtype=D)
    state = tuple(torch.randn(1, B, H, generator=g, dtype=D) for _ in range(2))
    return x, state


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("name", list(OPTIONS))
def test_reference_is_the_papers_equations(name, train):
    """The layer (reference path) equals the equations written out by hand, with the masks
    the layer drew (`_plan`, under the same seed); at eval with their eval forms."""
    layer = make(OPTIONS[name]).train(train)
    x, (h0, c0) = data()
    torch.manual_seed(5)
    y, (h, c) = layer(x, (h0, c0))
    torch.manual_seed(5)
    plan = layer._plan(0, x)
    want_y, want_h, want_c = by_hand(layer, x, plan, h0[0], c0[0])
    torch.testing.assert_close(y, want_y)
    torch.testing.assert_close(h[0], want_h)
    torch.testing.assert_close(c[0], want_c)


def test_masks_are_what_the_papers_say():
    """Gal/Semeniuta: one (B, ·) inverted-dropout mask per sequence; zoneout: (T, B, ·)
    Bernoulli(p) per step and unit in training, p itself at eval; weight drop: W_hh with
    about p of its entries zeroed, the rest scaled by 1/(1 − p)."""
    x = torch.zeros(50, 400, C, dtype=D)
    for mode, key, size in (("gal", "mask_h", 7), ("semeniuta", "mask_g", 12)):
        layer = unroll.LSTM(C, 12, proj_size=7, recurrent_dropout=0.25, dtype=D)
        layer.recurrent_dropout_mode = mode
        plan = layer._plan(0, x)
        m = plan[key]
        assert m.shape == (400, size)
        assert set(m.unique().tolist()) == {0.0, 1 / 0.75}
        assert abs((m == 0).double().mean().item() - 0.25) < 0.03
        assert plan["mask_g" if key == "mask_h" else "mask_h"] is None
    layer = unroll.LSTM(C, 12, proj_size=7, zoneout=(0.2, 0.6), weight_drop=0.5, dtype=D)
    plan = layer._plan(0, x)
    assert plan["keep_c"].shape == (50, 400, 12) and plan["keep_h"].shape == (50, 400, 7)
    assert abs(plan["keep_c"].mean().item() - 0.2) < 0.01
    assert abs(plan["keep_h"].mean().item() - 0.6) < 0.01
    w, dropped = layer.weight_hh_l0, plan["w_hh"]
    kept = dropped != 0
    assert abs(1 - kept.double().mean().item() - 0.5) < 0.15
    torch.testing.assert_close(dropped[kept], w[kept] * 2)
    plan = layer.eval()._plan(0, x)
    assert plan["keep_c"] == 0.2 and plan["keep_h"] == 0.6 and plan["w_hh"] is w


@pytest.mark.parametrize("name", list(OPTIONS))
def test_gradcheck(name):
    """float64 gradcheck of the layer with each option (masks fixed by re-seeding)."""
    layer = make(OPTIONS[name], num_layers=2, bidirectional=True)
    x, _ = data()
    x = x[:3].requires_grad_(True)
    params = [p for _, p in layer.named_parameters()]

    def f(x, *ps):
        torch.manual_seed(3)
        saved = {n: p for n, p in layer.named_parameters()}
        for (n, _), p in zip(layer.named_parameters(), ps):
            _set(layer, n, p)
        try:
            y, (h, c) = layer(x)
        finally:
            for n, p in saved.items():
                _set(layer, n, p)
        return y, h, c

    assert torch.autograd.gradcheck(f, (x, *params))


def _set(module, name, value):
    """Swap a parameter for a tensor (gradcheck's inputs) without re-registering."""
    module._parameters[name] = value


def run(layer, x, state, mode, seed=7):
    """Forward (seeded: the masks) + backward of a fixed projection; outputs and all grads."""
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    state = None if state is None else tuple(s.detach().clone().requires_grad_(True) for s in state)
    torch.manual_seed(seed)
    if mode == "padded":
        y, hn = layer(x, state)
    elif mode == "lengths":
        y, hn = layer(x, state, lengths=torch.tensor(LENGTHS))
    else:
        packed = pack_padded_sequence(x, torch.tensor(LENGTHS), enforce_sorted=False)
        y, hn = layer(packed, state)
        y = pad_packed_sequence(y, total_length=x.shape[0])[0]
    g = torch.Generator().manual_seed(1)
    loss = (y * torch.randn(y.shape, generator=g, dtype=y.dtype)).sum()
    for s in hn:
        loss = loss + (s * torch.randn(s.shape, generator=g, dtype=s.dtype)).sum()
    loss.backward()
    out = {"y": y.detach(), "h": hn[0].detach(), "c": hn[1].detach(), "dx": x.grad}
    if state is not None:
        out.update(dh0=state[0].grad, dc0=state[1].grad)
    for name, p in layer.named_parameters():
        out[f"d_{name}"] = p.grad if p.grad is not None else torch.zeros_like(p)
    return out


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=lambda m, k=k: f"{k}: {m}")


VARIANTS = {
    "plain": {},
    "forget_bias": {"forget_bias": 1.0},
    "peephole": {"peephole": True},
    "coupled": {"coupled": True, "forget_bias": -0.5},
    "peephole+coupled": {"peephole": True, "coupled": True},
}
SHAPES = {
    "1": {},
    "2-layers-bidir": {"num_layers": 2, "bidirectional": True},
    "proj": {"proj_size": 2},
    "bias=False": {"bias": False, "num_layers": 2},
}
REFUSED = {("layer_norm", "coupled"), ("layer_norm", "peephole+coupled"), ("all", "coupled")}
REFUSED |= {("all", "peephole+coupled")}


@pytest.mark.parametrize("mode", ["padded", "lengths", "packed"])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("name", list(OPTIONS))
def test_combination_table(name, variant, shape, mode):
    """Every option with every variant, projection, stacking/bidirectional and variable
    lengths: every implementation equals the reference under the same seed (outputs and all
    gradients), or the combination is refused in one line (REFUSED)."""
    kw = {**OPTIONS[name], **VARIANTS[variant], **SHAPES[shape]}
    if (name, variant) in REFUSED:
        with pytest.raises(ValueError, match="layer_norm=True with coupled=True"):
            unroll.LSTM(C, H, **kw)
        return
    ref = make(kw, "reference")
    x, _ = data()
    L = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    g = torch.Generator().manual_seed(4)
    state = (
        torch.randn(L, B, kw.get("proj_size") or H, generator=g, dtype=D),
        torch.randn(L, B, H, generator=g, dtype=D),
    )
    want = run(ref, x, state, mode)
    for impl in ("fused", "auto"):
        other = make(kw, impl)
        other.load_state_dict(ref.state_dict())
        assert_same(run(other, x, state, mode), want)


def test_implementation_reports_the_fallback():
    """What runs is visible: layer norm on the reference, zoneout and recurrent dropout on the
    fused kernel (dropout: in training; torch's at eval), weight drop on the fused kernel in
    training (auto prefers it), on torch's with a projection."""
    cases = {
        "layer_norm": ("reference", "reference"),
        "zoneout": ("fused", "fused"),
        "gal": ("fused", "torch"),
        "semeniuta": ("fused", "torch"),
        "weight_drop": ("fused", "torch"),
    }
    for name, (train, evaluation) in cases.items():
        layer = unroll.LSTM(C, H, **OPTIONS[name])
        assert (layer.train().implementation, layer.eval().implementation) == (train, evaluation)
    assert unroll.LSTM(C, H, weight_drop=0.5, peephole=True).implementation == "fused"
    assert unroll.LSTM(C, H, zoneout=0.1, proj_size=2).implementation == "reference"
    assert unroll.LSTM(C, H, weight_drop=0.1, proj_size=2).implementation == "torch"


@pytest.mark.parametrize("impl", ["auto", "fused", "reference"])
@pytest.mark.parametrize("name", ["gal", "semeniuta", "weight_drop"])
def test_dropouts_vanish_at_eval(name, impl):
    """At eval, recurrent dropout and weight drop are the plain LSTM (same parameters)."""
    layer = make({**OPTIONS[name], "peephole": True}, impl, num_layers=2).eval()
    plain = make({"peephole": True}, impl, num_layers=2).eval()
    plain.load_state_dict(layer.state_dict())
    x, _ = data()
    torch.testing.assert_close(layer(x)[0], plain(x)[0], rtol=0, atol=0)


def test_zoneout_eval_is_the_expectation():
    """At eval zoneout mixes the previous and the new state by p (Krueger et al. 2017); it is
    the training-mode layer averaged over many masks to first order — checked exactly here
    against the equations with z = p."""
    layer = make(OPTIONS["zoneout"]).eval()
    x, (h0, c0) = data()
    y, (h, c) = layer(x, (h0, c0))
    plan = {"w_hh": layer.weight_hh_l0, "mask_h": None, "mask_g": None}
    plan.update(keep_c=0.3, keep_h=0.5)
    want = by_hand(layer, x, plan, h0[0], c0[0])
    torch.testing.assert_close(y, want[0])
    plain = make({}).eval()
    plain.load_state_dict(layer.state_dict())
    assert not torch.allclose(y, plain(x, (h0, c0))[0])  # not the plain update


def test_masks_reproducible_under_a_seed_and_across_a_resume():
    """The same seed draws the same masks; restoring the RNG state (what a checkpoint holds)
    continues with the same masks as an uninterrupted run."""
    layer = make(OPTIONS["all"], num_layers=2)
    x, _ = data()
    torch.manual_seed(11)
    a1, a2 = layer(x)[0], layer(x)[0]
    torch.manual_seed(11)
    b1 = layer(x)[0]
    rng = torch.get_rng_state()  # a checkpoint here
    torch.manual_seed(999)  # a new process
    _ = layer(x)
    torch.set_rng_state(rng)  # resumed
    b2 = layer(x)[0]
    torch.testing.assert_close(a1, b1, rtol=0, atol=0)
    torch.testing.assert_close(a2, b2, rtol=0, atol=0)
    assert not torch.equal(a1, a2)  # a new draw per forward (per sequence)


def test_masks_are_shared_over_time():
    """Gal's mask is one per sequence: with x = 0 and h_0 = 0, a unit whose h is dropped
    never feeds the gates, at any step."""
    layer = make({"recurrent_dropout": 0.5}, num_layers=1)
    x = torch.randn(T, B, C, dtype=D)
    torch.manual_seed(2)
    plan = layer._plan(0, x)
    mask = plan["mask_h"]
    # Perturbing h_0 in the dropped units changes nothing.
    h0 = torch.randn(1, B, H, dtype=D)
    h0b = h0 + (mask == 0) * 5.0
    c0 = torch.zeros(1, B, H, dtype=D)
    torch.manual_seed(2)
    ya = layer(x, (h0, c0))[0]
    torch.manual_seed(2)
    yb = layer(x, (h0b, c0))[0]
    torch.testing.assert_close(ya, yb)


def test_weight_drop_on_torch_kernel_equals_reference():
    """Weight drop runs on torch's kernel (auto, with a projection): the same masks as the
    reference under one seed, outputs and gradients (W_hh's gradient is masked)."""
    kw = {"weight_drop": 0.5, "forget_bias": 0.5, "proj_size": 2}
    ref = make(kw, "reference", num_layers=2)
    auto = make(kw, "auto", num_layers=2)
    auto.load_state_dict(ref.state_dict())
    assert auto.implementation == "torch"
    x, state = data()
    state = (state[0][..., :2].expand(2, -1, -1).contiguous(), state[1].expand(2, -1, -1))
    state = tuple(s.contiguous() for s in state)
    want = run(ref, x, state, "padded")
    got = run(auto, x, state, "padded")
    assert_same(got, want)
    assert (want["d_weight_hh_l0"] == 0).any()


def test_refused_combinations_and_bad_values():
    for kw, words in (
        ({"layer_norm": True, "coupled": True}, "layer_norm=True with coupled=True"),
        ({"recurrent_dropout": 1.0}, r"recurrent_dropout in \[0, 1\)"),
        ({"recurrent_dropout": -0.1}, r"recurrent_dropout in \[0, 1\)"),
        ({"weight_drop": 1.5}, r"weight_drop in \[0, 1\)"),
        ({"zoneout": (0.1, 0.2, 0.3)}, "zoneout as p or a pair"),
        ({"zoneout": "x"}, r"zoneout in \[0, 1\)"),
        ({"recurrent_dropout_mode": "keras"}, "'gal' or 'semeniuta'"),
    ):
        with pytest.raises(ValueError, match=words):
            unroll.LSTM(C, H, **kw)
    with pytest.raises(ValueError, match="no cell state"):
        unroll.GRU(C, H, zoneout=(0.1, 0.2))
    with pytest.raises(TypeError):
        unroll.GRU(C, H, recurrent_dropout_mode="semeniuta")
    with pytest.raises(TypeError):
        unroll.GRU(C, H, layer_norm=True)


def test_options_not_torch_and_in_repr():
    layer = unroll.LSTM(C, H, layer_norm=True, zoneout=0.1, recurrent_dropout=0.2)
    assert "layer_norm=True" in repr(layer) and "zoneout=(0.1, 0.1)" in repr(layer)
    with pytest.raises(ValueError, match="no torch.nn module"):
        layer.to_torch()
    assert [n for n, _ in layer.named_parameters() if "_ln_" in n] == [
        "weight_ln_ih_l0",
        "weight_ln_hh_l0",
        "weight_ln_c_l0",
        "bias_ln_c_l0",
    ]
    assert torch.equal(layer.weight_ln_ih_l0, torch.ones(4 * H))
    assert torch.equal(layer.bias_ln_c_l0, torch.zeros(H))
    assert set(unroll.LSTM(C, H).state_dict()) == set(torch.nn.LSTM(C, H).state_dict())


# --- GRU ----------------------------------------------------------------------------------------
def gru_by_hand(layer, x, plan, h):
    w_ih, w_hh, b_ih, b_hh = layer.weight_ih_l0, plan["w_hh"], layer.bias_ih_l0, layer.bias_hh_l0
    ys = []
    for t in range(x.shape[0]):
        gx = x[t] @ w_ih.T + b_ih
        hin = h if plan["mask_h"] is None else h * plan["mask_h"]
        gh = hin @ w_hh.T + b_hh
        r = torch.sigmoid(gx[:, :H] + gh[:, :H])
        z = torch.sigmoid(gx[:, H : 2 * H] + gh[:, H : 2 * H])
        n = torch.tanh(gx[:, 2 * H :] + r * gh[:, 2 * H :])
        h_new = (1 - z) * n + z * h
        zh = plan["keep_h"]
        zh = zh[t] if isinstance(zh, torch.Tensor) else zh
        h = h_new if zh is None else zh * h + (1 - zh) * h_new
        ys.append(h)
    return torch.stack(ys), h


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize(
    "kw", [{"recurrent_dropout": 0.4}, {"zoneout": 0.3}, {"weight_drop": 0.5}], ids=str
)
def test_gru_options_are_the_equations(kw, train):
    torch.manual_seed(0)
    layer = unroll.GRU(C, H, **kw, dtype=D).train(train)
    x, (h0, _) = data()
    torch.manual_seed(5)
    y, h = layer(x, h0)
    torch.manual_seed(5)
    want_y, want_h = gru_by_hand(layer, x, layer._plan(0, x), h0[0])
    torch.testing.assert_close(y, want_y)
    torch.testing.assert_close(h[0], want_h)


def test_gru_weight_drop_torch_kernel_equals_reference_and_gradcheck():
    torch.manual_seed(0)
    ref = unroll.GRU(C, H, 2, weight_drop=0.5, impl="reference", dtype=D)
    auto = unroll.GRU(C, H, 2, weight_drop=0.5, dtype=D)
    auto.load_state_dict(ref.state_dict())
    x, _ = data()
    torch.manual_seed(3)
    a = auto(x)[0]
    torch.manual_seed(3)
    torch.testing.assert_close(a, ref(x)[0])
    layer = unroll.GRU(C, H, recurrent_dropout=0.3, zoneout=0.2, dtype=D)
    xx = x[:3].clone().requires_grad_(True)

    def f(xx):
        torch.manual_seed(3)
        return layer(xx)[0]

    assert torch.autograd.gradcheck(f, (xx,))


# --- the cell -----------------------------------------------------------------------------------
def test_cell_layer_norm_and_zoneout_equal_the_layer():
    """LSTMCell(layer_norm, zoneout) is one step of the layer with the same parameters: at
    eval (zoneout's expectation) and in training (the cell draws z per call, as the layer's
    per-step masks, in the order c then h)."""
    torch.manual_seed(0)
    layer = make({"layer_norm": True, "zoneout": (0.3, 0.4), "peephole": True})
    cell = LSTMCell(C, H, peephole=True, layer_norm=True, zoneout=(0.3, 0.4), dtype=D)
    for name, p in cell.named_parameters():
        p.data.copy_(getattr(layer, name + "_l0"))
    x, (h0, c0) = data()
    for train in (False, True):
        layer.train(train), cell.train(train)
        torch.manual_seed(8)
        plan = layer._plan(0, x[:1])
        torch.manual_seed(8)
        h, c = cell(x[0], (h0[0], c0[0]))
        x_proj = layer._input_projection(x[:1], 0)
        want = layer._step(x_proj[0], (h0[0], c0[0]), 0, plan, 0)
        torch.testing.assert_close((h, c), want)
    cell.eval()
    xx = x[0].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda xx: cell(xx, (h0[0], c0[0])), (xx,))


def test_cell_options_in_repr_and_refused_by_torch():
    cell = LSTMCell(C, H, layer_norm=True, zoneout=0.2)
    assert "layer_norm=True" in repr(cell)
    with pytest.raises(ValueError, match="no torch.nn module"):
        cell.to_torch()


def test_all_options_train_a_tiny_task():
    """Sanity that the options train: a copy task's loss falls with every option on."""
    torch.manual_seed(0)
    layer = unroll.LSTM(2, 16, 2, **OPTIONS["all"], peephole=True)
    head = torch.nn.Linear(16, 2)
    opt = torch.optim.Adam([*layer.parameters(), *head.parameters()], lr=0.02)
    x = torch.randn(12, 8, 2)
    losses = []
    for _ in range(100):
        y, _ = layer(x)
        loss = F.mse_loss(head(y), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:5]) / 5


# --- the fast paths: the fused kernel's loops with the recurrent dropout masks ------------------
def _masks(B, H, kinds, dtype, seed=0, T=4):
    """(mask_h, mask_g, keep_c, keep_h) for kinds (gal, semeniuta, zoneout); zoneout's z
    mixes 0/1 draws with fractions (the eval form passes p itself)."""
    g = torch.Generator().manual_seed(seed)

    def m():
        return (torch.rand(B, H, generator=g, dtype=torch.float64) > 0.4).to(dtype) / 0.6

    def z():
        u = torch.rand(T, B, H, generator=g, dtype=torch.float64)
        return torch.where(u < 0.3, 1.0, torch.where(u < 0.8, 0.0, u)).to(dtype)

    gal, sem, zone = (tuple(kinds) + (False,))[:3]
    return (m() if gal else None, m() if sem else None) + ((z(), z()) if zone else (None, None))


MASK_KINDS = [
    (True, False, False),
    (False, True, False),
    (False, False, True),
    (True, True, True),
]
MASK_IDS = ["gal", "semeniuta", "zoneout", "all"]


def _loops(name):
    from unroll.nn.kernels import lstm_cpu
    from unroll.nn.kernels.lstm_fused import PythonLoops

    if name == "python":
        return PythonLoops
    loops = lstm_cpu.loops()
    if loops is None:
        pytest.skip(f"compiled CPU loops unavailable: {lstm_cpu.unavailable_reason()}")
    return loops


@pytest.mark.parametrize("loops", ["python", "compiled"])
@pytest.mark.parametrize("peephole,coupled", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("kinds", MASK_KINDS, ids=MASK_IDS)
def test_fused_kernel_with_masks_gradcheck(kinds, peephole, coupled, loops):
    """gradcheck (float64) of the fused kernel's hand-written backward with the masks, with
    and without variable lengths, through both loops (Python and compiled C++)."""
    from unroll.nn.kernels.lstm_fused import lstm_sequence

    loops = _loops(loops)
    g = torch.Generator().manual_seed(1)
    Tn, Bn, Cn, Hn = 4, 3, 2, 3

    def r(*shape):
        return (torch.randn(*shape, generator=g, dtype=D) * 0.7).requires_grad_(True)

    args = [r(Tn, Bn, Cn), r(Bn, Hn), r(Bn, Hn), r(4 * Hn, Cn), r(4 * Hn, Hn), r(4 * Hn), r(4 * Hn)]
    args += [r(Hn), r(Hn), r(Hn)] if peephole else [None, None, None]
    mask_h, mask_g, keep_c, keep_h = _masks(Bn, Hn, kinds, D, T=Tn)
    for lengths in (None, torch.tensor([4, 1, 3])):

        def f(*ts, lengths=lengths):
            it = iter(ts)
            full = [next(it) if a is not None else None for a in args]
            return lstm_sequence(
                *full,
                forget_bias=0.3,
                coupled=coupled,
                lengths=lengths,
                loops=loops,
                mask_h=mask_h,
                mask_g=mask_g,
                keep_c=keep_c,
                keep_h=keep_h,
            )

        assert torch.autograd.gradcheck(f, [a for a in args if a is not None])


@pytest.mark.parametrize("H_", [24, 512], ids=["H24", "H512-prepacked"])
@pytest.mark.parametrize("kinds", MASK_KINDS, ids=MASK_IDS)
def test_compiled_loops_with_masks_equal_python_loops(kinds, H_):
    """The C++ loops equal the Python loops with masks, float32, every buffer; at H = 512 the
    recurrent GEMMs go through the prepacked oneDNN weight (where available)."""
    from unroll.nn.kernels.lstm_fused import PythonLoops

    compiled = _loops("compiled")
    g = torch.Generator().manual_seed(0)
    Tn, Bn = 4, 3
    f32 = torch.float32
    A0 = torch.randn(Tn, Bn, 4 * H_, generator=g).to(f32)
    h0, c0, dc_n = (torch.randn(Bn, H_, generator=g) for _ in range(3))
    w_hh = torch.randn(4 * H_, H_, generator=g) * H_**-0.5
    dY = torch.randn(Tn, Bn, H_, generator=g)
    mask_h, mask_g, keep_c, keep_h = _masks(Bn, H_, kinds, f32, T=Tn)
    zone = None if keep_c is None else (keep_c, keep_h)
    out = []
    for loops in (compiled, PythonLoops):
        A = A0.clone()
        Cs, TC, Y = (A.new_empty(Tn, Bn, H_) for _ in range(3))
        loops.forward(A, h0, c0, w_hh, None, None, Cs, TC, Y, mask_h, mask_g, zone)
        dc, dG = dc_n.clone(), A.new_empty(Tn, Bn, 4 * H_)
        carry = None if zone is None else torch.zeros_like(dc)
        args = (A, Cs, TC, c0, w_hh, None, None, dY.clone(), None, dc, dG, mask_h, mask_g)
        loops.backward(*args, zone, carry)
        out.append({"A": A, "Cs": Cs, "TC": TC, "Y": Y, "dG": dG, "dc0": dc, "carry": carry})
    for k in out[0]:
        if out[0][k] is not None:
            torch.testing.assert_close(out[0][k], out[1][k], rtol=0, atol=5e-5, msg=k)


def test_loops_without_masks_give_way_to_python_loops():
    """Loops that do not take the masks (Triton's) are never handed them: lstm_sequence runs
    PythonLoops then (same numbers), never the loops without the masks."""
    from unroll.nn.kernels.lstm_fused import PythonLoops, lstm_sequence

    class NoMasks:  # the Triton loops' interface: no mask arguments
        calls = 0

        @staticmethod
        def forward(*a):
            NoMasks.calls += 1
            return PythonLoops.forward(*a)

        @staticmethod
        def backward(*a):
            return PythonLoops.backward(*a)

    g = torch.Generator().manual_seed(0)
    x, h0, c0 = torch.randn(3, 2, 2, generator=g), torch.zeros(2, 3), torch.zeros(2, 3)
    w_ih, w_hh = torch.randn(12, 2, generator=g), torch.randn(12, 3, generator=g)
    mask_h, *_ = _masks(2, 3, (True, False), torch.float32)
    y, _, _ = lstm_sequence(x, h0, c0, w_ih, w_hh, loops=NoMasks, mask_h=mask_h)
    want, _, _ = lstm_sequence(x, h0, c0, w_ih, w_hh, loops=PythonLoops, mask_h=mask_h)
    assert NoMasks.calls == 0
    torch.testing.assert_close(y, want)
    lstm_sequence(x, h0, c0, w_ih, w_hh, loops=NoMasks)
    assert NoMasks.calls == 1


# --- torch.compile and export ---------------------------------------------------------------------
COMPILED = [
    ("gal", "fused"),
    ("semeniuta", "auto"),
    ("zoneout", "fused"),
    ("weight_drop", "auto"),
    ("layer_norm", "auto"),
    ("all", "reference"),
]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("name,impl", COMPILED)
def test_torch_compile_matches_eager(name, impl, train):
    """torch.compile (aot_eager) gives eager's output and every gradient, in training (the
    masks: the same draws under one seed) and at eval."""
    from test_compat import Net, hx_for

    torch.manual_seed(0)
    layer = unroll.LSTM(C, H, 2, **OPTIONS[name], impl=impl).train(train)
    net = Net(layer)
    x, hx = torch.randn(T, 2, C), hx_for(layer)  # test_compat.hx_for: batch 2

    def loss_and_grads(f):
        net.zero_grad()
        torch.manual_seed(123)
        loss = f(x, hx)
        loss.backward()
        return [loss.detach()] + [p.grad.clone() for p in net.parameters()]

    want = loss_and_grads(net)
    torch._dynamo.reset()
    got = loss_and_grads(torch.compile(net, backend="aot_eager"))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


def test_what_runs_while_exporting_to_onnx():
    """At eval, dropouts vanish and ONNX's LSTM node carries the layer (any T); layer norm and
    zoneout's eval form are not ONNX LSTM math: they export as the reference loop (the
    example's T), and so does any option in training mode."""
    import unittest.mock

    cases = {
        "gal": "onnx",
        "semeniuta": "onnx",
        "weight_drop": "onnx",
        "layer_norm": "reference",
        "zoneout": "reference",
    }
    with (
        unittest.mock.patch.object(torch.jit, "is_tracing", return_value=True),
        unittest.mock.patch.object(torch.onnx, "is_in_onnx_export", return_value=True),
    ):
        for name, want in cases.items():
            layer = unroll.LSTM(C, H, **OPTIONS[name])
            assert layer.eval().implementation == want, name
            assert layer.train().implementation in ("reference", "torch"), name


@pytest.mark.parametrize("name", list(OPTIONS))
def test_onnx_export_at_eval_matches_onnxruntime(name):
    """The eval-mode layer exported (TorchScript exporter) and run in onnxruntime on new
    inputs equals the eager eval forward: dropouts gone (ONNX's LSTM node, any T), layer norm
    and zoneout's expectation form in the graph (the reference loop, the example's T only).
    Needs onnx and onnxruntime (skipped without, as tests/test_compat.py)."""
    import io

    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")

    class Flat(torch.nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.layer = layer

        def forward(self, x, h0, c0):
            y, (h, c) = self.layer(x, (h0, c0))
            return y, h, c

    torch.manual_seed(0)
    net = Flat(unroll.LSTM(C, H, 2, **OPTIONS[name])).eval()  # eval: the wrapper too
    node = name in ("gal", "semeniuta", "weight_drop")

    def inputs(steps, seed):
        g = torch.Generator().manual_seed(seed)
        return (
            torch.randn(steps, B, C, generator=g),
            torch.randn(2, B, H, generator=g),
            torch.randn(2, B, H, generator=g),
        )

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter notices; the trace's "unrolled over T"
        torch.onnx.export(
            net,
            inputs(T, 0),
            buf,
            dynamo=False,
            input_names=["x", "h0", "c0"],
            dynamic_axes={"x": {0: "T"}} if node else None,
        )
    ops = {n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node}
    assert ("LSTM" in ops) == node
    session = ort.InferenceSession(buf.getvalue())
    for steps in (T + 3, 1) if node else (T,):
        feeds = inputs(steps, steps)
        got = session.run(None, {k: v.numpy() for k, v in zip(("x", "h0", "c0"), feeds)})
        with torch.no_grad():
            want = net(*feeds)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(torch.from_numpy(a), b, atol=1e-5, rtol=1e-4)
