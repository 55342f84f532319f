"""Drop-in for torch.nn: the layers take torch's arguments, in torch's order, with its names.

Each case is checked against the torch.nn module with copied weights.
"""

import inspect

import pytest
import torch

import unroll

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
