"""Reference cells: hand-computed steps, gradcheck of every option, equality with torch's cells."""

import itertools
import math

import pytest
import torch

from unroll import GRUCell, LSTMCell, RNNCell

D = torch.float64


def sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def fill(cell: torch.nn.Module, **values) -> None:
    with torch.no_grad():
        for name, v in values.items():
            getattr(cell, name).copy_(torch.tensor(v, dtype=D))


# --- hand-computed one-step cases (C = 1, H = 1; math module arithmetic, not torch) -------------
X, H0, C0 = 0.5, -0.3, 0.8
W_IH = [0.1, 0.2, 0.3, 0.4]  # rows i, f, g, o
W_HH = [-0.5, 0.6, -0.7, 0.8]
B_IH = [0.01, 0.02, 0.03, 0.04]
B_HH = [0.05, -0.06, 0.07, -0.08]
W_CI, W_CF, W_CO = 0.9, -1.1, 1.3


def hand_lstm(forget_bias=0.0, peephole=False, coupled=False):
    a = [W_IH[k] * X + B_IH[k] + W_HH[k] * H0 + B_HH[k] for k in range(4)]
    a_i, a_f, a_g, a_o = a
    if peephole:
        a_i += W_CI * C0
        a_f += W_CF * C0
    f = sig(a_f + forget_bias)
    i = 1 - f if coupled else sig(a_i)
    g = math.tanh(a_g)
    c = f * C0 + i * g
    if peephole:
        a_o += W_CO * c
    o = sig(a_o)
    return o * math.tanh(c), c


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"forget_bias": 1.0},
        {"peephole": True},
        {"coupled": True},
        {"peephole": True, "coupled": True, "forget_bias": -0.5},
    ],
)
def test_lstm_cell_hand_computed(kw):
    cell = LSTMCell(1, 1, dtype=D, **kw)
    fill(
        cell,
        weight_ih=[[w] for w in W_IH],
        weight_hh=[[w] for w in W_HH],
        bias_ih=B_IH,
        bias_hh=B_HH,
    )
    if kw.get("peephole"):
        fill(cell, weight_cf=[W_CF], weight_co=[W_CO])
        if not kw.get("coupled"):
            fill(cell, weight_ci=[W_CI])
    h, c = cell(
        torch.tensor([[X]], dtype=D), (torch.tensor([[H0]], dtype=D), torch.tensor([[C0]], dtype=D))
    )
    want_h, want_c = hand_lstm(**kw)
    assert h.item() == pytest.approx(want_h, abs=1e-12)
    assert c.item() == pytest.approx(want_c, abs=1e-12)


def test_lstm_cell_hand_computed_numbers():
    # A fixed number, so that hand_lstm itself is pinned: standard cell, worked by hand.
    # a = [0.26, -0.12, 0.46, -0.08] -> i = .564636, f = .470036, g = .430084, o = .480011
    # c = .470036·.8 + .564636·.430084 = .618870 ;  h = .480011·tanh(.618870) = .264170
    h, c = hand_lstm()
    assert c == pytest.approx(0.618870, abs=1e-5)
    assert h == pytest.approx(0.264170, abs=1e-5)


def test_gru_cell_hand_computed():
    cell = GRUCell(1, 1, dtype=D)
    w_ih, w_hh, b_ih, b_hh = (
        [0.1, 0.2, 0.3],
        [-0.5, 0.6, -0.7],
        [0.01, 0.02, 0.03],
        [0.05, -0.06, 0.07],
    )
    fill(
        cell,
        weight_ih=[[w] for w in w_ih],
        weight_hh=[[w] for w in w_hh],
        bias_ih=b_ih,
        bias_hh=b_hh,
    )
    r = sig(w_ih[0] * X + b_ih[0] + w_hh[0] * H0 + b_hh[0])
    z = sig(w_ih[1] * X + b_ih[1] + w_hh[1] * H0 + b_hh[1])
    n = math.tanh(w_ih[2] * X + b_ih[2] + r * (w_hh[2] * H0 + b_hh[2]))
    h = cell(torch.tensor([[X]], dtype=D), torch.tensor([[H0]], dtype=D))
    assert h.item() == pytest.approx((1 - z) * n + z * H0, abs=1e-12)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_cell_hand_computed(nonlinearity):
    cell = RNNCell(2, 1, nonlinearity=nonlinearity, dtype=D)
    fill(cell, weight_ih=[[0.3, -0.4]], weight_hh=[[0.7]], bias_ih=[0.1], bias_hh=[-0.2])
    a = 0.3 * 1.0 - 0.4 * 2.0 + 0.1 + 0.7 * 1.5 - 0.2  # = 0.45
    h = cell(torch.tensor([[1.0, 2.0]], dtype=D), torch.tensor([[1.5]], dtype=D))
    want = math.tanh(a) if nonlinearity == "tanh" else max(a, 0.0)
    assert h.item() == pytest.approx(want, abs=1e-12)


# --- gradcheck of every option combination -------------------------------------------------------
def _gradcheck_cell(cell, x, state):
    params = [p for p in cell.parameters()]
    flat_state = list(state) if isinstance(state, tuple) else [state]

    def f(x, *args):
        ps, ss = args[: len(params)], args[len(params) :]
        st = tuple(ss) if isinstance(state, tuple) else ss[0]
        out = torch.func.functional_call(
            cell, dict(zip([n for n, _ in cell.named_parameters()], ps)), (x, st)
        )
        return out

    assert torch.autograd.gradcheck(f, (x, *params, *flat_state))


@pytest.mark.parametrize(
    "peephole,coupled,forget_bias,bias",
    list(itertools.product([False, True], [False, True], [0.0, 1.5], [False, True])),
)
def test_lstm_cell_gradcheck(peephole, coupled, forget_bias, bias):
    torch.manual_seed(0)
    cell = LSTMCell(
        3, 2, bias=bias, forget_bias=forget_bias, peephole=peephole, coupled=coupled, dtype=D
    )
    x = torch.randn(2, 3, dtype=D, requires_grad=True)
    state = tuple(torch.randn(2, 2, dtype=D, requires_grad=True) for _ in range(2))
    _gradcheck_cell(cell, x, state)


@pytest.mark.parametrize("bias", [False, True])
def test_gru_cell_gradcheck(bias):
    torch.manual_seed(0)
    cell = GRUCell(3, 2, bias=bias, dtype=D)
    _gradcheck_cell(
        cell,
        torch.randn(2, 3, dtype=D, requires_grad=True),
        torch.randn(2, 2, dtype=D, requires_grad=True),
    )


@pytest.mark.parametrize(
    "nonlinearity,bias", list(itertools.product(["tanh", "relu"], [False, True]))
)
def test_rnn_cell_gradcheck(nonlinearity, bias):
    torch.manual_seed(0)
    cell = RNNCell(3, 2, nonlinearity=nonlinearity, bias=bias, dtype=D)
    _gradcheck_cell(
        cell,
        torch.randn(2, 3, dtype=D, requires_grad=True),
        torch.randn(2, 2, dtype=D, requires_grad=True),
    )


# --- equal to torch's cells with copied weights --------------------------------------------------
@pytest.mark.parametrize(
    "ours,theirs",
    [
        (lambda: LSTMCell(3, 4, dtype=D), lambda: torch.nn.LSTMCell(3, 4, dtype=D)),
        (
            lambda: LSTMCell(3, 4, bias=False, dtype=D),
            lambda: torch.nn.LSTMCell(3, 4, bias=False, dtype=D),
        ),
        (lambda: GRUCell(3, 4, dtype=D), lambda: torch.nn.GRUCell(3, 4, dtype=D)),
        (
            lambda: RNNCell(3, 4, "relu", dtype=D),
            lambda: torch.nn.RNNCell(3, 4, nonlinearity="relu", dtype=D),
        ),
        (lambda: RNNCell(3, 4, dtype=D), lambda: torch.nn.RNNCell(3, 4, dtype=D)),
    ],
)
@pytest.mark.parametrize("given_state", [False, True])
def test_cells_match_torch(ours, theirs, given_state):
    torch.manual_seed(0)
    a, b = ours(), theirs()
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 3, dtype=D)
    lstm = isinstance(a, LSTMCell)
    state = None
    if given_state:
        state = (
            (torch.randn(5, 4, dtype=D), torch.randn(5, 4, dtype=D))
            if lstm
            else torch.randn(5, 4, dtype=D)
        )
    out_a, out_b = a(x, state), b(x, state)
    for u, v in zip(out_a if lstm else [out_a], out_b if lstm else [out_b]):
        torch.testing.assert_close(u, v)
    # unbatched input as torch accepts it
    ua = a(x[0], None if state is None else (tuple(s[0] for s in state) if lstm else state[0]))
    ub = b(x[0], None if state is None else (tuple(s[0] for s in state) if lstm else state[0]))
    torch.testing.assert_close(ua[0] if lstm else ua, ub[0] if lstm else ub)


def test_cell_parameters_and_init():
    cell = LSTMCell(3, 16, peephole=True)
    names = [n for n, _ in cell.named_parameters()]
    assert names == [
        "weight_ih",
        "weight_hh",
        "bias_ih",
        "bias_hh",
        "weight_ci",
        "weight_cf",
        "weight_co",
    ]
    assert [n for n, _ in LSTMCell(3, 4, peephole=True, coupled=True).named_parameters()][-2:] == [
        "weight_cf",
        "weight_co",
    ]
    for p in cell.parameters():
        assert p.abs().max() <= 1 / math.sqrt(16)
    assert [n for n, _ in LSTMCell(3, 4).named_parameters()] == [
        "weight_ih",
        "weight_hh",
        "bias_ih",
        "bias_hh",
    ]


def test_coupled_cell_ignores_input_gate_rows():
    torch.manual_seed(0)
    cell = LSTMCell(3, 2, coupled=True, dtype=D)
    x = torch.randn(4, 3, dtype=D)
    h1, _ = cell(x)
    with torch.no_grad():
        cell.weight_ih[:2].add_(5.0)
    h2, c2 = cell(x)
    torch.testing.assert_close(h1, h2)
    (h2.sum() + c2.sum()).backward()
    assert cell.weight_ih.grad[:2].abs().max() == 0
    assert cell.weight_ih.grad[2:].abs().max() > 0


def test_cell_errors():
    cell = LSTMCell(3, 4)
    with pytest.raises(ValueError, match="expected input with 3 features.*got 5"):
        cell(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"expected h of shape \(2, 4\), got \(2, 3\)"):
        cell(torch.randn(2, 3), (torch.randn(2, 3), torch.randn(2, 4)))
    with pytest.raises(ValueError, match="dtype torch.float32.*got torch.float64"):
        cell(torch.randn(2, 3, dtype=D))
    with pytest.raises(ValueError, match="pair"):
        cell(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="shape"):
        GRUCell(3, 4)(torch.randn(2, 3), torch.randn(3, 4))
    with pytest.raises(ValueError, match="nonlinearity"):
        RNNCell(3, 4, nonlinearity="sigmoid")


def test_cells_take_torch_argument_names():
    """``cell(input=x, hx=state)`` as torch.nn's cells; ``state=`` stays an alias of hx."""
    torch.manual_seed(0)
    x = torch.randn(5, 3, dtype=D)
    for ours, theirs, hx in (
        (
            LSTMCell(3, 4, dtype=D),
            torch.nn.LSTMCell(3, 4, dtype=D),
            tuple(torch.randn(2, 5, 4, dtype=D)),
        ),
        (GRUCell(3, 4, dtype=D), torch.nn.GRUCell(3, 4, dtype=D), torch.randn(5, 4, dtype=D)),
        (RNNCell(3, 4, dtype=D), torch.nn.RNNCell(3, 4, dtype=D), torch.randn(5, 4, dtype=D)),
    ):
        theirs.load_state_dict(ours.state_dict())
        want = theirs(input=x, hx=hx)
        for got in (ours(input=x, hx=hx), ours(x, state=hx)):
            torch.testing.assert_close(got, want)
        with pytest.raises(ValueError, match="both hx and state"):
            ours(x, hx, state=hx)
